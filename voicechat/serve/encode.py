"""Speech as a streamed body: chunks of float samples in, bytes of the asked format out, as they come.

pcm is raw 16-bit little-endian mono at 24 kHz (what OpenAI's API sends); wav is 16-bit mono at the
voice's own rate with a header of unknown length (players and decoders read it as a stream); flac,
mp3, opus (in Ogg) and aac are encoded with PyAV, each written out as soon as the encoder gives it.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

FORMATS = {"pcm": "audio/pcm", "wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac"}
PCM_RATE = 24000
_AV = {"flac": ("flac", "flac", None), "mp3": ("mp3", "libmp3lame", None), "opus": ("ogg", "libopus", 48000), "aac": ("adts", "aac", None)}


def _s16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def wav_header(rate: int) -> bytes:
    """A WAV header for a stream whose length is not known yet (sizes set to the maximum)."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


class _Sink:
    """A write-only file for PyAV that hands over what was written since the last take()."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts = []
        return out

    def flush(self) -> None:
        pass


class Encoder:
    """``feed(samples, rate)`` -> bytes ready now; ``finish()`` -> the rest."""

    def __init__(self, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(fmt)
        self.fmt = fmt
        self.rate: int | None = None
        self._resampler: Any = None
        self._container: Any = None
        self._stream: Any = None
        self._sink = _Sink()
        self._pts = 0

    @property
    def media_type(self) -> str:
        return FORMATS[self.fmt]

    def feed(self, samples: np.ndarray, rate: int) -> bytes:
        samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        if self.fmt == "pcm":
            if self._resampler is None and rate != PCM_RATE:
                import soxr

                self._resampler = soxr.ResampleStream(rate, PCM_RATE, 1, dtype="float32")
            if self._resampler is not None:
                samples = self._resampler.resample_chunk(samples, last=False)
            return _s16(samples)
        if self.fmt == "wav":
            head = b""
            if self.rate is None:
                self.rate = rate
                head = wav_header(rate)
            return head + _s16(samples)
        return self._encode(samples, rate)

    def finish(self) -> bytes:
        if self.fmt == "pcm":
            if self._resampler is not None:
                return _s16(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
            return b""
        if self.fmt == "wav":
            return wav_header(self.rate or 22050) if self.rate is None else b""
        if self._container is None:
            self._open(22050)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()

    def _open(self, rate: int) -> None:
        import av

        container_format, codec, fixed_rate = _AV[self.fmt]
        self.rate = fixed_rate or rate
        # Ogg pages are cut every 100 ms instead of every second, so opus leaves as it is encoded
        options = {"page_duration": "100000"} if container_format == "ogg" else {}
        self._container = av.open(self._sink, mode="w", format=container_format, options=options)
        self._stream = self._container.add_stream(codec, rate=self.rate, layout="mono")
        if self.fmt == "mp3":
            self._stream.bit_rate = 64000
        if self.rate != rate:
            import soxr

            self._resampler = soxr.ResampleStream(rate, self.rate, 1, dtype="float32")

    def _encode(self, samples: np.ndarray, rate: int) -> bytes:
        import av

        if self._container is None:
            self._open(rate)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=False)
        if not len(samples):
            return b""
        frame = av.AudioFrame.from_ndarray((np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        assert self.rate is not None  # (set by _open above)
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(samples)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()
