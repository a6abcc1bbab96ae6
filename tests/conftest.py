"""Shared fixtures. Every test runs with its own config, data and cache dirs, and
pytest-socket (see pytest.ini options) refuses any connection that is not loopback.

Tests marked ``fast`` form the first tier (``pytest -m fast``): they need no model, sound card,
server or browser. The guard below holds them to it: a fast test that asks for such a fixture, or
whose process reaches for a bundled model, fails and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import isolate, speak, write_wav

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    return isolate(monkeypatch, tmp_path_factory.mktemp("home"))


# fixtures that bring a model, a sound card, a server or a database: not for the fast tier
HEAVY_FIXTURES = {"card", "hear", "whisper", "llama_server", "postgres", "history_url", "sentence_wav", "silence_wav", "speech_dir"}


@pytest.fixture(autouse=True)
def fast_tier_guard(request, monkeypatch):
    if request.node.get_closest_marker("fast") is None:
        return
    heavy = sorted(HEAVY_FIXTURES & set(request.fixturenames))
    if heavy:
        pytest.fail(f"a test marked fast uses {', '.join(heavy)}: take the mark off, or the fixture")

    def refuse(*args, **kwargs):
        raise AssertionError("a test marked fast reached for a bundled model: take the mark off")

    from tests import helpers
    from voicechat import models
    from voicechat.engines import smart_turn

    for name in ("whisper_model", "piper_voice", "smollm2_gguf"):
        monkeypatch.setattr(models, name, refuse)
    monkeypatch.setattr(helpers, "piper_voice", refuse)
    monkeypatch.setattr(smart_turn, "bundled_model", refuse)


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def sentence_wav(speech_dir) -> Path:
    return write_wav(speech_dir / "sentence.wav", speak(SENTENCE))


@pytest.fixture(scope="session")
def silence_wav(speech_dir) -> Path:
    import numpy as np

    return write_wav(speech_dir / "silence.wav", np.zeros(16000 * 4, dtype=np.float32))


@pytest.fixture()
def card(tmp_path):
    """The ALSA file-plugin virtual sound card, active for this process and its subprocesses."""
    from tests.soundcard import AlsaFileCard

    with AlsaFileCard(tmp_path / "card") as c:
        yield c


@pytest.fixture(scope="session")
def whisper():
    """The raw bundled Whisper model, to check what came out of a speaker or a file."""
    from faster_whisper import WhisperModel

    from voicechat import models

    return WhisperModel(models.whisper_model(), device="cpu", compute_type="int8")


@pytest.fixture(scope="session")
def hear(whisper):
    """Transcribe float audio at any sample rate with the bundled Whisper."""

    def _hear(audio, sample_rate: int) -> str:
        import numpy as np
        import soxr

        if sample_rate != 16000:
            audio = soxr.resample(audio, sample_rate, 16000)
        segments, _ = whisper.transcribe(np.asarray(audio, dtype=np.float32), beam_size=5)
        return " ".join(s.text.strip() for s in segments)

    return _hear


@pytest.fixture(scope="session")
def llama_server():
    """llama.cpp's OpenAI-compatible server with the bundled SmolLM2, on loopback."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from voicechat import models

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            models.smollm2_gguf(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--model_alias",
            "smollm2",
            "--n_threads",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/models", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("llama.cpp server exited") from None
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("llama.cpp server did not start")
    yield base
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on loopback for the whole run (tests/pgserver.py)."""
    from tests.pgserver import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def history_url(request, monkeypatch):
    """Each history test on both backends: None for the SQLite file in the data dir, or the URL of a
    new PostgreSQL database, which the CLI and subprocesses see as VOICECHAT_HISTORY_URL."""
    if request.param == "sqlite":
        yield None
        return
    url = request.getfixturevalue("postgres").new_database()
    monkeypatch.setenv("VOICECHAT_HISTORY_URL", url)
    yield url
