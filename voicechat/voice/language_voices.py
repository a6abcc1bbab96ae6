"""The voice a reply is spoken with, chosen by its language: ``tts.voices`` first (a Piper .onnx path, a voice
name the engine has installed, a catalogue name, or ``espeak:VOICE``), then the configured voice when it
speaks that language, then espeak-ng's voice for the language (offline, over a hundred languages). Each
voice is loaded the first time a reply needs it and kept for the session; the configured one is never
reloaded.

    voices = LanguageVoices(config, tts)
    choice = voices.choose("de")   # -> Choice(engine, label, notice)
    voices.offered()               # -> [Offer(name, plan, languages)]: each voice and the languages it speaks
    voices.choose_named("espeak:de")
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicechat import languages
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.engines.base import TextToSpeech

MAX_KEPT = 16  # voices kept loaded (a session speaks the few languages its user declared)


@dataclass(frozen=True)
class Plan:
    """How a language is spoken, before anything is loaded: ``engine``/``voice`` None means the configured
    voice; ``notice`` says why a language gets a voice that is not its own."""

    engine: str | None = None
    voice: str | None = None
    notice: str | None = None

    @property
    def own(self) -> bool:
        return self.engine is None


@dataclass(frozen=True)
class Choice:
    engine: TextToSpeech
    label: str  # the voice's name, as a live view or a log shows it
    notice: str | None = None


@dataclass(frozen=True)
class Offer:
    """A voice a server offers by name (an id a client sends back), and the languages it is chosen for."""

    name: str
    plan: Plan
    languages: tuple[str, ...]


def configured_voices(config: Config) -> dict[str, str]:
    """tts.voices with language keys reduced to their base code ("pt-BR" -> "pt")."""
    out: dict[str, str] = {}
    for key, value in (config.tts.voices or {}).items():
        code = languages.base(str(key))
        if code and value is not None and str(value).strip():
            out.setdefault(code, str(value).strip())
    return out


def speaks(engine: TextToSpeech, language: str) -> bool:
    """The engine's voice speaks this language (its declared languages, compared without region)."""
    try:
        own = engine.languages
    except Exception:  # an engine that cannot tell: taken to speak English only
        own = ["en"]
    return any(languages.base(code) == language for code in own)


def plan(
    config: Config, default: TextToSpeech | None, language: str | None, espeak_voice: Callable[[str], str | None] | None = None
) -> Plan:
    """What speaks a reply in ``language`` (a pure decision: nothing is loaded).

    ``espeak_voice``: espeak-ng's voice for a language (None: espeak-ng is not installed)."""
    code = languages.base(language)
    if code is None or default is None:
        return Plan()
    value = configured_voices(config).get(code)
    if value is not None:
        if value in (config.tts.voice, default.model_name):
            return Plan()
        if value.lower().startswith(("espeak:", "espeak-ng:")):
            return Plan("espeak", value.split(":", 1)[1].strip())
        if value.lower().endswith(".onnx"):
            return Plan("piper", value)
        return Plan(config.tts.engine, default.installed_voices().get(value, value))
    if speaks(default, code):
        return Plan()
    found = espeak_voice(code) if espeak_voice is not None else None
    if found is not None:
        return Plan("espeak", found)
    label = default.model_name or default.name
    return Plan(notice=f"no voice for {languages.name(code)} ({code}): spoke with {label}; set tts.voices.{code} to a voice for it")


class LanguageVoices:
    """The voices of one session, by language (thread-safe; loads happen on the caller's thread)."""

    def __init__(
        self,
        config: Config,
        default: TextToSpeech | None,
        *,
        create: Callable[[Config], TextToSpeech] | None = None,
        espeak_table: list[tuple[str, str]] | None = None,
    ) -> None:
        """``espeak_table``: espeak-ng's voices as (language code, voice name) rows (None: read from espeak-ng when first
        needed; empty: no espeak-ng)."""
        self.cfg, self.default = config, default
        self._create = create or _create
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str], TextToSpeech] = {}  # (engine, voice) -> loaded engine
        self._failed: dict[tuple[str, str], str] = {}  # (engine, voice) -> why it could not be loaded
        self._espeak_table = espeak_table
        self._offers: dict[tuple[str, ...], list[Offer]] = {}  # offered(codes), worked out once per codes

    def plan(self, language: str | None) -> Plan:
        return plan(self.cfg, self.default, language, self._espeak_voice)

    def choose(self, language: str | None) -> Choice | None:
        """The voice for a reply in ``language`` (None: no voice at all, a session without speech)."""
        if self.default is None:
            return None
        return self._take(self.plan(language), languages.base(language))

    def choose_named(self, name: str) -> tuple[Choice, str | None] | None:
        """The voice :meth:`offered` names ``name``, and its (first) language; None: no voice by that name."""
        if self.default is None:
            return None
        offer = next((o for o in self.offered() if o.name == name), None)
        if offer is None:
            return None
        code = languages.base(offer.languages[0]) if offer.languages else None
        return self._take(offer.plan, code), code

    def offered(self, codes: Iterable[str] = ()) -> list[Offer]:
        """Each voice this session would speak some language with, by name: the configured one first (with its
        own languages), then each tts.voices voice and each espeak-ng voice with the languages it is chosen for
        (those espeak-ng speaks, tts.voices' and ``codes``). Reads espeak-ng's table once: call off the event loop."""
        if self.default is None:
            return []
        key = tuple(sorted(set(codes)))
        with self._lock:
            found = self._offers.get(key)
        if found is None:
            found = self._offer(key)
            with self._lock:
                self._offers[key] = found
        return found

    def _offer(self, codes: tuple[str, ...]) -> list[Offer]:
        assert self.default is not None
        own = self.default.model_name or self.default.name
        try:
            own_languages = tuple(self.default.languages)
        except Exception:  # an engine that cannot tell (as :func:`speaks` takes it)
            own_languages = ("en",)
        self._espeak_voice("en")  # (reads the table)
        wanted = (
            {languages.base(c) for c, _ in self._espeak_table or []} | set(languages.NAMES) | set(configured_voices(self.cfg)) | set(codes)
        )
        by_voice: dict[tuple[str, str], list[str]] = {}
        for code in sorted((c for c in wanted if c), key=lambda c: (len(c) != 2, c)):  # ISO 639-1 codes first ("zh", then "cmn")
            p = self.plan(code)
            if not p.own and p.engine is not None and p.voice is not None:
                by_voice.setdefault((p.engine, p.voice), []).append(code)
        offers = [Offer(own, Plan(), own_languages)]
        for (engine, voice), codes_of in by_voice.items():
            name = f"espeak:{voice}" if engine == "espeak" else _voice_name(voice)
            if name != own and all(o.name != name for o in offers):
                offers.append(Offer(name, Plan(engine, voice), tuple(codes_of)))
        return offers

    def requested(self, name: str | None, language: str | None) -> tuple[Choice | None, str | None]:
        """The voice a client asks for by name (one :meth:`offered` lists) or, failing that, by language, and the
        language its text is in (None: not known); ``(None, None)`` when it names neither (the caller's own voice).
        An unknown name or a language without a voice gets the configured voice with a notice saying so."""
        if self.default is None:
            return None, None
        if name:
            named = self.choose_named(name)
            if named is not None:
                return named
            if not language:
                label = self.default.model_name or self.default.name
                shown = "".join(ch for ch in name if ch.isprintable())[:64]
                return Choice(self.default, label, f"no voice named {shown!r} here; spoke with {label}"), None
        code = languages.base(language)
        if code is None:
            return None, None
        return self.choose(code), code

    def requested_language(self, name: str | None, language: str | None) -> str | None:
        """The language :meth:`requested` would speak in, without loading a voice (a text stream's sentence rules)."""
        offer = next((o for o in self.offered() if o.name == name), None) if name else None
        if offer is not None:
            return languages.base(offer.languages[0]) if offer.languages else None
        return languages.base(language)

    def _take(self, p: Plan, code: str | None) -> Choice:
        """The engine for a plan, loaded (and kept) the first time; the configured voice with a notice when it fails."""
        assert self.default is not None
        own = Choice(self.default, self.default.model_name or self.default.name, p.notice)
        if p.own or p.engine is None or p.voice is None:
            return own
        key = (p.engine, p.voice)
        with self._lock:
            engine = self._kept.get(key)
            why = self._failed.get(key)
            if engine is None and why is None:
                try:
                    engine = self._load(p.engine, p.voice)
                except VoicechatError as e:
                    why = self._failed[key] = e.message
        if engine is None:
            return Choice(
                self.default, own.label, f"the voice for {languages.name(code)} could not be loaded ({why}); spoke with {own.label}"
            )
        return Choice(engine, engine.model_name or p.voice)

    def warm_up(self, codes: list[str]) -> None:
        """Load the voices of these languages now (a session's declared ones), so no reply waits for one."""
        for code in codes[:MAX_KEPT]:
            choice = self.choose(code)
            if choice is not None and choice.engine is not self.default:
                choice.engine.warm_up()

    def close(self) -> None:
        """Close the voices loaded here (the configured one is its owner's to close)."""
        with self._lock:
            kept, self._kept = list(self._kept.values()), {}
        for engine in kept:
            engine.close()

    def _load(self, engine: str, voice: str) -> TextToSpeech:
        if len(self._kept) >= MAX_KEPT:
            oldest = next(iter(self._kept))
            self._kept.pop(oldest).close()
        tts = dataclasses.replace(self.cfg.tts, engine=engine, voice=voice, speaker=None)
        loaded = self._create(dataclasses.replace(self.cfg, tts=tts))
        self._kept[(engine, voice)] = loaded
        return loaded

    def _espeak_voice(self, code: str) -> str | None:
        if self._espeak_table is None:
            from voicechat import models

            program = models.espeak_program()
            if program is None:
                self._espeak_table = []
            else:
                from voicechat.engines.tts_espeak import voices_table

                self._espeak_table = voices_table(program)
        return languages.espeak_voice(code, self._espeak_table)


def _voice_name(value: str) -> str:
    """A tts.voices value as a voice name a client sees: a Piper path's file name without .onnx (never the path)."""
    import os

    tail = os.path.basename(value.replace("\\", "/"))
    return tail[: -len(".onnx")] if tail.lower().endswith(".onnx") else tail


def _create(config: Config) -> TextToSpeech:
    from voicechat.engines import registry

    return registry.create("tts", config)
