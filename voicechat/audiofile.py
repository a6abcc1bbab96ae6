"""Write audio chunks to a WAV/FLAC/OGG file as they come, atomically (temp file, then rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voicechat.atomic import check_writable_dir
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.engines.base import AudioChunk

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def check_output(path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise VoicechatError(f"{path}: unsupported audio extension '{path.suffix or '(none)'}'; use .wav, .flac or .ogg")
    check_writable_dir(path.parent if str(path.parent) else Path("."))


class AudioFileWriter:
    """A sink with the speaker's ``play`` method that writes to a file instead.

    The sample rate is the first chunk's; later chunks at another rate are resampled.
    Nothing appears at ``path`` until the file is complete.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        check_output(self.path)
        self._tmp = self.path.with_name(f".{self.path.name}.part{os.getpid()}{self.path.suffix}")
        self._file: Any = None
        self.rate: int | None = None
        self.samples = 0
        self.first_audio_at: float | None = None

    def __enter__(self) -> "AudioFileWriter":
        return self

    def play(self, chunk: "AudioChunk") -> None:
        import soundfile as sf

        import time

        if self._file is None:
            self.rate = chunk.sample_rate
            fmt, subtype = FORMATS[self.path.suffix.lower()]
            self._file = sf.SoundFile(str(self._tmp), "w", samplerate=self.rate, channels=1, format=fmt, subtype=subtype)
        if self.first_audio_at is None:
            self.first_audio_at = time.perf_counter()
        samples = np.asarray(chunk.samples, dtype=np.float32)
        if chunk.sample_rate != self.rate:
            import soxr

            samples = soxr.resample(samples, chunk.sample_rate, self.rate)
        self._file.write(np.clip(samples, -1.0, 1.0))
        self.samples += len(samples)

    def drain(self, timeout: float | None = None) -> None:
        pass

    def reset(self) -> None:
        """A new reply begins (talk): its first audio is timed afresh; the file stays open."""
        self.first_audio_at = None

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()
        if exc_type is None and self._file is not None:
            os.replace(self._tmp, self.path)
        elif self._tmp.exists():
            self._tmp.unlink()
