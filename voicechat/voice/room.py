"""A synthetic room, for measuring echo cancellation without hardware (tests, bench/echo.py, the device check).

The loudspeaker's signal reaches the microphone after ``delay_ms``, attenuated, with a short
exponentially decaying reverb; the user's voice is added on top.
"""

from __future__ import annotations

import numpy as np

from voicechat.voice.io import RATE


def room_response(delay_ms: float, gain: float, reverb_ms: float = 60.0, seed: int = 0) -> np.ndarray:
    """An impulse response: a direct path at delay_ms, then a decaying noise tail ~20 dB below it."""
    d = int(RATE * delay_ms / 1000)
    n = int(RATE * reverb_ms / 1000)
    h = np.zeros(d + n + 1, dtype=np.float64)
    h[d] = gain
    tail = np.random.default_rng(seed).standard_normal(n) * np.exp(-np.arange(n) / (n / 5))
    h[d + 1 :] += tail * gain * 0.1
    return h


def through_room(far: np.ndarray, delay_ms: float, gain: float, reverb_ms: float = 60.0) -> np.ndarray:
    """What the microphone hears of float32 16 kHz loudspeaker audio."""
    return np.convolve(far, room_response(delay_ms, gain, reverb_ms))[: len(far)].astype(np.float32)


def erle_db(mic: np.ndarray, cleaned: np.ndarray) -> float:
    """Echo return loss enhancement: how much quieter the cleaned echo is, in dB."""
    num = float(np.sum(np.asarray(mic, dtype=np.float64) ** 2))
    den = float(np.sum(np.asarray(cleaned, dtype=np.float64) ** 2))
    return float(10 * np.log10(num / max(den, 1e-12)))


def to_pcm(x: np.ndarray) -> np.ndarray:
    pcm: np.ndarray = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    return pcm
