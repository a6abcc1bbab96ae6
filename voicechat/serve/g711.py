"""G.711 (ITU-T): 8 kHz telephone audio, one byte a sample, as the Realtime API's ``audio/pcmu`` (mu-law) and
``audio/pcma`` (A-law) formats carry it. int16 samples in and out; numpy only (``audioop`` is gone in 3.13)."""

from __future__ import annotations

import numpy as np

RATE = 8000
_BIAS = 0x84


def _exponent(magnitude: np.ndarray) -> np.ndarray:
    """The segment of each magnitude (>= 256): the position of its top bit, less 8 (0..7)."""
    return np.clip(np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 7, 0, 7)


def ulaw_encode(samples: np.ndarray) -> bytes:
    x = np.asarray(samples, dtype=np.int32) >> 2  # (mu-law codes 14 bits)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 8159) + 0x21
    exp = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 5, 0, 7)
    mant = np.where(magnitude > 0x1FFF, 0x0F, (magnitude >> (exp + 1)) & 0x0F)  # past the top segment: the loudest code
    return (~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exp, mant = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mant << 3) + _BIAS) << exp) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def alaw_encode(samples: np.ndarray) -> bytes:
    x = np.asarray(samples, dtype=np.int32)
    sign = np.where(x >= 0, 0x80, 0)
    magnitude = np.minimum(np.where(x >= 0, x, -x - 1), 32767)
    exp = np.where(magnitude < 256, 0, _exponent(magnitude))
    mant = np.where(exp == 0, magnitude >> 4, magnitude >> (exp + 3)) & 0x0F
    return ((sign | (exp << 4) | mant) ^ 0x55).astype(np.uint8).tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    exp, mant = (a >> 4) & 0x07, a & 0x0F
    magnitude = np.where(exp == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(exp - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


ENCODERS = {"audio/pcmu": ulaw_encode, "audio/pcma": alaw_encode}
DECODERS = {"audio/pcmu": ulaw_decode, "audio/pcma": alaw_decode}
