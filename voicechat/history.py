"""Conversation history in SQLite: sessions and turns, each turn committed as it completes.

The database lives in the platform data dir (file mode 0600), in WAL mode so a
killed process loses at most the turn in flight. The schema is versioned with
``PRAGMA user_version``; :data:`MIGRATIONS` upgrades older files in place.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from voicechat.errors import VoicechatError

MIGRATIONS = [
    # 1: sessions and turns
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        kind TEXT NOT NULL,
        system_prompt TEXT,
        stt_engine TEXT, stt_model TEXT,
        llm_engine TEXT, llm_model TEXT,
        tts_engine TEXT, tts_model TEXT
    );
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        user_text TEXT NOT NULL,
        assistant_text TEXT NOT NULL,
        interrupted INTEGER NOT NULL DEFAULT 0,
        llm_model TEXT,
        prompt_tokens INTEGER, completion_tokens INTEGER,
        tokens_estimated INTEGER NOT NULL DEFAULT 0,
        latency TEXT,
        user_audio TEXT, reply_audio TEXT
    );
    CREATE INDEX turns_session ON turns(session_id, id);
    """,
    # 2: a marker for sessions cleared mid-way (/clear): turns before it are not replayed on resume
    """
    ALTER TABLE turns ADD COLUMN cleared_before INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: the tool calls made for a reply, with their results (JSON list)
    """
    ALTER TABLE turns ADD COLUMN tools TEXT;
    """,
]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Turn:
    user_text: str
    assistant_text: str
    created_at: str = field(default_factory=now)
    interrupted: bool = False
    llm_model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool = False
    latency: dict[str, float] = field(default_factory=dict)
    user_audio: str | None = None
    reply_audio: str | None = None
    cleared_before: bool = False
    tools: list[dict[str, Any]] = field(default_factory=list)  # {name, arguments, result, error, seconds, source}
    id: int | None = None
    session_id: int | None = None


def _advice(path: Path, e: BaseException) -> str:
    """One line for a database error: what happened to which file, and what to do."""
    text = str(e) or type(e).__name__
    low = text.lower()
    if "readonly" in low or "read-only" in low or isinstance(e, PermissionError):
        return f"{path}: history is read-only ({text}); fix its permissions or set history.path to a writable file"
    if "locked" in low or "busy" in low:
        return f"{path}: history is locked by another process ({text}); close the other voicechat or try again"
    if isinstance(e, OSError):
        return f"{path}: cannot open history ({e.strerror or text}); check the directory's permissions"
    if "not a database" in low:
        return f"{path}: not a history database ({text}); move it aside to start a new one"
    return (f"{path}: history database is damaged ({text}); move it aside to start a new one "
            f"(`sqlite3 {path} .recover` may save what is left)")


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn SQLite failures inside a History method into one clear line naming the file."""

    @functools.wraps(method)
    def wrapper(self: "History", *args: Any, **kwargs: Any) -> Any:
        try:
            with self._lock:  # one connection shared by a server's sessions: a new session's id is read right after its insert
                return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise VoicechatError(_advice(self.path, e)) from e

    return wrapper


class History:
    """The conversation log. Opens read-only (``read_only``) when the file cannot be written."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.read_only = False
        self._lock = threading.RLock()
        self._check_kind()
        try:
            if self._writable():
                self._open_rw()
            else:
                self._open_ro()
        except sqlite3.DatabaseError as e:
            if "readonly" in str(e).lower() and not self.read_only:
                self.close()
                self._open_ro()  # e.g. a file we may not write although the mode bits said so
            else:
                raise VoicechatError(_advice(self.path, e)) from None
        except OSError as e:
            raise VoicechatError(_advice(self.path, e)) from None

    def _check_kind(self) -> None:
        if self.path.is_dir():
            raise VoicechatError(f"{self.path}: is a directory, not a history file; set history.path to a file")
        if self.path.exists() and not self.path.is_file():
            raise VoicechatError(f"{self.path}: not a regular file (a device, pipe or socket); set history.path to a file")

    def _writable(self) -> bool:
        if self.path.exists():
            return os.access(self.path, os.R_OK | os.W_OK) and os.access(self.path.parent, os.W_OK | os.X_OK)
        return True  # created below; an unwritable directory fails there with a clear line

    def _open_rw(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)  # the db, -wal and -shm files are the user's alone
        try:
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.db = sqlite3.connect(str(self.path), timeout=10, check_same_thread=False, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self._check_version()  # a newer voicechat's file is left exactly as it is
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        finally:
            os.umask(old)

    def _open_ro(self) -> None:
        """Read what we may: mode=ro first (sees a WAL), then immutable (no -shm needed)."""
        from urllib.parse import quote

        if not os.access(self.path, os.R_OK):
            raise VoicechatError(f"{self.path}: history is not readable; fix its permissions or set history.path")
        self.read_only = True
        last: Exception | None = None
        for flags in ("mode=ro", "immutable=1"):
            db = None
            try:
                db = sqlite3.connect(f"file:{quote(str(self.path))}?{flags}", uri=True, check_same_thread=False,
                                     isolation_level=None)
                version = db.execute("PRAGMA user_version").fetchone()[0]
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as e:
                if db is not None:
                    db.close()
                last = e
                continue
            db.row_factory = sqlite3.Row
            self.db = db
            if version > len(MIGRATIONS):
                raise VoicechatError(f"{self.path}: history was written by a newer voicechat (schema {version}); upgrade voicechat")
            if version < len(MIGRATIONS):
                raise VoicechatError(f"{self.path}: history is read-only and needs an upgrade (schema {version}); make it writable once")
            return
        raise VoicechatError(_advice(self.path, last or sqlite3.DatabaseError("cannot open")))

    def _check_version(self) -> int:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise VoicechatError(f"{self.path}: history was written by a newer voicechat (schema {version}); upgrade voicechat")
        return version

    def _migrate(self) -> None:
        version = self._check_version()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # writing --------------------------------------------------------------------------
    @_guarded
    def new_session(self, kind: str, *, system_prompt: str | None = None, engines: dict[str, str | None] | None = None) -> int:
        e = engines or {}
        cur = self.db.execute(
            "INSERT INTO sessions (started_at, kind, system_prompt, stt_engine, stt_model, llm_engine, llm_model, tts_engine, tts_model)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (now(), kind, system_prompt, e.get("stt_engine"), e.get("stt_model"), e.get("llm_engine"), e.get("llm_model"),
             e.get("tts_engine"), e.get("tts_model")),
        )
        return int(cur.lastrowid)

    @_guarded
    def add_turn(self, session_id: int, turn: Turn) -> int:
        """Commit one completed turn (autocommit: it is on disk when this returns)."""
        cur = self.db.execute(
            "INSERT INTO turns (session_id, created_at, user_text, assistant_text, interrupted, llm_model, prompt_tokens,"
            " completion_tokens, tokens_estimated, latency, user_audio, reply_audio, cleared_before, tools)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (session_id, turn.created_at, turn.user_text, turn.assistant_text, int(turn.interrupted), turn.llm_model,
             turn.prompt_tokens, turn.completion_tokens, int(turn.tokens_estimated), json.dumps(turn.latency),
             turn.user_audio, turn.reply_audio, int(turn.cleared_before),
             json.dumps(turn.tools, ensure_ascii=False) if turn.tools else None),
        )
        self.db.execute("UPDATE sessions SET ended_at=? WHERE id=?", (turn.created_at, session_id))
        return int(cur.lastrowid)

    @_guarded
    def delete(self, session_id: int) -> None:
        self.session(session_id)
        self.db.execute("DELETE FROM sessions WHERE id=?", (session_id,))

    # reading --------------------------------------------------------------------------
    @_guarded
    def sessions(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT s.*, COUNT(t.id) AS turns, COALESCE(SUM(t.prompt_tokens),0) + COALESCE(SUM(t.completion_tokens),0) AS tokens,"
            " (SELECT user_text FROM turns WHERE session_id=s.id ORDER BY id LIMIT 1) AS first_text"
            " FROM sessions s LEFT JOIN turns t ON t.session_id=s.id GROUP BY s.id ORDER BY s.id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(r) for r in rows]

    @_guarded
    def session(self, session_id: int) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM sessions WHERE id=?", (session_id,)).fetchone()
        if row is None:
            raise VoicechatError(f"no session {session_id} in the history; see `voicechat history list`")
        return dict(row)

    @_guarded
    def last_session_id(self, kind: str | None = None) -> int | None:
        q = "SELECT id FROM sessions" + (" WHERE kind=?" if kind else "") + " ORDER BY id DESC LIMIT 1"
        row = self.db.execute(q, (kind,) if kind else ()).fetchone()
        return int(row[0]) if row else None

    @_guarded
    def turns(self, session_id: int) -> list[Turn]:
        self.session(session_id)
        out = []
        for r in self.db.execute("SELECT * FROM turns WHERE session_id=? ORDER BY id", (session_id,)):
            out.append(
                Turn(
                    id=r["id"], session_id=r["session_id"], created_at=r["created_at"], user_text=r["user_text"],
                    assistant_text=r["assistant_text"], interrupted=bool(r["interrupted"]), llm_model=r["llm_model"],
                    prompt_tokens=r["prompt_tokens"], completion_tokens=r["completion_tokens"],
                    tokens_estimated=bool(r["tokens_estimated"]), latency=_json_or_empty(r["latency"]),
                    user_audio=r["user_audio"], reply_audio=r["reply_audio"], cleared_before=bool(r["cleared_before"]),
                    tools=_json_list(r["tools"]),
                )
            )
        return out


def _json_or_empty(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _json_list(text: str | None) -> list:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


class UnavailableHistory:
    """Stands in for a history that could not be opened for logging: every write fails
    with the reason, so the session's turn log (voicechat.turnlog) keeps the turns elsewhere."""

    read_only = True

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason

    def new_session(self, *args: Any, **kwargs: Any) -> int:
        raise VoicechatError(self.reason)

    def add_turn(self, *args: Any, **kwargs: Any) -> int:
        raise VoicechatError(self.reason)

    def close(self) -> None:
        pass

    def __enter__(self) -> "UnavailableHistory":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def open_for_session(config: Any, *, no_log: bool, resume: int | None, cont: bool, kind: str) -> tuple[History | None, int | None, bool]:
    """The history (if logging or resuming), the session to resume (--resume ID or --continue), and whether to log.

    When only logging, a history that cannot be opened does not stop the conversation:
    an :class:`UnavailableHistory` carries the reason and the turns go to a recovery file.
    """
    log = config.history.enabled and not no_log
    history: Any
    if resume is None and not cont:
        history = None
        if log:
            try:
                history = open_history(config)
            except VoicechatError as e:
                history = UnavailableHistory(history_path(config), e.message)
        return history, None, log
    history = open_history(config)
    if cont and resume is None:
        assert history is not None
        resume = history.last_session_id(kind)
        if resume is None:
            raise VoicechatError(f"no earlier {kind} session to continue; start one with `voicechat {kind}`")
    if resume is not None:
        assert history is not None
        history.session(resume)  # an unknown id fails before any model loads
    return history, resume, log


def history_path(config: Any) -> Path:
    from voicechat import paths

    return Path(os.path.expanduser(config.history.path)) if config.history.path else paths.history_db()


def open_history(config: Any) -> History:
    return History(history_path(config))


