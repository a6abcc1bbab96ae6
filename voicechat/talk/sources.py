"""Where talk's audio comes from: a microphone, or an audio file standing in for one."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from voicechat.audio import MIC_RATE, Microphone


class Source(Protocol):
    frame_bytes: int

    def read(self, timeout: float) -> bytes | None: ...

    @property
    def exhausted(self) -> bool: ...


class MicSource:
    """Frames from a sound device (a context manager around :class:`voicechat.audio.Microphone`)."""

    def __init__(self, device: str | int | None, frame_ms: int, latency: str) -> None:
        self.mic = Microphone(device, frame_ms=frame_ms, latency=latency)
        self.frame_bytes = self.mic.frame * 2

    def __enter__(self) -> "MicSource":
        self.mic.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mic.__exit__(*exc)

    def read(self, timeout: float) -> bytes | None:
        return self.mic.read(timeout)

    @property
    def exhausted(self) -> bool:
        return False


class FileSource:
    """An audio file as the microphone: paced in real time, or as fast as the pipeline takes it (fast=True).

    ``pause`` (an Event) holds a fast source while a turn is in progress, so turns are processed one by one.
    """

    def __init__(self, path: Path | str, frame_ms: int, *, fast: bool = False, tail_s: float = 1.5) -> None:
        from voicechat.decode import decode

        audio = decode(path)
        audio = np.concatenate([audio, np.zeros(int(MIC_RATE * tail_s), dtype=np.float32)])  # lets the end rule fire
        self.pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        self.frame_bytes = MIC_RATE * frame_ms // 1000 * 2
        self.frame_s = frame_ms / 1000
        self.fast = fast
        self.pos = 0
        self.started: float | None = None
        self.pause = threading.Event()

    def __enter__(self) -> "FileSource":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read(self, timeout: float) -> bytes | None:
        if self.exhausted:
            time.sleep(min(timeout, 0.05))
            return None
        if self.fast:
            if self.pause.is_set():
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
        return frame

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.pcm)
