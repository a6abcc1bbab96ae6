"""Wake words in a stream that never ends (Wyoming satellites): the built-in words and what they are, several
words at once on one feature pipeline, and the decision as a pure machine: 16 kHz frames in, detections out.

Decision rules (``WakeDetector``), all counted in audio, never in wall time:
- the audio is cut into 80 ms frames (openWakeWord's step); each frame gives each word a probability;
- a word whose probability reaches the threshold is detected, stamped with the stream position (ms) at the
  end of that frame; if several reach it in one frame, the most probable one is said;
- after a detection every word's memory is cleared (as talk's wake gate resets its detector) and nothing is
  detected for ``REFRACTORY_S`` of audio, so one utterance gives one detection; then listening goes on.
Memory is bounded however long the stream: the feature and model buffers are fixed, and less than one frame waits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

RATE = 16000
FRAME_SAMPLES = 1280  # 80 ms: one step of openWakeWord's features
FRAME_BYTES = FRAME_SAMPLES * 2
REFRACTORY_S = 2.0  # after a detection, this much audio before the next one
OPENWAKEWORD = ("openWakeWord (David Scripka), bundled in pyopen-wakeword", "https://github.com/dscripka/openWakeWord")
PRETRAINED = "CC BY-NC-SA 4.0, non-commercial use only"  # openWakeWord's pre-trained models


@dataclass(frozen=True)
class Word:
    name: str  # the model's name, as clients ask for it
    phrase: str  # what to say
    languages: tuple[str, ...]
    licence: str  # the model's, as far as its source says


BUILTIN: dict[str, Word] = {
    w.name: w
    for w in (
        Word("alexa", "Alexa", ("en",), PRETRAINED),
        Word("hey_jarvis", "Hey Jarvis", ("en",), PRETRAINED),
        Word("hey_mycroft", "Hey Mycroft", ("en",), PRETRAINED),
        Word("hey_rhasspy", "Hey Rhasspy", ("en",), PRETRAINED),
        Word("okay_nabu", "Okay Nabu", ("en",), "not stated by pyopen-wakeword; assume openWakeWord's (CC BY-NC-SA 4.0)"),
    )
}


def model_name(name: str) -> str | None:
    """A client's spelling ("hey jarvis", "Hey-Jarvis", "ok_nabu", "okay_nabu_v0.1") as a built-in word, or None."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    key = re.sub(r"_v\d+(\.\d+)*$", "", key)  # a version suffix, as other openWakeWord servers name their files
    if key.startswith("ok_"):
        key = "okay_" + key[3:]
    return key if key in BUILTIN else None


def resolve(names: Sequence[str] | None) -> tuple[dict[str, str], list[str]]:
    """The words a request asks for -> ({model: the name to answer with}, the names that are no built-in word).
    No names (or an empty list): every built-in word, answered by its own name."""
    if not names:
        return {w: w for w in BUILTIN}, []
    chosen: dict[str, str] = {}
    unknown: list[str] = []
    for name in names:
        model = model_name(str(name))
        if model is None:
            unknown.append(str(name))
        else:
            chosen.setdefault(model, str(name))
    return chosen, unknown


class Scorer(Protocol):
    """Probabilities per word for one 80 ms frame of 16 kHz int16 audio."""

    def scores(self, frame: bytes) -> dict[str, float]: ...

    def use(self, words: Iterable[str]) -> None:
        """Listen for these words from now on (others are dropped; new ones start with no memory)."""

    def forget(self) -> None:
        """Clear every word's memory (after a detection)."""

    def close(self) -> None: ...


class WordScorer:
    """The built-in openWakeWord models on one shared feature pipeline (mel spectrogram and embedding run once
    per frame, whatever the number of words)."""

    def __init__(self, words: Iterable[str]) -> None:
        from voicechat.errors import VoicechatError

        try:
            from pyopen_wakeword import OpenWakeWordFeatures
        except ImportError:
            raise VoicechatError("wake words need the package pyopen-wakeword; install it with `pip install pyopen-wakeword`") from None
        self._features: Any = OpenWakeWordFeatures.from_builtin()
        self._models: dict[str, Any] = {}
        self.use(words)

    def use(self, words: Iterable[str]) -> None:
        from pyopen_wakeword import Model, OpenWakeWord

        wanted = set(words)
        for name in [n for n in self._models if n not in wanted]:
            self._models.pop(name).close()
        for name in sorted(wanted - set(self._models)):
            self._models[name] = OpenWakeWord.from_builtin(Model(name))

    def scores(self, frame: bytes) -> dict[str, float]:
        best: dict[str, float] = {}
        if not self._models:
            return best
        for features in self._features.process_streaming(frame):
            for name, model in self._models.items():
                for p in model.process_streaming(features):
                    best[name] = max(best.get(name, 0.0), float(p))
        return best

    def forget(self) -> None:
        for model in self._models.values():
            model.reset()

    def close(self) -> None:
        for model in self._models.values():
            model.close()
        self._models.clear()
        self._features.close()


@dataclass(frozen=True)
class Hit:
    word: str  # the model's name
    timestamp_ms: int  # position in the stream (from its first sample) at the end of the frame that decided


class WakeDetector:
    """Frames in, detections out (the rules are in the module's docstring). Feed any length of 16 kHz int16 PCM."""

    def __init__(self, scorer: Scorer, threshold: float, refractory_s: float = REFRACTORY_S) -> None:
        self.scorer, self.threshold = scorer, threshold
        self._refractory = int(refractory_s * RATE)
        self._pending = b""
        self._samples = 0  # decided so far (whole frames)
        self._quiet_until = 0  # no detection before this sample

    @property
    def position_ms(self) -> int:
        return self._samples * 1000 // RATE

    def feed(self, pcm: bytes) -> list[Hit]:
        hits: list[Hit] = []
        buf = self._pending + pcm
        whole = len(buf) - len(buf) % FRAME_BYTES
        self._pending = buf[whole:]
        for i in range(0, whole, FRAME_BYTES):
            scores = self.scorer.scores(buf[i : i + FRAME_BYTES])
            self._samples += FRAME_SAMPLES
            if self._samples <= self._quiet_until:
                continue
            heard = [(p, w) for w, p in scores.items() if p >= self.threshold]
            if heard:
                hits.append(Hit(max(heard)[1], self.position_ms))
                self.scorer.forget()
                self._quiet_until = self._samples + self._refractory
        return hits
