"""Log a session's turns so that a broken history never costs the conversation.

Turns go to the history (the SQLite file or PostgreSQL). If a write fails (a damaged page, a
read-only file, a full disk, a database that cannot be reached even on a new connection), the
user is told once why and where the turns go instead: a JSON Lines
file in the data dir (or the temp dir if that cannot be written either: a full disk), one turn
a line, that `voicechat history import` brings back. If no file takes them, they stay in memory
and are printed on stderr when the conversation ends: a turn is never silently lost.

Each line carries ``turn_key`` (the turn's identity) and ``session_key`` (the session's public id),
so `voicechat history import` brings a file back once however often it is run
(:mod:`voicechat.conversation.recovery`). A conversation that fell back goes back by itself: the next
turn tries the history again (then after 5 s, 10 s, ... at most every 5 minutes: :class:`Backoff`), and once
it takes writes, the turns kept meanwhile are imported first, in order, and the conversation goes on there.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from voicechat.errors import VoicechatError, scrub


def _warn(message: str) -> None:
    sys.stderr.write(f"voicechat: warning: {scrub(message)}\n")
    sys.stderr.flush()


def recovery_dirs() -> list[Path]:
    """Where recovered turns may go, in order: the data dir, then a private folder in the temp dir
    (often another disk: the data dir's may be the one that is full)."""
    from voicechat import paths

    uid = os.getuid() if hasattr(os, "getuid") else 0
    return [paths.data_dir() / "recovered", Path(tempfile.gettempdir()) / f"voicechat-recovered-{uid}"]


def _usable_dir(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = directory.stat()
    except OSError:
        return False
    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()  # a folder another user made in /tmp is not ours
    return mine and os.access(directory, os.W_OK | os.X_OK)


def recovery_file(kind: str, directory: Path | None = None) -> Path:
    """A new file name for this session's recovered turns (in the data dir when usable)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"{kind}-{stamp}-{os.getpid()}.jsonl"
    if directory is not None:
        return directory / name
    for candidate in recovery_dirs():
        if _usable_dir(candidate):
            return candidate / name
    return recovery_dirs()[-1] / name


def append_line(path: Path, line: str) -> None:
    """Append one line durably, or leave the file as it was (no half line after a full disk)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    size = os.fstat(fd).st_size
    try:
        data = line.encode("utf-8")
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
            if size == 0:
                os.unlink(path)
        raise
    finally:
        os.close(fd)


RETRY_FIRST_S = 5.0  # after a failed retry, the next waits this long, then twice as long each time...
RETRY_MAX_S = 300.0  # ...up to this
MAX_PENDING = 10_000  # turns carried to bring back; past this the conversation stays on its file (`history import` takes it)


class Backoff:
    """When a failed history is tried again: at the first turn after it failed, then after
    ``first`` seconds, doubling on each failure up to ``most``. Pure: the clock is passed in."""

    def __init__(self, first: float = RETRY_FIRST_S, most: float = RETRY_MAX_S) -> None:
        self.first, self.most = first, most
        self.wait = 0.0
        self.at = 0.0  # monotonic time of the next try

    def failed(self, now: float) -> None:
        self.at = now + self.wait
        self.wait = min(self.most, self.first if self.wait == 0 else self.wait * 2)

    def due(self, now: float) -> bool:
        return now >= self.at

    def reset(self) -> None:
        self.wait, self.at = 0.0, 0.0


class TurnLog:
    """Writes turns to the history; after the first failure, to a recovery file.

    If no recovery file can be written either (the data dir and the temp dir both full or
    read-only), the turns are kept in memory: each later turn tries the recovery files again,
    and :meth:`close` (or the process's exit) tries once more and otherwise prints them on
    stderr, one JSON line each, for the user to keep.
    """

    def __init__(
        self,
        history: Any,
        kind: str,
        *,
        system_prompt: str | None,
        engines: dict[str, str | None],
        warn: Callable[[str], None] = _warn,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.history = history  # a History, or an UnavailableHistory: both offer available()
        self.kind = kind
        self.system_prompt = system_prompt
        self.engines = engines
        self.warn = warn
        self.unavailable: str | None = None  # why the history failed, once it has
        self.recovery: Path | None = None  # the recovery file in use (None: none could be written)
        self.unsaved: list[str] = []  # JSON lines no file could take
        self.pending: list[dict[str, Any]] = []  # the records of the turns kept out of the history since it failed
        self.session_key: str | None = None  # the session's public id, written in each line
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.permanent = False  # a damaged database (or too long an outage): not tried again
        self._tried: set[Path] = set()
        self._closed = False
        self._registered = False

    def add(self, session_id: int | None, turn: Any) -> int | None:
        """Log one turn; return the session id (None while the session has none in the history)."""
        from voicechat.conversation.history import new_key

        if session_id is None and self.session_key is None:
            self.session_key = new_key()  # the session's public id from its first turn, in the history or not
        first = False
        if self.unavailable is not None and not self.permanent and self.backoff.due(self.clock()):
            session_id = self._come_back(session_id)
        if self.unavailable is None:
            try:
                if session_id is None:
                    session_id = self.history.new_session(
                        self.kind, system_prompt=self.system_prompt, engines=self.engines, public_id=self.session_key
                    )
                self.history.add_turn(session_id, turn)
            except (VoicechatError, sqlite3.Error, OSError) as e:
                self.unavailable = e.message if isinstance(e, VoicechatError) else f"{type(e).__name__}: {e}"
                self.permanent = _damaged(e)
                self.backoff.failed(self.clock())
                first = True
            else:
                if self.session_key is None:  # a resumed session: its key, for the lines of a later outage
                    with contextlib.suppress(VoicechatError, sqlite3.Error, OSError):
                        self.session_key = self.history.public_id(session_id)
                return session_id
        record = {
            "kind": self.kind,
            "session_id": session_id,
            "session_key": self.session_key,
            "turn_key": uuid.uuid4().hex,
            "system_prompt": self.system_prompt,
            "engines": self.engines,  # the session's (its llm_model may differ from the turn's)
            **{k: v for k, v in dataclasses.asdict(turn).items() if k not in ("id", "session_id")},
        }
        if not self.permanent:
            self.pending.append(record)
            if len(self.pending) > MAX_PENDING:
                self.permanent, self.pending = True, []
        self.unsaved.append(json.dumps(record, ensure_ascii=False) + "\n")
        before, problems = self.recovery, self._flush()
        if self.unsaved and not self._registered:
            self._registered = True
            atexit.register(self.close)  # whatever ends the conversation, the turns are said
        if first:
            where = (
                f"its turns are saved to {self.recovery}" + (f" ({'; '.join(problems)})" if problems else "")
                if self.recovery is not None
                else f"no file can take its turns either ({'; '.join(problems)}), so they are kept in memory and printed when it ends"
            )
            self.warn(f"the history log is unavailable ({self.unavailable}); this conversation goes on, and {where}")
        elif self.recovery != before:
            where = (
                f"turns from now on are saved to {self.recovery}"
                if self.recovery is not None
                else "turns are kept in memory and printed when the conversation ends"
            )
            self.warn(f"cannot write the recovery file {before} ({'; '.join(problems)}); {where}")
        return session_id

    def _come_back(self, session_id: int | None) -> int | None:
        """Try the history again; if it takes writes, import the turns kept meanwhile (one transaction) and say so.
        Returns the session id (a new one when the session had none in the history)."""
        from voicechat.conversation import recovery

        try:
            history = self.history.available()
            outcome = recovery.import_records(history, [recovery.parse(r) for r in self.pending], into=session_id)
        except (VoicechatError, sqlite3.Error, OSError, ValueError):
            self.backoff.failed(self.clock())  # still unavailable: said once already, tried again later
            return session_id
        self.history = history
        self.unavailable = None
        self.backoff.reset()
        kept, where = len(self.pending), self.recovery
        self.pending.clear()
        self.unsaved.clear()  # in the history now: nothing left to print at the end
        if outcome.sessions:
            session_id = outcome.sessions[0]
        self.warn(
            f"the history log is back ({history.label}); the {kept} turn(s) kept"
            + (f" in {where}" if where is not None else "")
            + " meanwhile are in it now, and this conversation goes on there"
        )
        return session_id

    def _flush(self) -> list[str]:
        """Write the unsaved lines to the recovery file in use, or to the next one that takes them."""
        problems: list[str] = []
        while self.unsaved:
            if self.recovery is None:
                self.recovery = self._next_file()
                if self.recovery is None:
                    return problems
            try:
                while self.unsaved:
                    append_line(self.recovery, self.unsaved[0])
                    self.unsaved.pop(0)
            except OSError as e:
                problems.append(f"{self.recovery}: {_why(e)}")
                self.recovery = None
        return problems

    def _next_file(self) -> Path | None:
        for directory in recovery_dirs():
            candidate = recovery_file(self.kind, directory)
            if candidate in self._tried or not _usable_dir(directory):
                continue
            self._tried.add(candidate)
            return candidate
        return None

    def close(self) -> None:
        """Try once more to save what no file took; failing that, print it for the user to keep."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if not self.unsaved:
            return
        self._tried.clear()  # space may have come back
        self._flush()
        if self.recovery is not None and not self.unsaved:
            self.warn(f"the turns kept in memory are saved to {self.recovery}")
            return
        self.warn(
            f"{len(self.unsaved)} turn(s) of this conversation could not be saved anywhere; here they are, one JSON line each, to keep:"
        )
        for line in self.unsaved:
            sys.stderr.write(line)
        sys.stderr.flush()


def _damaged(e: BaseException) -> bool:
    """A SQLite file that is damaged or not a database: trying it again only repeats the error."""
    cause = e.__cause__ if isinstance(e, VoicechatError) else e
    code = (getattr(cause, "sqlite_errorcode", None) or 0) & 0xFF
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _why(e: OSError) -> str:
    from voicechat.errors import disk_full

    return "no space left on its disk" if disk_full(e) else (e.strerror or str(e))
