"""When is the user done? Turn policies: a fixed silence, or the meaning of what was said so far.

A policy answers one question at each pause: how much silence ends this turn, given the
transcript so far and (when an audio turn model is loaded) its probability that the turn is
complete. ``None`` means "wait for the transcript"; the listener caps every wait.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from voicechat.config import TurnConfig

# Words a finished English sentence almost never ends on: conjunctions, prepositions, articles,
# possessives, fillers. A transcript ending on one of them is a thought in progress.
TRAILING = frozenset(
    """
and but or nor because cause if then that which who whose whom where when while although though unless until
since as than to of for from with without within in on at by about into onto upon over under between through
during before after against toward towards like the a an my your his her its our their this these those some any
every each um uh er erm hmm mm uhm ah eh well also just plus versus via i i'm i'd i'll i've we're you're
let's what's how's where's there's it's
""".split()
)
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True)
class Hypothesis:
    """What is known of the utterance at a pause."""

    text: str | None  # the transcript up to the pause (None: the engine does not transcribe while you speak)
    complete_prob: float | None = None  # the audio turn model's P(turn complete), when one is loaded
    text_prob: float | None = None  # the local chat model's P(a sentence ends after these words), when it can tell


def text_verdict(text: str | None, text_prob: float | None = None, *, complete_at: float = 0.04, incomplete_below: float = 0.02) -> str:
    """'complete', 'incomplete' or 'unclear', from the words alone.

    With the chat model's reading (``text_prob``: how likely a sentence end comes next, Whisper's own
    final punctuation removed), that decides; without it, the rules below.

    A question mark ends a thought; a full stop or "!" does too unless it follows a word no sentence
    ends on (Whisper punctuates a cut phrase: "a table for."), which makes it unclear. Without final
    punctuation, a trailing conjunction, preposition, article or filler means more is coming."""
    t = (text or "").strip()
    if not t:
        return "unclear"
    if t.endswith(("...", "\u2026", ",", "-", "\u2014", ":", ";")):
        return "incomplete"
    if text_prob is not None:
        return "complete" if text_prob >= complete_at else "incomplete" if text_prob < incomplete_below else "unclear"
    words = _WORD.findall(t.lower())
    trailing = bool(words) and words[-1] in TRAILING
    if t[-1] == "?":
        return "complete"
    if t[-1] in ".!":
        return "unclear" if trailing else "complete"
    return "incomplete" if trailing else "unclear"


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

        words \\ audio model   complete   incomplete   (no model)
        complete               fast       normal       fast
        unclear                normal     slow         normal
        incomplete             slow       slow         slow
    """

    uses_transcript = True

    def __init__(self, cfg: TurnConfig, audio_model: bool) -> None:
        self.fast, self.normal, self.slow = cfg.fast_end_ms, cfg.end_ms, cfg.slow_end_ms
        self.threshold = cfg.model_threshold
        self.complete_at, self.incomplete_below = cfg.text_complete, cfg.text_incomplete
        self.uses_audio_model = audio_model
        self.max_silence_ms = max(self.fast, self.normal, self.slow)

    def silence_to_end(self, hyp: Hypothesis | None) -> int | None:
        if hyp is None:
            return None
        words = text_verdict(hyp.text, hyp.text_prob, complete_at=self.complete_at, incomplete_below=self.incomplete_below)
        audio = None if hyp.complete_prob is None else hyp.complete_prob >= self.threshold
        if words == "incomplete":
            return self.slow
        if words == "complete":
            return self.normal if audio is False else self.fast
        return self.slow if audio is False else self.normal
