"""The languages a user speaks to voicechat (``listen.languages``) and how a turn's language is picked
among them from Whisper's language probabilities.

With more than one declared language, each pass of a turn picks among the declared languages only (a
German speaker who also speaks English is never heard as Dutch) and decodes in its pick; the pass on the
whole turn decides the turn's language (voicechat.voice.transcriber). One declared language is simply used. None declared: for an
English-only (``.en``) model, English; for a multilingual model, the user's locale's language plus
English (no locale: any language the model knows).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    import numpy as np

    from voicechat.engines.base import SpeechToText

# The languages Whisper knows (faster-whisper's list; a fast test checks they agree).
WHISPER = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr ht hu hy id "
    "is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl ps pt ro ru sa sd si "
    "sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo yue zh".split()
)


def normalize(values: Iterable[object], source: str = "listen.languages") -> list[str]:
    """Declared languages as Whisper's codes, in order, once each ("de-AT" and "de_DE" are "de").

    Raises VoicechatError naming the first that is not a language Whisper knows."""
    out: list[str] = []
    for value in values:
        text = str(value).strip()
        code = text.replace("_", "-").split("-")[0].lower()
        if code == "auto" or not code:
            continue
        if code not in WHISPER:
            shown = text if len(text) <= 20 else text[:20] + "..."
            raise VoicechatError(f"{source}: {shown!r} is not a language Whisper knows; use ISO 639-1 codes such as en, de, fr")
        if code not in out:
            out.append(code)
    return out


def locale_language(environ: Mapping[str, str] | None = None) -> str | None:
    """The language of the user's locale (LC_ALL, LC_MESSAGES, LANG, then LANGUAGE's first), if Whisper knows it."""
    environ = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = environ.get(name, "")
        if name == "LANGUAGE":
            value = value.split(":")[0]
        code = value.split(".")[0].split("@")[0].replace("-", "_").split("_")[0].lower()
        if code in ("", "c", "posix"):
            continue
        return code if code in WHISPER else None
    return None


def declared(configured: Sequence[object], model_languages: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The languages each turn's language is picked among: ``listen.languages`` when set, else the
    model's only language (a ``.en`` model), else the locale's language plus English; [] means any
    language the model knows (a multilingual model and no locale)."""
    given = normalize(configured)
    if given:
        return given
    if len(model_languages) == 1:
        return [model_languages[0]]
    local = locale_language(environ)
    if local is None:
        return []
    return list(dict.fromkeys([local, "en"]))


def needs_multilingual(configured: Sequence[object], language: str | None) -> bool:
    """Whether the declared languages (or a fixed stt.language, or "auto") need more than an English-only model."""
    fixed = (language or "").strip().lower()
    return any(code != "en" for code in normalize(configured)) or (fixed not in ("", "en"))


def pick(probabilities: Mapping[str, float], candidates: Sequence[str]) -> tuple[str, float]:
    """The most probable language among the candidates (among all when there are none) and its
    probability among them (the candidates' probabilities summed to one)."""
    pool = [c for c in candidates] or list(probabilities)
    best = max(pool, key=lambda c: probabilities.get(c, 0.0))
    total = sum(probabilities.get(c, 0.0) for c in pool)
    return best, (probabilities.get(best, 0.0) / total if total > 0 else 0.0)


@dataclass(frozen=True)
class TurnText:
    """A turn's transcript and the language it was decoded in (None: not known)."""

    text: str
    language: str | None = None
    confidence: float = 0.0  # the language's probability among the candidates when it was identified; 1: given
    last_word_prob: float | None = None  # (asked for, engines that can tell) Whisper's probability of the last word
    last_word_lead_s: float | None = None  # (the same) from where that word starts to the end of the audio


def fixed(language: str | None) -> str | None:
    """A set language (stt.language, a request's), with "auto" and "" meaning none: detect."""
    code = (language or "").strip().lower()
    return None if code in ("", "auto") else code


def transcribe_turn_in(
    stt: SpeechToText,
    audio: np.ndarray,
    *,
    languages: Sequence[str],
    prompt: str | None = None,
    beam_size: int = 1,
    silero_filter: bool = False,
    last_word: bool = False,
) -> TurnText:
    """A turn transcribed in one of ``languages`` (picked from its audio when more than one; any when none), with
    the language it was decoded in: the engine's ``transcribe_turn_in`` where it has one (faster-whisper),
    else its ``transcribe_turn`` with the only language, or its own detection (``info.language``).
    ``last_word``: with how sure the engine is of the last word, where it can tell."""
    among = getattr(stt, "transcribe_turn_in", None)
    if among is not None:
        more = {"last_word": True} if last_word else {}
        found: TurnText = among(audio, languages=languages, prompt=prompt, beam_size=beam_size, silero_filter=silero_filter, **more)
        return found
    language = languages[0] if len(languages) == 1 else None
    text = stt.transcribe_turn(audio, prompt=prompt, beam_size=beam_size, silero_filter=silero_filter, language=language)
    info = getattr(stt, "info", None)
    return TurnText(text, language or (getattr(info, "language", None) if text else None))
