"""`voicechat devices --check-echo`: play a short sound and measure what echo cancellation does on
the current devices (the same stage `talk` uses: speaker -> far end, microphone -> canceller)."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from voicechat.voice.io import RATE

PROBE_S = 3.0


@dataclass
class EchoReport:
    engine: str
    output_latency_ms: float  # PortAudio's figures for the opened streams
    input_latency_ms: float
    echo_heard: bool  # the microphone picked up the probe
    echo_level_db: float | None  # the echo at the microphone, in dB relative to the probe as played
    delay_ms: float | None  # play time -> capture time of the echo, measured (it includes the room)
    erle_db: float | None  # how much of the echo the canceller removed

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def probe(seconds: float = PROBE_S, rate: int = 22050) -> np.ndarray:
    """A speech-like test sound: noise shaped by a syllable-rate envelope, at a moderate level."""
    rng = np.random.default_rng(7)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    noise = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.25 * noise * envelope).astype(np.float32)


def lag_of(near: np.ndarray, far: np.ndarray, max_s: float = 1.0) -> int:
    """Samples by which near lags far (cross-correlation by FFT, within max_s)."""
    n = len(near) + len(far)
    size = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(near, size) * np.conj(np.fft.rfft(far, size)), size)
    span = int(max_s * RATE)
    lags = np.concatenate([c[: span + 1], c[-span:]])
    k = int(np.argmax(np.abs(lags)))
    return k if k <= span else k - len(lags)


def check_echo(input_device: Any, output_device: Any, engine: str, latency: str) -> EchoReport:
    from voicechat.audio import Speaker, find_device
    from voicechat.engines.base import AudioChunk
    from voicechat.voice.echo import LEAD_MS, SPEAKER_LATENCY_S, EchoCancelledSource, FarEnd, make_canceller
    from voicechat.voice.sources import MicSource

    canceller = make_canceller(engine)
    far_end = FarEnd()
    sound = probe()
    near: list[np.ndarray] = []
    far: list[np.ndarray] = []
    out: list[np.ndarray] = []
    device = find_device(output_device, "output")
    with Speaker(device, latency=SPEAKER_LATENCY_S, sample_rate=22050) as speaker, MicSource(input_device, 30, latency) as mic:
        speaker.tap = far_end
        source = EchoCancelledSource(mic, far_end, canceller)
        stop = threading.Event()

        def record() -> None:
            while not stop.is_set():
                got = mic.read(0.1)
                if got is None:
                    continue
                captured = got.captured_at if got.captured_at is not None else time.perf_counter()
                n = np.frombuffer(got.pcm, dtype="<i2")
                f = far_end.read(captured - LEAD_MS / 1000, len(n))
                near.append(n)
                far.append(f)
                out.append(source.clean(n, f))

        reader = threading.Thread(target=record, name="echo-check", daemon=True)
        reader.start()
        time.sleep(0.3)
        speaker.play(AudioChunk(samples=sound, sample_rate=22050, text=""))
        speaker.drain(timeout=PROBE_S + 5)
        time.sleep(0.5)
        stop.set()
        reader.join(2)
        out_latency = float(speaker._stream.latency) if speaker._stream is not None else 0.0
        in_latency = float(mic.mic._stream.latency)
    n_all, f_all, o_all = (np.concatenate(x).astype(np.float64) if x else np.zeros(0) for x in (near, far, out))
    played = f_all != 0
    if played.sum() < RATE:
        return EchoReport(canceller.name, out_latency * 1000, in_latency * 1000, False, None, None, None)
    echo_db = 10 * np.log10((np.mean(n_all[played] ** 2) + 1e-9) / (np.mean(f_all[played] ** 2) + 1e-9))
    heard = echo_db > -50
    delay = None
    if heard:
        delay = LEAD_MS + lag_of(n_all, f_all) * 1000 / RATE
    settled = played.copy()
    settled[: int(np.argmax(played)) + RATE] = False  # the canceller's first second
    erle = None
    if heard and settled.any():
        erle = float(10 * np.log10((np.sum(n_all[settled] ** 2) + 1e-9) / (np.sum(o_all[settled] ** 2) + 1e-9)))
    return EchoReport(canceller.name, out_latency * 1000, in_latency * 1000, bool(heard), float(echo_db), delay, erle)
