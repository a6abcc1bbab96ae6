"""Read audio files (anything FFmpeg decodes) as 16 kHz mono float32, streamed, with clear errors.

:func:`open_audio` decodes block by block, so memory does not grow with the
recording's length, and stdin is read as it arrives: input that is plainly not
audio (text) is refused after its first few kilobytes. :func:`decode` returns
a whole (short) recording as one array.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from voicechat.errors import VoicechatError

SAMPLE_RATE = 16000
SNIFF_BYTES = 4096  # what is read before deciding whether stdin can be audio at all
STDIN_PROBE_BYTES = 262144  # FFmpeg's format probing on a pipe reads at most this much

# Decoded audio is bounded by what the decoder hands out, checked on every frame before it is
# resampled (a 413-byte FLAC at 1 Hz said 4096 s per frame: 65 M samples each once resampled).
MIN_RATE = 4000  # Hz. Every speech codec records at 8000 Hz or more (AAC's lowest is 7350, VOX ADPCM 6000); below
#                  4000 Hz there is no speech band left to hear, and a lower rate only serves to multiply samples
MAX_RATE = 768000  # Hz, the highest rate audio hardware records at; resampling down from far higher builds
#                    a filter whose length grows with the ratio (gigabytes at 2**31 Hz)
MAX_CHANNELS = 64  # a 22.2 layout has 24; more is a broken or hostile header
SECONDS_PER_BYTE = 1.0  # at most this much audio per byte of input; compressed silence (FLAC) stays under 0.7
ALLOWANCE_S = 60.0  # ...beyond this much, which any file may decode to whatever its size
MAX_FRAME_S = 60.0  # one decoded frame longer than this (FLAC's longest legal frame is 16 s at 4000 Hz) is refused


def _check_wav_header(head: bytes, size: int, name: str) -> None:
    """A RIFF/WAVE file whose data chunk says more bytes than the file holds is truncated."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(head):
        chunk_id, chunk_size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if chunk_id == b"fmt " and pos + 12 <= len(head):
            channels = struct.unpack("<H", head[pos + 10 : pos + 12])[0]
            if channels > MAX_CHANNELS:  # FFmpeg would only say "Invalid argument"
                raise VoicechatError(f"{name}: {channels} audio channels (at most {MAX_CHANNELS}); re-export it as mono or stereo")
        if chunk_id == b"data":
            if chunk_size in (0, 0xFFFFFFFF, 0x7FFFFFFF) or chunk_size > 0x7FFFFF00:
                return  # a streaming writer's placeholder: size unknown
            if pos + 8 + chunk_size > size:
                raise VoicechatError(
                    f"{name}: truncated WAV file (header promises {chunk_size} bytes of audio, "
                    f"the file holds {max(0, size - pos - 8)}); re-export or re-download it"
                )
            return
        pos += 8 + chunk_size + (chunk_size & 1)


def looks_like_text(head: bytes) -> bool:
    """True when the bytes are printable text (no audio container starts like that)."""
    if not head or b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="ignore")
    if len(text.encode("utf-8")) < len(head) - 4:  # more than a character cut at the end is not UTF-8
        return False
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
    return printable >= 0.98 * len(text)


class _Replay:
    """A read-only, non-seekable stream: the sniffed head again, then the rest of the pipe. ``taken``
    counts the bytes handed out (what the decoder has read so far)."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = head, rest
        self.taken = 0

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = (self._head, b"") if n < 0 or n >= len(self._head) else (self._head[:n], self._head[n:])
        else:
            out = self._rest.read(n)
        self.taken += len(out)
        return out


def _not_audio(name: str) -> VoicechatError:
    return VoicechatError(f"{name}: not an audio file (it is text); give wav, flac, mp3, ogg, m4a or a video")


class TooLong(VoicechatError):
    """More audio than the caller takes (``max_seconds``); a server answers it with 413."""


def _open_source(source: str | Path, display: str | None = None) -> tuple[str, _Replay | str]:
    if str(source) == "-":
        import sys

        stdin = sys.stdin.buffer
        head = b""
        while len(head) < SNIFF_BYTES:
            more = stdin.read(SNIFF_BYTES - len(head))
            if not more:
                break
            head += more
        if not head:
            raise VoicechatError("stdin: no data; pipe an audio file in, e.g. `cat a.wav | voicechat transcribe -`")
        if looks_like_text(head):
            raise _not_audio("stdin")
        return "stdin", _Replay(head, stdin)
    path = Path(source)
    name = display or str(path)
    if not path.exists():
        raise VoicechatError(f"{name}: no such file; check the path")
    if path.is_dir():
        raise VoicechatError(f"{name}: is a directory; give an audio file")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(65536)
    except PermissionError:
        raise VoicechatError(f"{name}: permission denied; make the file readable") from None
    if size == 0:
        raise VoicechatError(f"{name}: empty file (0 bytes); give a recording with audio in it")
    if looks_like_text(head[:SNIFF_BYTES]):
        raise _not_audio(name)
    _check_wav_header(head, size, name)
    return name, str(path)


class AudioStream:
    """An opened recording: ``duration`` (declared by the container, or None) and its samples in blocks.

    Iterate once for float32 blocks at ``sample_rate``; errors (corrupt data, truncation,
    no samples at all) are raised where they are found. Use as a context manager.
    """

    def __init__(
        self, source: str | Path, sample_rate: int = SAMPLE_RATE, *, name: str | None = None, max_seconds: float | None = None
    ) -> None:
        import av

        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.name, handle = _open_source(source, name)
        self._pipe = handle if not isinstance(handle, str) else None
        self._size = Path(handle).stat().st_size if isinstance(handle, str) else 0
        options = {"probesize": str(STDIN_PROBE_BYTES)} if not isinstance(handle, str) else {}
        try:
            self._container = av.open(handle, mode="r", metadata_errors="ignore", options=options)
        except (av.error.InvalidDataError, ValueError) as e:
            raise VoicechatError(
                f"{self.name}: not an audio file or an unsupported format ({_short(e)}); give wav, flac, mp3, ogg, m4a or a video"
            ) from None
        except av.error.FFmpegError as e:
            raise VoicechatError(f"{self.name}: cannot open ({_short(e)}); check that it is an audio or video file") from None
        if not self._container.streams.audio:
            self._container.close()
            raise VoicechatError(f"{self.name}: holds no audio stream; give a file with sound in it")
        self._stream = self._container.streams.audio[0]
        s = self._stream
        self.duration: float | None = float(s.duration * s.time_base) if s.duration and s.time_base else None
        if self.duration is None and self._container.duration:
            self.duration = self._container.duration / 1_000_000
        self.samples = 0  # decoded so far
        self._planned = 0  # samples the frames so far resample to (checked before each is resampled)
        ctx = s.codec_context
        try:
            self._check_format(ctx.sample_rate or None, _channels(ctx))
        except VoicechatError:
            self._container.close()
            raise

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
        shape = None
        try:
            for frame in self._container.decode(self._stream):
                self._check_frame(frame)
                now = (frame.format.name, frame.layout.name, frame.sample_rate)
                if shape is not None and now != shape:  # the format changed mid-stream: a resampler for the new one
                    for out in resampler.resample(None):
                        yield self._float(out)
                    resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
                shape = now
                for out in resampler.resample(frame):
                    yield self._float(out)
            for out in resampler.resample(None):
                yield self._float(out)
        except av.error.FFmpegError as e:
            raise VoicechatError(
                f"{self.name}: corrupt or truncated audio (decoding failed after {self.samples / self.sample_rate:.1f} s: "
                f"{_short(e)}); re-export the file"
            ) from None
        if self.samples == 0:
            raise VoicechatError(f"{self.name}: contains no audio samples (zero length); give a longer recording")
        got = self.samples / self.sample_rate
        if self.duration and self.duration > 1.0 and got < 0.9 * self.duration:
            raise VoicechatError(
                f"{self.name}: truncated audio ({got:.1f} s decoded of {self.duration:.1f} s declared); re-export the file"
            )

    def _check_format(self, rate: int | None, channels: int | None) -> None:
        if rate is not None and not MIN_RATE <= rate <= MAX_RATE:
            raise VoicechatError(
                f"{self.name}: sample rate {rate} Hz is outside the {MIN_RATE}-{MAX_RATE} Hz any recording of speech has "
                "(a damaged or crafted header); re-export it at 16000 Hz"
            )
        if channels is not None and channels > MAX_CHANNELS:
            raise VoicechatError(f"{self.name}: {channels} audio channels (at most {MAX_CHANNELS}); re-export it as mono or stereo")

    def _check_frame(self, frame) -> None:
        """Refuse a frame before it is resampled if it would break a bound (see the constants above)."""
        rate = frame.sample_rate
        self._check_format(rate, len(frame.layout.channels))
        out = -(-frame.samples * self.sample_rate // rate)
        if out > MAX_FRAME_S * self.sample_rate:
            raise VoicechatError(
                f"{self.name}: one block of audio lasts {frame.samples / rate:.0f} s (at most {MAX_FRAME_S:.0f} s); "
                "the file is damaged or crafted; re-export it"
            )
        self._planned += out
        seconds = self._planned / self.sample_rate
        if self.max_seconds is not None and seconds > self.max_seconds + 1:
            raise TooLong(f"{self.name}: more than {self.max_seconds:.0f} s of audio; give at most {self.max_seconds:.0f} s")
        read = self._pipe.taken if self._pipe is not None else self._size
        if seconds > ALLOWANCE_S + SECONDS_PER_BYTE * read:
            raise VoicechatError(
                f"{self.name}: decodes to more audio than {read} bytes can hold ({seconds:.0f} s so far); "
                "the file is damaged or crafted; re-export it"
            )

    def _float(self, frame) -> np.ndarray:
        block = frame.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
        self.samples += block.size
        return block


def open_audio(
    source: str | Path, sample_rate: int = SAMPLE_RATE, *, name: str | None = None, max_seconds: float | None = None
) -> AudioStream:
    """Open a file (or "-" for stdin) for streamed decoding; bad input fails here with a one-line error.

    ``name`` is what errors call the input (an upload's own name rather than its temporary file);
    with ``max_seconds``, decoding stops with :class:`TooLong` as soon as a frame would pass it."""
    return AudioStream(source, sample_rate, name=name, max_seconds=max_seconds)


def decode(source: str | Path, sample_rate: int = SAMPLE_RATE, *, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream of a file (or "-" for stdin) to mono float32 at sample_rate."""
    with open_audio(source, sample_rate, max_seconds=max_seconds) as stream:
        parts = list(stream)
    return np.concatenate(parts)


def _channels(ctx) -> int | None:
    layout = getattr(ctx, "layout", None)
    try:
        return len(layout.channels) if layout is not None else getattr(ctx, "channels", None)
    except (AttributeError, TypeError, ValueError):
        return getattr(ctx, "channels", None)


def _short(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.split(":")[0].strip() if text else e.__class__.__name__


def rms_dbfs(audio: np.ndarray) -> float:
    """Loudness of float audio in dBFS (-inf for digital silence)."""
    if audio.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")
