"""Write audio chunks to a WAV/FLAC/OGG file as they come, atomically (temp file, then rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voicechat.atomic import check_output_file
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.engines.base import AudioChunk

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def check_output(path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise VoicechatError(f"{path}: unsupported audio extension '{path.suffix or '(none)'}'; use .wav, .flac or .ogg")
    check_output_file(path)


class AudioFileWriter:
    """A sink with the speaker's ``play`` method that writes to a file instead.

    The sample rate is the first chunk's; later chunks at another rate are resampled.

    Two lives, one class:

    - a one-shot writer (``say -o``): nothing appears at ``path`` until the file is
      complete; if the work fails or is interrupted, the partial file is removed.
    - a long-running writer (``talk --output``): the first :meth:`reset` (a new reply
      begins) marks it so. A WAV is then published under its final name as soon as it is
      opened, and its header is rewritten after every block, so even a hard kill leaves a
      playable file holding every block written. FLAC and OGG cannot be kept valid that
      way: they are published, complete, when the writer closes for any reason.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        check_output(self.path)
        self._tmp = self.path.with_name(f".{self.path.name}.part{os.getpid()}{self.path.suffix}")
        self._file: Any = None
        self._raw: Any = None  # the open file under a WAV, flushed after every block
        self.rate: int | None = None
        self.samples = 0
        self.first_audio_at: float | None = None
        self.live = False
        self.published = False

    def __enter__(self) -> AudioFileWriter:
        return self

    def _open(self, rate: int) -> None:
        self.rate = rate
        fmt, subtype = FORMATS[self.path.suffix.lower()]
        if fmt == "WAV":
            import wave

            self._raw = open(self._tmp, "wb")
            self._file = wave.open(self._raw, "wb")
            self._file.setnchannels(1)
            self._file.setsampwidth(2)
            self._file.setframerate(rate)
            self._file.writeframes(b"")  # the header, with sizes for no audio yet
            self._raw.flush()
        else:
            import soundfile as sf

            self._file = sf.SoundFile(str(self._tmp), "w", samplerate=rate, channels=1, format=fmt, subtype=subtype)
        if self.live:
            self._publish()

    def _publish(self) -> None:
        if self._raw is not None and not self.published:  # a WAV: valid at every block from now on
            os.replace(self._tmp, self.path)
            self.published = True

    def play(self, chunk: AudioChunk) -> None:
        import time

        if self._file is None:
            self._open(chunk.sample_rate)
        if self.first_audio_at is None:
            self.first_audio_at = time.perf_counter()
        samples = np.asarray(chunk.samples, dtype=np.float32)
        if chunk.sample_rate != self.rate:
            import soxr

            samples = soxr.resample(samples, chunk.sample_rate, self.rate)
        samples = np.clip(samples, -1.0, 1.0)
        if self._raw is not None:
            # wave rewrites the RIFF and data sizes after each call; flushing hands the block
            # to the kernel, so a killed process still leaves it in the file
            self._file.writeframes((samples * 32767.0).round().astype("<i2").tobytes())
            self._raw.flush()
        else:
            self._file.write(samples)
        self.samples += len(samples)

    def drain(self, timeout: float | None = None) -> None:
        pass

    def reset(self) -> None:
        """A new reply begins (talk): its first audio is timed afresh; the file stays open and is published."""
        self.first_audio_at = None
        if not self.live:
            self.live = True
            self._publish()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._raw is not None:
            self._raw.close()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            self._close()
        except BaseException:
            if not self.published:  # a close that failed (a full disk on the last flush) leaves a truncated file:
                self._tmp.unlink(missing_ok=True)  # never publish that
                raise
            return  # a live file is already in place, with all that its readers could have read of it
        if self.published:
            return
        if self._file is not None and (exc_type is None or (self.live and self.samples)):
            os.replace(self._tmp, self.path)  # complete, or what a long-running writer finished
            self.published = True
        elif self._tmp.exists():
            self._tmp.unlink()
