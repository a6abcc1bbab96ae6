"""Read audio files (anything FFmpeg decodes) into 16 kHz mono float32, with clear errors."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from voicechat.errors import VoicechatError

SAMPLE_RATE = 16000


def _check_wav_header(head: bytes, size: int, name: str) -> None:
    """A RIFF/WAVE file whose data chunk says more bytes than the file holds is truncated."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(head):
        chunk_id, chunk_size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
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


def _open_source(source: str | Path) -> tuple[str, BinaryIO | str]:
    if str(source) == "-":
        import sys

        data = sys.stdin.buffer.read()
        if not data:
            raise VoicechatError("stdin: no data; pipe an audio file in, e.g. `cat a.wav | voicechat transcribe -`")
        _check_wav_header(data[:4096], len(data), "stdin")
        return "stdin", io.BytesIO(data)
    path = Path(source)
    name = str(path)
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
    _check_wav_header(head, size, name)
    return name, str(path)


def decode(source: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of a file (or "-" for stdin) to mono float32 at sample_rate."""
    import av

    name, handle = _open_source(source)
    try:
        container = av.open(handle, mode="r", metadata_errors="ignore")
    except (av.error.InvalidDataError, ValueError) as e:
        raise VoicechatError(f"{name}: not an audio file or an unsupported format ({_short(e)}); give wav, flac, mp3, ogg, m4a or a video") from None
    except av.error.FFmpegError as e:
        raise VoicechatError(f"{name}: cannot open ({_short(e)}); check that it is an audio or video file") from None
    with container:
        if not container.streams.audio:
            raise VoicechatError(f"{name}: holds no audio stream; give a file with sound in it")
        stream = container.streams.audio[0]
        declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        parts: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as e:
            decoded = sum(len(p) for p in parts) / sample_rate
            raise VoicechatError(
                f"{name}: corrupt or truncated audio (decoding failed after {decoded:.1f} s: {_short(e)}); re-export the file"
            ) from None
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
    if audio.size == 0:
        raise VoicechatError(f"{name}: contains no audio samples (zero length); give a longer recording")
    got = audio.size / sample_rate
    if declared and declared > 1.0 and got < 0.9 * declared:
        raise VoicechatError(
            f"{name}: truncated audio ({got:.1f} s decoded of {declared:.1f} s declared); re-export the file"
        )
    return audio.astype(np.float32) / 32768.0


def _short(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.split(":")[0].strip() if text else e.__class__.__name__


def rms_dbfs(audio: np.ndarray) -> float:
    """Loudness of float audio in dBFS (-inf for digital silence)."""
    if audio.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")
