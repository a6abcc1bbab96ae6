"""Fast start: help and small commands import no engine library."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.fast

HEAVY = [
    "faster_whisper",
    "ctranslate2",
    "onnxruntime",
    "torch",
    "openai",
    "langchain",
    "langchain_core",
    "llama_cpp",
    "piper",
    "TTS",
    "fastapi",
    "starlette",
    "uvicorn",
    "websockets",
    "prometheus_client",
    "wyoming",
]


@pytest.mark.parametrize("args", [["--help"], ["transcribe", "--help"], ["config", "path"], ["--version"]])
def test_help_imports_nothing_heavy(args):
    code = (
        "import sys\n"
        "from voicechat.cli import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    heavy = out.stdout.rsplit("HEAVY=", 1)[1].strip()
    assert heavy == "", heavy


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "voicechat", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("voicechat ")


def test_network_guard_blocks_non_loopback():
    """pytest-socket is active: any non-loopback connection fails the test that makes it."""
    import socket

    from pytest_socket import SocketConnectBlockedError

    with pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
