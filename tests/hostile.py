"""Builders for hostile inputs: damaged databases, binary and huge files, servers that misbehave."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.servers import OpenAILikeServer
from voicechat.conversation.history import History, Turn


def history_with_turns(path: Path, sessions: int = 30, turns: int = 5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with History(path) as h:
        for _ in range(sessions):
            sid = h.new_session("chat")
            for _ in range(turns):
                h.add_turn(sid, Turn("q" * 500, "a" * 2000))
        h.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def corrupt_pages(path: Path, tables: tuple[str, ...] = ("turns", "sessions")) -> Path:
    """Overwrite the head of the root page of each table, as a bad sector or a stray write would."""
    import sqlite3

    db = sqlite3.connect(path)
    roots = dict(db.execute("SELECT name, rootpage FROM sqlite_master").fetchall())
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(path, "r+b") as f:
        for name in tables:
            f.seek((roots[name] - 1) * page_size)
            f.write(b"\xff" * 64)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


def leftovers(root: Path) -> list[str]:
    """Part files and probes that a run must never leave behind."""
    return sorted(str(p) for p in root.rglob("*") if ".part" in p.name or p.name.startswith(".voicechat-probe-"))


class EchoingServer(OpenAILikeServer):
    """A server whose errors repeat the caller's API key back, as some proxies and servers do."""

    def __init__(self) -> None:
        super().__init__()
        self._httpd.handle_error = lambda request, address: None  # a client hanging up is not news

    def error(self, h) -> bool:
        auth = h.headers.get("Authorization", "")
        key = auth.split(" ", 1)[-1]
        if self.mode == "echo401":
            h.send_json(401, {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}})
            return True
        if self.mode == "echo500":
            h.send_json(500, {"error": {"message": f"upstream failed for key {key}", "type": "server_error"}})
            return True
        if self.mode == "echo400":
            h.send_json(400, {"error": {"message": f"bad request from {key}", "type": "invalid_request_error"}})
            return True
        return super().error(h)


RSS_WRAPPER = """
import resource, subprocess, sys, json
stdin = open(sys.argv[1], "rb") if sys.argv[1] != "-" else subprocess.DEVNULL
p = subprocess.run(sys.argv[2:], stdin=stdin, capture_output=True)
print(json.dumps({"code": p.returncode, "stdout": p.stdout.decode(errors="replace"), "stderr": p.stderr.decode(errors="replace"),
                  "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run_measured(args: list[str], stdin: Path | None = None, env: dict | None = None, timeout: float = 300) -> dict:
    """Run a command from a small wrapper process and return its exit code, output and peak RSS (MB).

    The peak is read with RUSAGE_CHILDREN in the wrapper, so it is the command's own, not pytest's.
    """
    out = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, str(stdin) if stdin else "-", *args],
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout)


def write_text_file(path: Path, megabytes: int) -> Path:
    line = ("alpha beta gamma delta naïve 東京 1234 x.y end. " * 40) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(megabytes * 1_000_000 // len(line.encode())):
            f.write(line)
    return path


def write_binary_file(path: Path, megabytes: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(megabytes):
            f.write(os.urandom(1_000_000))
    return path
