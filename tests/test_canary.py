"""A canary API key through every remote-engine error path, with --debug on.

The servers echo the key back in their error bodies (some do), the SDK puts that text
into its exceptions, and --debug prints tracebacks. The key must appear nowhere: not on
stdout or stderr, not in any file under the test's home (history, recovery files,
caches). The key is not shaped like an OpenAI key, so only voicechat's knowledge of it
(not a pattern) can hide it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import VOICECHAT, write_wav
from tests.hostile import EchoingServer

CANARY = "cnry-" + secrets.token_hex(12)

PATHS = [
    # (id, command, server mode, extra env)
    ("chat-401", ["chat"], "echo401", {}),
    ("chat-400", ["chat"], "echo400", {}),
    ("chat-500", ["chat"], "echo500", {}),
    ("chat-404", ["chat"], "404", {}),
    ("chat-cut", ["chat"], "cut", {}),
    ("chat-timeout", ["chat"], "stall", {"VOICECHAT_LLM_TIMEOUT": "1"}),
    ("chat-refused", ["chat"], "refused", {}),
    ("langchain-401", ["chat", "--llm", "langchain", "--model", "openai:gpt-4o-mini"], "echo401", {}),
    ("langchain-500", ["chat", "--llm", "langchain", "--model", "openai:gpt-4o-mini"], "echo500", {}),
    ("say-401", ["say", "hello", "--engine", "openai", "--voice", "nova", "-o", "{tmp}/o.wav"], "echo401", {}),
    ("say-400", ["say", "hello", "--engine", "openai", "--voice", "nova", "-o", "{tmp}/o.wav"], "echo400", {}),
    ("say-500", ["say", "hello", "--engine", "openai", "--voice", "nova", "-o", "{tmp}/o.wav"], "echo500", {}),
    ("transcribe-401", ["transcribe", "{tmp}/tone.wav", "--engine", "openai"], "echo401", {}),
    ("transcribe-400", ["transcribe", "{tmp}/tone.wav", "--engine", "openai"], "echo400", {}),
    ("transcribe-500", ["transcribe", "{tmp}/tone.wav", "--engine", "openai"], "echo500", {}),
]


def files_holding(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    return hits


# every path with --debug; without it, only the paths whose server echoes the key back are worth a process
CASES = [pytest.param(*p, True, id=f"{p[0]}-debug") for p in PATHS] + [
    pytest.param(*p, False, id=f"{p[0]}-plain") for p in PATHS if p[0].endswith(("401", "500"))
]


def run_case(home: Path, command: list[str], mode: str, extra: dict, debug: bool) -> dict:
    """One path: a server in ``mode``, the command against it with the canary key, in a home of its own."""
    tmp = home / "tmp"
    tmp.mkdir(parents=True)
    write_wav(tmp / "tone.wav", (0.2 * np.sin(np.arange(16000) * 0.3)).astype(np.float32))
    with EchoingServer() as server:
        server.mode = mode
        base = server.base_url
        if mode == "refused":
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                base = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
        env = {
            **os.environ,
            **{f"VOICECHAT_{name}_DIR": str(home / name.lower()) for name in ("CONFIG", "DATA", "CACHE")},
            "OPENAI_API_KEY": CANARY,
            "OPENAI_BASE_URL": base,
            "VOICECHAT_LLM_RETRIES": "0",
            "VOICECHAT_LLM_ENGINE": "openai",
            **extra,
        }
        args = [VOICECHAT, *(["--debug"] if debug else []), *[a.format(tmp=tmp) for a in command]]
        proc = subprocess.run(args, input=b"hello there\n", capture_output=True, env=env, timeout=120)
        echoed = any(r["headers"].get("authorization", "").endswith(CANARY) for r in server.requests)
    return {"proc": proc, "echoed": echoed, "home": home, "tmp": tmp}


@pytest.fixture(scope="module")
def canary_runs(tmp_path_factory) -> dict:
    """Every case's run, three processes at a time (each has its own server and home; most of a run is the
    interpreter starting, which a second core does alongside): case id -> what run_case saw."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.helpers import isolate

    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(max_workers=3) as pool:
        isolate(mp, tmp_path_factory.mktemp("canary-home"))  # (module fixtures run before the per-test isolation)
        futures = {
            case.id: pool.submit(run_case, tmp_path_factory.mktemp(case.id), *case.values[1:]) for case in CASES if case.id is not None
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name,command,mode,extra,debug", CASES)
def test_canary_key_never_shows(canary_runs, request, name, command, mode, extra, debug):
    run = canary_runs[request.node.callspec.id]
    proc = run["proc"]
    if mode.startswith("echo"):  # the server did echo the key: the test is worth something
        assert run["echoed"]
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out.decode(errors="replace")
    assert CANARY.encode() not in out, out.decode(errors="replace")
    if debug:
        assert b"Traceback" in proc.stderr, "--debug shows the traceback (scrubbed)"
    assert files_holding(run["home"], CANARY.encode()) == []
    assert files_holding(run["tmp"], CANARY.encode()) == []
