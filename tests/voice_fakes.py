"""Synthetic speech frames and scripted engines for fast in-process tests of the voice-session core.

The "speech" is a voiced buzz (a 140 Hz tone with harmonics) that webrtcvad hears as speech:
each word is a 240 ms burst, words are 60 ms apart, and phrases are separated by pauses. The
scripted speech-to-text engine reads the audio the way a real one would be expected to: it
counts the word bursts it is given and returns that many words of its script.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from voicechat.engines.base import AudioChunk, ChatModel, Message, Segment, SpeechToText, TextDelta, TextToSpeech, Usage
from voicechat.voice.io import Playback

RATE = 16000
WORD_S, GAP_S = 0.24, 0.06


def buzz(seconds: float, start: int = 0) -> np.ndarray:
    t = (np.arange(int(RATE * seconds)) + start) / RATE
    x = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in range(1, 20)) * 0.2
    return x.astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(RATE * seconds), dtype=np.float32)


def phrase(words: int) -> np.ndarray:
    parts = []
    for i in range(words):
        parts.append(buzz(WORD_S))
        if i < words - 1:
            parts.append(silence(GAP_S))
    return np.concatenate(parts)


def count_words(audio: np.ndarray) -> int:
    """Word bursts in audio: runs of 10 ms blocks above -30 dBFS at least 100 ms long."""
    n = len(audio) // 160
    loud = [float(np.sqrt(np.mean(audio[i * 160 : (i + 1) * 160] ** 2))) > 0.03 for i in range(n)]
    words, run = 0, 0
    for flag in loud + [False]:
        if flag:
            run += 1
        else:
            words += run >= 10
            run = 0
    return words


class ScriptedSTT(SpeechToText):
    """Returns as many words of its script as the audio holds word bursts (plus the prompt's words already said)."""

    name = "scripted"
    incremental = True

    def __init__(self, script: str) -> None:
        super().__init__()
        self.words = script.split()
        self.calls: list[tuple[float, str | None]] = []  # (audio seconds, prompt)

    def transcribe(self, audio: np.ndarray, *, language: str | None = None) -> Iterator[Segment]:
        text = " ".join(self.words[: count_words(audio)])
        if text:
            yield Segment(0.0, len(audio) / RATE, text)

    def transcribe_turn(
        self, audio: np.ndarray, *, prompt: str | None = None, beam_size: int = 1, silero_filter: bool = False, language: str | None = None
    ) -> str:
        self.calls.append((len(audio) / RATE, prompt))
        before = len(prompt.split()) if prompt else 0
        return " ".join(self.words[before : before + count_words(audio)])


class WholeTurnSTT(ScriptedSTT):
    """An engine that cannot work while the user speaks (like a remote API): the default turn path."""

    incremental = False

    def transcribe_turn(self, audio: np.ndarray, **kw) -> str:
        return SpeechToText.transcribe_turn(self, audio, **kw)


class ScriptedLLM(ChatModel):
    """Streams its replies word by word; can hold before the first token until released."""

    name = "scripted"

    def __init__(self, replies: Sequence[str], *, delay: float = 0.0, reading=None) -> None:
        self.replies = list(replies)
        self.reading = reading  # text -> P(sentence end next), as a local model reads it; None: no reading
        self.readings: list[str] = []
        self.delay = delay
        self.prompts: list[list[Message]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.closed = 0
        self.prefilled = 0

    def stream(self, messages: Sequence[Message]) -> Iterator[TextDelta | Usage]:
        self.prompts.append(list(messages))
        reply = self.replies.pop(0) if self.replies else "Okay."
        self.started.set()
        try:
            while not self.gate.wait(0.01):
                pass
            words = reply.split(" ")
            for i, w in enumerate(words):
                time.sleep(self.delay)
                yield TextDelta(w if i == 0 else " " + w)
            yield Usage(prompt_tokens=10 * len(messages), completion_tokens=len(words))
        finally:
            self.closed += 1

    def prefill(self, messages: Sequence[Message]) -> None:
        self.prefilled += 1

    def end_of_turn_probability(self, messages: Sequence[Message]) -> float | None:
        if self.reading is None:
            return None
        self.readings.append(messages[-1].content)
        return self.reading(messages[-1].content)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    @property
    def model_name(self) -> str:
        return "scripted"


class ScriptedTTS(TextToSpeech):
    """0.05 s of quiet tone per word, at 16 kHz."""

    name = "scripted"
    sample_rate = RATE

    def synthesize(self, text: str) -> Iterator[AudioChunk]:
        yield AudioChunk(buzz(0.05 * max(1, len(text.split()))) * 0.1, RATE, text)


class RecordingSink:
    """A sink that plays in (scaled) real time and reports what it played, as a speaker would."""

    speaks = True
    audible = False
    reports_far_end = False

    def __init__(self, speed: float = 50.0) -> None:
        self.speed = speed  # seconds of audio per second of wall time
        self.chunks: list[AudioChunk] = []
        self._stop = threading.Event()
        self._texts: list[str] = []
        self._partial = ""
        self._first: float | None = None
        self.playing = threading.Event()
        self.holds: list[bool] = []

    def begin(self) -> None:
        self._stop.clear()
        self._texts, self._partial, self._first = [], "", None

    def play(self, chunk: AudioChunk) -> None:
        if self._stop.is_set():
            return
        self.playing.set()
        if self._first is None:
            self._first = time.perf_counter()
        steps = 10
        for i in range(steps):
            if self._stop.wait(chunk.duration / self.speed / steps):
                words = chunk.text.split()
                self._partial = " ".join(words[: len(words) * i // steps])
                return
        self.chunks.append(chunk)
        self._texts.append(chunk.text)

    def drain(self) -> None:
        pass

    def stop(self) -> None:
        self._stop.set()

    def hold(self, on: bool) -> bool:
        self.holds.append(on)
        return False  # not a loudspeaker: nothing to pause

    def playback(self) -> Playback:
        return Playback(" ".join([*self._texts, self._partial]).strip(), self._first)

    def feed(self, far_end: object) -> None:
        pass
