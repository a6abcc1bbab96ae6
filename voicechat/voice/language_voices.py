"""The voice a reply is spoken with, chosen by its language: ``tts.voices`` first (a Piper .onnx path, a voice
name the engine has installed, a catalogue name, or ``espeak:VOICE``), then the configured voice when it
speaks that language, then espeak-ng's voice for the language (offline, over a hundred languages). Each
voice is loaded the first time a reply needs it and kept for the session; the configured one is never
reloaded.

    voices = LanguageVoices(config, tts)
    choice = voices.choose("de")   # -> Choice(engine, label, notice)
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
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

    def __init__(self, config: Config, default: TextToSpeech | None, *, create: Callable[[Config], TextToSpeech] | None = None) -> None:
        self.cfg, self.default = config, default
        self._create = create or _create
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str], TextToSpeech] = {}  # (engine, voice) -> loaded engine
        self._failed: dict[tuple[str, str], str] = {}  # (engine, voice) -> why it could not be loaded
        self._espeak_table: list[tuple[str, str]] | None = None  # espeak-ng's voices, read when first needed

    def plan(self, language: str | None) -> Plan:
        return plan(self.cfg, self.default, language, self._espeak_voice)

    def choose(self, language: str | None) -> Choice | None:
        """The voice for a reply in ``language`` (None: no voice at all, a session without speech)."""
        if self.default is None:
            return None
        p = self.plan(language)
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
            code = languages.base(language)
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


def _create(config: Config) -> TextToSpeech:
    from voicechat.engines import registry

    return registry.create("tts", config)
