"""Sources of a session's audio: a microphone, or an audio file that stands in for one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from voicechat.voice.io import RATE, Frame


class MicSource:
    """Frames from a sound device (a context manager around :class:`voicechat.audio.Microphone`)."""

    def __init__(self, device: str | int | None, frame_ms: int, latency: str) -> None:
        from voicechat.audio import Microphone

        self.frame_ms = frame_ms
        self.realtime = True
        self.timed = True
        self.hears_speaker = True
        self.mic = Microphone(device, frame_ms=frame_ms, latency=latency)

    def __enter__(self) -> MicSource:
        self.mic.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mic.__exit__(*exc)

    def read(self, timeout: float) -> Frame | None:
        got = self.mic.read_timed(timeout)
        return None if got is None else Frame(got[0], captured_at=got[1])

    @property
    def exhausted(self) -> bool:
        return False

    def hold(self, held: bool) -> None:
        pass  # a live microphone cannot wait: the listener decides what to ignore


class FileSource:
    """An audio file as the microphone. It paces itself in real time; with ``fast=True`` it delivers as
    fast as it is read, but holds while the session answers, so turns come one at a time."""

    def __init__(self, path: Path | str, frame_ms: int, *, fast: bool = False, tail_s: float = 2.0) -> None:
        from voicechat.decode import decode

        audio = decode(path)
        self._init(audio, frame_ms, fast=fast, tail_s=tail_s)

    @classmethod
    def from_array(cls, audio: np.ndarray, frame_ms: int, *, fast: bool = False, tail_s: float = 2.0) -> FileSource:
        """Float32 16 kHz samples as a source (tests, benchmarks, a server's uploaded audio)."""
        self = cls.__new__(cls)
        self._init(audio, frame_ms, fast=fast, tail_s=tail_s)
        return self

    def _init(self, audio: np.ndarray, frame_ms: int, *, fast: bool, tail_s: float) -> None:
        audio = np.concatenate([np.asarray(audio, dtype=np.float32), np.zeros(int(RATE * tail_s), dtype=np.float32)])
        self.pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        self.frame_ms = frame_ms
        self.frame_bytes = RATE * frame_ms // 1000 * 2
        self.frame_s = frame_ms / 1000
        self.fast = fast
        self.realtime = not fast
        self.timed = False
        self.hears_speaker = True
        self.pos = 0
        self.started: float | None = None
        self._held = threading.Event()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def hold(self, held: bool) -> None:
        if held:
            self._held.set()
        else:
            self._held.clear()

    def read(self, timeout: float) -> Frame | None:
        if self.exhausted:
            time.sleep(min(timeout, 0.05))
            return None
        if self.fast:
            if self._held.is_set():
                time.sleep(min(timeout, 0.01))
                return None
        else:
            if self.started is None:
                self.started = time.perf_counter()
            due = self.started + (self.pos // self.frame_bytes) * self.frame_s
            wait = due - time.perf_counter()
            if wait > timeout:
                time.sleep(timeout)
                return None
            if wait > 0:
                time.sleep(wait)
        frame = self.pcm[self.pos : self.pos + self.frame_bytes]
        self.pos += self.frame_bytes
        if len(frame) < self.frame_bytes:
            frame += b"\0" * (self.frame_bytes - len(frame))
        return Frame(frame)

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.pcm)
