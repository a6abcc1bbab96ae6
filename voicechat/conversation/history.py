"""Conversation history: sessions and turns, each turn committed as it completes.

The queries live here, once; where they run is a :mod:`voicechat.storage` backend: a SQLite
file in the platform data dir (file mode 0600, WAL, so a killed process loses at most the turn
in flight), or PostgreSQL when ``history.url`` names one (shared by every `voicechat serve`
replica). Both apply the same :data:`voicechat.storage.schema.MIGRATIONS`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

from voicechat.errors import VoicechatError
from voicechat.storage import open_store, schema
from voicechat.storage.base import Query, now
from voicechat.storage.sqlite import SQLiteStore
from voicechat.storage.urls import is_postgres

MIGRATIONS = schema.render("sqlite")  # as SQLite runs them (tests build old files from these)
PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")  # what a session's public id can look like (new_key and the migration's)


def new_key() -> str:
    """A session's public id: 128 random bits, so holding one is what lets a client resume that session."""
    return secrets.token_hex(16)


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
    language: str | None = None  # the user's language in this turn (ISO 639-1), detected or declared; None: not known
    id: int | None = None
    session_id: int | None = None


class History:
    """The conversation log, in a SQLite file (a path) or PostgreSQL (a ``postgresql://`` URL).

    A SQLite file that cannot be written opens read-only (``read_only``)."""

    def __init__(self, target: Path | str) -> None:
        self._target = target  # kept to open the store again (a URL keeps its password here only)
        self._reopening = threading.Lock()  # sessions of a server share one History
        self.store = open_store(target)
        self.label = self.store.label
        self.read_only = self.store.read_only

    def available(self) -> History:
        """This history, ready to be written again: a SQLite file that was opened read-only (a full disk,
        a read-only mount) is opened again once it can be written. Raises VoicechatError while it cannot.

        The old store is left to be collected, not closed: another session may be reading through it."""
        with self._reopening:
            if self.store.read_only:
                store = open_store(self._target)
                if store.read_only:
                    why = store.why_read_only or f"{self.label}: history is still read-only"
                    store.close()
                    raise VoicechatError(why)
                self.store, self.read_only = store, False
        return self

    @property
    def path(self) -> Path | str:
        """The SQLite file; for PostgreSQL, the URL without its password."""
        return self.store.path if isinstance(self.store, SQLiteStore) else self.label

    @property
    def db(self) -> sqlite3.Connection | None:
        """The SQLite connection (for tests and maintenance); PostgreSQL has none to hand out."""
        return self.store.db if isinstance(self.store, SQLiteStore) else None

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # writing --------------------------------------------------------------------------
    def new_session(
        self,
        kind: str,
        *,
        system_prompt: str | None = None,
        engines: dict[str, str | None] | None = None,
        public_id: str | None = None,
    ) -> int:
        """A new session; ``public_id`` is the key its turn log already gave it (see :mod:`turnlog`), else a new one."""
        return self.store.write(lambda q: insert_session(q, kind, system_prompt, engines, public_id or new_key()))

    def add_turn(self, session_id: int, turn: Turn) -> int:
        """Commit one completed turn: it is stored when this returns."""
        return self.store.write(lambda q: insert_turn(q, session_id, turn))

    def amend_last_reply(self, session_id: int, text: str) -> None:
        """The session's last reply was heard only in part after it was recorded (a realtime client's truncate):
        its row keeps what was heard, marked interrupted."""
        sql = "UPDATE turns SET assistant_text=?, interrupted=1 WHERE id=(SELECT MAX(id) FROM turns WHERE session_id=?)"
        self.store.write(lambda q: q(sql, (text, session_id)))

    def delete(self, session_id: int) -> None:
        self.session(session_id)
        self.store.write(lambda q: q("DELETE FROM sessions WHERE id=?", (session_id,)))

    # reading --------------------------------------------------------------------------
    def sessions(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.store.read(
            lambda q: q(
                "SELECT s.*, COUNT(t.id) AS turns, COALESCE(SUM(t.prompt_tokens),0) + COALESCE(SUM(t.completion_tokens),0) AS tokens,"
                " (SELECT user_text FROM turns WHERE session_id=s.id ORDER BY id LIMIT 1) AS first_text"
                " FROM sessions s LEFT JOIN turns t ON t.session_id=s.id GROUP BY s.id ORDER BY s.id DESC LIMIT ?",
                (limit,),
            )
        )

    def session(self, session_id: int) -> dict[str, Any]:
        rows = self.store.read(lambda q: q("SELECT * FROM sessions WHERE id=?", (session_id,)))
        if not rows:
            raise VoicechatError(f"no session {session_id} in the history; see `voicechat history list`")
        return rows[0]

    def public_id(self, session_id: int) -> str:
        """The id a server gives its client for this session (and resumes by); one is made if the row has none
        (a row written by an older voicechat sharing this database)."""
        rows = self.store.read(lambda q: q("SELECT public_id FROM sessions WHERE id=?", (session_id,)))
        if rows and rows[0]["public_id"]:
            return str(rows[0]["public_id"])
        key = new_key()
        self.store.write(lambda q: q("UPDATE sessions SET public_id=? WHERE id=? AND public_id IS NULL", (key, session_id)))
        rows = self.store.read(lambda q: q("SELECT public_id FROM sessions WHERE id=?", (session_id,)))
        if not rows or not rows[0]["public_id"]:
            raise VoicechatError(f"no session {session_id} in the history; see `voicechat history list`")
        return str(rows[0]["public_id"])

    def find_public(self, public_id: Any) -> int | None:
        """The session whose public id this is; None for any other value (unknown, malformed, deleted): a caller
        that cannot tell these apart gives nothing away."""
        if not isinstance(public_id, str) or not PUBLIC_ID.fullmatch(public_id):
            return None
        rows = self.store.read(lambda q: q("SELECT id FROM sessions WHERE public_id=?", (public_id,)))
        return int(rows[0]["id"]) if rows else None

    def last_session_id(self, kind: str | None = None) -> int | None:
        sql = "SELECT id FROM sessions" + (" WHERE kind=?" if kind else "") + " ORDER BY id DESC LIMIT 1"
        rows = self.store.read(lambda q: q(sql, (kind,) if kind else ()))
        return int(rows[0]["id"]) if rows else None

    def turns(self, session_id: int) -> list[Turn]:
        self.session(session_id)
        rows = self.store.read(lambda q: q("SELECT * FROM turns WHERE session_id=? ORDER BY id", (session_id,)))
        return [
            Turn(
                id=r["id"],
                session_id=r["session_id"],
                created_at=r["created_at"],
                user_text=r["user_text"],
                assistant_text=r["assistant_text"],
                interrupted=bool(r["interrupted"]),
                llm_model=r["llm_model"],
                prompt_tokens=r["prompt_tokens"],
                completion_tokens=r["completion_tokens"],
                tokens_estimated=bool(r["tokens_estimated"]),
                latency=_json_or_empty(r["latency"]),
                user_audio=r["user_audio"],
                reply_audio=r["reply_audio"],
                cleared_before=bool(r["cleared_before"]),
                tools=_json_list(r["tools"]),
                language=r["language"],
            )
            for r in rows
        ]


def insert_session(
    q: Query, kind: str, system_prompt: str | None, engines: dict[str, str | None] | None, public_id: str, started_at: str | None = None
) -> int:
    """Insert a session row (inside the caller's transaction); its id."""
    e = engines or {}
    values = (
        started_at or now(),
        kind,
        system_prompt,
        e.get("stt_engine"),
        e.get("stt_model"),
        e.get("llm_engine"),
        e.get("llm_model"),
        e.get("tts_engine"),
        e.get("tts_model"),
        public_id,
    )
    sql = (
        "INSERT INTO sessions (started_at, kind, system_prompt, stt_engine, stt_model, llm_engine, llm_model, tts_engine, tts_model,"
        " public_id) VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id"
    )
    return int(q(sql, values)[0]["id"])


def insert_turn(q: Query, session_id: int, turn: Turn, recovered_key: str | None = None) -> int:
    """Insert a turn row and mark its session's end (inside the caller's transaction); its id.
    ``recovered_key``: the identity of a turn brought back from a recovery file."""
    values = (
        session_id,
        turn.created_at,
        turn.user_text,
        turn.assistant_text,
        int(turn.interrupted),
        turn.llm_model,
        turn.prompt_tokens,
        turn.completion_tokens,
        int(turn.tokens_estimated),
        json.dumps(turn.latency),
        turn.user_audio,
        turn.reply_audio,
        int(turn.cleared_before),
        json.dumps(turn.tools, ensure_ascii=False) if turn.tools else None,
        recovered_key,
        turn.language,
    )
    turn_id = int(
        q(
            "INSERT INTO turns (session_id, created_at, user_text, assistant_text, interrupted, llm_model, prompt_tokens,"
            " completion_tokens, tokens_estimated, latency, user_audio, reply_audio, cleared_before, tools, recovered_key,"
            " language) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            values,
        )[0]["id"]
    )
    q("UPDATE sessions SET ended_at=? WHERE id=?", (turn.created_at, session_id))
    return turn_id


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
    with the reason, so the session's turn log (voicechat.conversation.turnlog) keeps the turns elsewhere."""

    read_only = True

    def __init__(self, path: Path | str, reason: str, *, target: Path | str | None = None) -> None:
        self.path = path  # the file, or the URL without its password
        self.reason = reason
        # where to try again (available()): the URL with its password; a file path is its own target
        self.target = target if target is not None else (None if is_postgres(path) else path)
        self._opened: History | None = None
        self._lock = threading.Lock()

    def available(self) -> History:
        """The history, opened now that it can be (once, shared by every session that asks); raises
        VoicechatError while it still cannot be opened for writing."""
        with self._lock:
            if self._opened is None:
                if self.target is None:
                    raise VoicechatError(self.reason)
                history = History(self.target)
                if history.read_only:
                    history.close()
                    raise VoicechatError(self.reason)
                self._opened = history
            return self._opened

    def new_session(self, *args: Any, **kwargs: Any) -> int:
        raise VoicechatError(self.reason)

    def add_turn(self, *args: Any, **kwargs: Any) -> int:
        raise VoicechatError(self.reason)

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()

    def __enter__(self) -> UnavailableHistory:
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
                history = UnavailableHistory(history_target(config, redact=True), e.message, target=history_target(config))
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


def history_target(config: Any, *, redact: bool = False) -> Path | str:
    """Where the history is: the PostgreSQL URL of history.url when set (without its password when
    ``redact``), otherwise the SQLite file."""
    url = config.history.url
    if url:
        from voicechat.storage import urls

        return urls.redacted(url) if redact else url
    return history_path(config)


def open_history(config: Any) -> History:
    return History(history_target(config))
