"""Transcription of an audio stream while it arrives (a Wyoming `audio-chunk` stream, for one).

The same parts as a live turn: webrtcvad finds the pauses, the :class:`Transcriber` transcribes the
audio so far at each one (committing long speech so each pass stays short), and at the end of the
stream only the audio after the last pause is left to decode, usually nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from voicechat.voice.io import RATE
from voicechat.voice.transcriber import Transcriber, UtteranceText
from voicechat.voice.vad import Pause, Segmenter, SpeechStarted

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.engines.base import SpeechToText


class StreamingTranscript:
    """``push(pcm)`` 16 kHz mono int16 as it comes; ``finish()`` -> the transcript of all of it."""

    def __init__(
        self,
        stt: SpeechToText,
        cfg: Config,
        language: str | None,
        *,
        on_partial: Callable[[str, str], None] | None = None,
        max_seconds: float = 3600.0,
    ) -> None:
        """``on_partial(text so far, committed)``: committed is the settled start of it, which later passes never change."""
        listen = dataclasses.replace(cfg.listen, max_utterance_s=max_seconds + 1)  # one stream is one utterance
        self.seg = Segmenter(listen, pause_ms=cfg.turn.pause_ms)
        self.frame_bytes = self.seg.frame_bytes
        self.transcriber = Transcriber(
            stt,
            cfg.turn,
            language or cfg.stt.language,
            incremental=bool(stt.incremental),
            on_partial=(lambda utt, text: on_partial(text, utt.committed)) if on_partial else None,
        )
        self.utt = UtteranceText()
        self.frames: list[bytes] = []
        self._rest = b""
        self._partial_frames = max(1, cfg.turn.partial_every_ms // listen.frame_ms)
        self._since_partial = 0
        self.transcriber.start()

    @property
    def language(self) -> str | None:
        """The stream's language: the one given, or the one identified among listen.languages (once enough
        speech was heard; settled after finish()). None: not known (no speech, or an engine that does not say)."""
        return self.utt.language or self.utt.guess

    @property
    def seconds(self) -> float:
        return len(self.frames) * self.frame_bytes / 2 / RATE

    def push(self, pcm: bytes) -> None:
        buf = self._rest + pcm
        whole = len(buf) - len(buf) % self.frame_bytes
        for start in range(0, whole, self.frame_bytes):
            self._frame(buf[start : start + self.frame_bytes])
        self._rest = buf[whole:]

    def _frame(self, frame: bytes) -> None:
        self.frames.append(frame)
        for event in self.seg.push(frame):
            if isinstance(event, SpeechStarted):
                self._since_partial = 0
            elif isinstance(event, Pause) and self.seg.active:
                self.transcriber.request(self.utt, self.seg.audio(), pause=True)
        if self.seg.active and self.seg.silence_run == 0 and self.transcriber.incremental:
            self._since_partial += 1
            if self._since_partial >= self._partial_frames and not self.transcriber.busy:
                self._since_partial = 0
                self.transcriber.request(self.utt, self.seg.audio(), pause=False)

    def finish(self, timeout: float = 120.0) -> tuple[str, float]:
        """The whole transcript, and how long it took after the end of the stream (0 when it was ready)."""
        asked = time.perf_counter()
        try:
            if self.seg.active and self.seg.speech_enough:
                audio = self.seg.audio()  # up to the end of speech: what the last pause's pass transcribed
            else:  # the detector heard no clear speech: let the engine judge all of it
                audio = np.frombuffer(b"".join(self.frames), dtype="<i2").astype(np.float32) / 32768.0
            if not len(audio):
                return "", 0.0
            text, ready = self.transcriber.final(self.utt, audio, timeout)
            return text, max(0.0, ready - asked)
        finally:
            self.close()

    def close(self) -> None:
        self.transcriber.close(timeout=2.0)
