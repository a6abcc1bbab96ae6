"""Log a session's turns so that a broken history never costs the conversation.

Turns go to the history (the SQLite file or PostgreSQL). If a write fails (a damaged page, a
read-only file, a full disk, a database that cannot be reached even on a new connection), the
user is told once why and where the turns go instead: a JSON Lines
file in the data dir (or the temp dir if that cannot be written either), one turn a
line, that `history` can be rebuilt from by hand.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from voicechat.errors import VoicechatError, scrub


def _warn(message: str) -> None:
    sys.stderr.write(f"voicechat: warning: {scrub(message)}\n")
    sys.stderr.flush()


def recovery_file(kind: str) -> Path:
    """A new file name for this session's recovered turns (in the data dir when writable)."""
    from voicechat import paths

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"{kind}-{stamp}-{os.getpid()}.jsonl"
    for directory in (paths.data_dir() / "recovered", Path(tempfile.gettempdir()) / "voicechat-recovered"):
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if os.access(directory, os.W_OK | os.X_OK):
                return directory / name
        except OSError:
            continue
    return Path(name)  # last resort: the working directory


class TurnLog:
    """Writes turns to the history; after the first failure, to a recovery file."""

    def __init__(self, history: Any, kind: str, *, system_prompt: str | None, engines: dict[str, str | None],
                 warn: Callable[[str], None] = _warn) -> None:
        self.history = history
        self.kind = kind
        self.system_prompt = system_prompt
        self.engines = engines
        self.warn = warn
        self.unavailable: str | None = None  # why the history failed, once it has
        self.recovery: Path | None = None

    def add(self, session_id: int | None, turn: Any) -> int | None:
        """Log one turn; return the session id (None once the history is unavailable)."""
        if self.unavailable is None:
            try:
                if session_id is None:
                    session_id = self.history.new_session(self.kind, system_prompt=self.system_prompt, engines=self.engines)
                self.history.add_turn(session_id, turn)
                return session_id
            except (VoicechatError, sqlite3.Error, OSError) as e:
                self.unavailable = e.message if isinstance(e, VoicechatError) else f"{type(e).__name__}: {e}"
                self.recovery = recovery_file(self.kind)
                self.warn(f"the history log is unavailable ({self.unavailable}); this conversation goes on, "
                          f"and its turns are saved to {self.recovery}")
        self._recover(session_id, turn)
        return session_id

    def _recover(self, session_id: int | None, turn: Any) -> None:
        assert self.recovery is not None
        record = {"kind": self.kind, "session_id": session_id, "system_prompt": self.system_prompt, **self.engines,
                  **{k: v for k, v in dataclasses.asdict(turn).items() if k not in ("id", "session_id")}}
        try:
            fd = os.open(self.recovery, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            if self.recovery is not None:
                self.warn(f"cannot write the recovery file {self.recovery} ({e.strerror}); turns are no longer saved")
            self.recovery = None
            self.unavailable = self.unavailable or str(e)
            self._recover = lambda *a: None  # type: ignore[method-assign]  # said once; keep talking
