"""When is the user done? Turn policies: a fixed silence, or the meaning of what was said so far.

A policy answers one question at each pause: how much silence ends this turn, given the
transcript so far and (when an audio turn model is loaded) its probability that the turn is
complete. ``None`` means "wait for the transcript"; the listener caps every wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from voicechat import languages

if TYPE_CHECKING:
    from voicechat.config import TurnConfig

# Words a finished English sentence almost never ends on: conjunctions, prepositions, articles,
# possessives, fillers. A transcript ending on one of them is a thought in progress. The lists for the
# other languages are in voicechat.languages.TRAILING.
TRAILING = languages.TRAILING["en"]


@dataclass(frozen=True)
class Hypothesis:
    """What is known of the utterance at a pause."""

    text: str | None  # the transcript up to the pause (None: the engine does not transcribe while you speak)
    complete_prob: float | None = None  # the audio turn model's P(turn complete), when one is loaded
    text_prob: float | None = None  # the local chat model's P(a sentence ends after these words), when it can tell
    language: str | None = None  # the utterance's language (ISO 639-1) when known; None: the policy's guess, else English
    word_prob: float | None = None  # Whisper's probability of the last word it heard (low: a word it guessed), when it can tell
    word_lead_s: float | None = None  # from where Whisper's last word starts to the end of the audio it heard, when it can tell


def text_verdict(
    text: str | None,
    text_prob: float | None = None,
    *,
    complete_at: float = 0.04,
    incomplete_below: float = 0.02,
    language: str | None = None,
) -> str:
    """'complete', 'incomplete' or 'unclear', from the words alone.

    With the chat model's reading (``text_prob``: how likely a sentence end comes next, Whisper's own
    final punctuation removed), that decides; without it, the rules below.

    A question mark ends a thought; a full stop or "!" does too unless it follows a word no sentence
    ends on (Whisper punctuates a cut phrase: "a table for."), which makes it unclear. Without final
    punctuation, a trailing conjunction, preposition, article or filler means more is coming. The words
    are those of ``language`` (None: English); a language without word rules goes by punctuation only."""
    t = (text or "").strip()
    if not t:
        return "unclear"
    if t.endswith(("...", "\u2026", ",", "-", "\u2014", ":", ";")):
        return "incomplete"
    if text_prob is not None:
        return "complete" if text_prob >= complete_at else "incomplete" if text_prob < incomplete_below else "unclear"
    rules = languages.trailing_words(language or "en")
    words = languages.words(t)
    trailing = rules is not None and bool(words) and words[-1] in rules
    if t[-1] in "?\uff1f\u061f":  # (also the full-width and Arabic question marks)
        return "complete"
    if t[-1] in ".!\u3002\uff01\u0964":
        return "unclear" if trailing else "complete"
    return "incomplete" if trailing else "unclear"


# the audio a pause is judged on ends this long after the speech (voicechat.voice.vad.TRAILING_KEEP_MS); a last word
# that starts less than LATE_WORD_S before the speech ends was not heard: Whisper added it ("a table for" -> "... for it.")
AUDIO_TAIL_S = 0.15
LATE_WORD_S = 0.08


def guessed(hyp: Hypothesis, below: float) -> bool:
    """Whisper guessed the last word of several: it was unsure of it (``word_prob`` under ``below``), or the word
    starts where the speech had already stopped; speech cut at a pause and completed. A lone word is not judged
    so: Whisper is often unsure of a short answer's one word."""
    if len((hyp.text or "").split()) < 2:
        return False
    late = hyp.word_lead_s is not None and hyp.word_lead_s < AUDIO_TAIL_S + LATE_WORD_S
    return late or (hyp.word_prob is not None and hyp.word_prob < below)


class TurnPolicy(Protocol):
    uses_transcript: bool  # ask for a transcript at every pause
    uses_audio_model: bool
    max_silence_ms: int  # the longest any turn waits

    def silence_to_end(self, hyp: Hypothesis | None) -> int | None:
        """Silence (ms) after which the turn ends; None: wait for the hypothesis."""


class SilencePolicy:
    """The turn ends after a fixed silence, whatever was said."""

    uses_transcript = False
    uses_audio_model = False

    def __init__(self, silence_ms: int) -> None:
        self.max_silence_ms = silence_ms

    def silence_to_end(self, hyp: Hypothesis | None) -> int:
        return self.max_silence_ms


class MeaningPolicy:
    """The turn ends sooner after a finished sentence the audio model agrees with, later after a thought in
    progress (the chat model expects more words; or a trailing "and", "because", "um", a comma), and at
    ``end_ms`` when the signs disagree.

    Words that read as finished are unclear when Whisper was unsure of the last one (``word_prob`` below
    ``turn.last_word_min``): cut at a pause, speech gets completed with a guess ("a table for" heard as "a table
    phone."), and the guess reads as a finished sentence.

        words \\ audio model   complete   incomplete   (no model)
        complete               fast       normal       fast
        unclear                normal     slow         normal
        incomplete             slow       slow         slow
    """

    uses_transcript = True

    def __init__(self, cfg: TurnConfig, audio_model: bool, languages: list[str] | None = None) -> None:
        """``languages``: the declared ones; an utterance of unknown language is read by the words of the only
        one, or of the one its words look like (voicechat.languages.detect)."""
        self.languages = list(languages or [])
        self.fast, self.normal, self.slow = cfg.fast_end_ms, cfg.end_ms, cfg.slow_end_ms
        self.threshold = cfg.model_threshold
        self.complete_at, self.incomplete_below = cfg.text_complete, cfg.text_incomplete
        self.last_word_min = cfg.last_word_min
        self.uses_audio_model = audio_model
        self.max_silence_ms = max(self.fast, self.normal, self.slow)

    def silence_to_end(self, hyp: Hypothesis | None) -> int | None:
        if hyp is None:
            return None
        words = text_verdict(
            hyp.text, hyp.text_prob, complete_at=self.complete_at, incomplete_below=self.incomplete_below, language=self.language_of(hyp)
        )
        audio = None if hyp.complete_prob is None else hyp.complete_prob >= self.threshold
        if words == "complete" and guessed(hyp, self.last_word_min):
            words = "unclear"  # a last word Whisper guessed: the sentence may go on
        if words == "incomplete":
            return self.slow
        if words == "complete":
            return self.normal if audio is False else self.fast
        return self.slow if audio is False else self.normal

    def language_of(self, hyp: Hypothesis) -> str | None:
        """The language whose words judge this utterance: its own, the only one declared, or a guess among those
        declared (None: English)."""
        if hyp.language or len(self.languages) < 2:
            return hyp.language or (self.languages[0] if self.languages else None)
        return languages.detect(hyp.text or "", self.languages)
