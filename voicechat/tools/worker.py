"""A process that runs pure-Python tools, so that a deadline can stop them.

A thread cannot be stopped, and a tool stuck in one C call (``round(1, -10**8)`` builds a
number of a hundred million digits) holds the interpreter's lock: no other thread runs, not
even the one that watches the deadline. A tool marked with a ``worker`` target therefore runs
here, in a child process of its own that is killed when the deadline passes or the turn is
interrupted; the next call starts a fresh one. The process is kept between calls (starting
Python costs tens of milliseconds), has a memory limit, and ends when its parent closes
the pipe.

Protocol: one JSON line per request, ``{"target": "module:function", "args": {...}}``, and
one JSON line per answer: ``{"ok": text}``, ``{"refused": message}`` (the tool's ToolError)
or ``{"failed": "Type: message"}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import IO, Any

MEMORY_LIMIT = 1 << 30  # address space of the worker, in bytes: a runaway allocation fails there, not in the machine


class WorkerGone(Exception):
    """The worker process ended (killed at the deadline, or crashed) before answering."""


class Worker:
    """One worker process, started on the first call and kept for the next ones. Calls are serialized."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one call at a time
        self._state = threading.Lock()  # guards _proc between a caller and kill()

    def _started(self) -> subprocess.Popen:
        with self._state:
            if self._proc is None or self._proc.poll() is not None:
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "voicechat.tools.worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    close_fds=True,
                )
            return self._proc

    def warm(self) -> None:
        """Start the process now (it imports while the session loads), so the first call does not wait for it."""
        self._started()

    def call(self, target: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run ``target(args)`` in the worker and return its answer; WorkerGone when the process died first."""
        with self._lock:
            proc = self._started()
            stdin, stdout = proc.stdin, proc.stdout
            assert stdin is not None and stdout is not None
            try:
                stdin.write(json.dumps({"target": target, "args": args}).encode() + b"\n")
                stdin.flush()
                line = stdout.readline()
            except (OSError, ValueError):  # the pipe closed under us: killed
                line = b""
            if not line:
                self.kill()
                raise WorkerGone()
            return json.loads(line)

    def kill(self) -> None:
        """Stop the worker now (a call waiting on it gets WorkerGone); the next call starts another."""
        with self._state:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a killed process is always reaped
            pass
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    close = kill


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):  # not on this platform: the deadline still applies
        pass


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    import importlib

    from voicechat.tools.base import ToolError

    target = str(request.get("target", ""))
    module, _, name = target.partition(":")
    if not module or not name:  # the target is the Tool's own (code), never the model's
        return {"failed": f"ValueError: '{target[:80]}' is not a tool function"}
    try:
        result = getattr(importlib.import_module(module), name)(request.get("args") or {})
    except ToolError as e:
        return {"refused": str(e)}
    except MemoryError:
        return {"refused": "the calculation needs more memory than a tool may use"}
    except Exception as e:
        return {"failed": f"{type(e).__name__}: {str(e)[:200]}"}
    return {"ok": result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)}


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    for line in inp:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        out.write(json.dumps(_answer(request)).encode() + b"\n")
        out.flush()


def main() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it kills or closes this worker
    _limit_memory()
    out = os.fdopen(os.dup(1), "wb")  # the answers' own pipe: a tool that prints cannot garble them
    os.dup2(2, 1)
    serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
