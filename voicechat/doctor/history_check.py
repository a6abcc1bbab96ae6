"""The history store: the SQLite file writable (or creatable), or the PostgreSQL of history.url answering.
Nothing is written. The URL is shown without its password. A history that cannot be used never stops
talk (turns go to a recovery file), so problems here are warnings."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from voicechat.doctor.report import OK, WARN, Line

if TYPE_CHECKING:
    from voicechat.config import Config

CONNECT_S = 5


def check(cfg: Config) -> list[Line]:
    if not cfg.history.enabled:
        return [Line("history", "store", OK, "off (history.enabled is false): conversations are not kept")]
    if cfg.history.url:
        return [_postgres(cfg.history.url)]
    from voicechat.conversation.history import history_path

    return [_sqlite(history_path(cfg))]


def _sqlite(path: Path) -> Line:
    import sqlite3

    from voicechat.errors import no_room

    if path.exists():
        if path.is_dir():
            return Line("history", "store", WARN, f"{path} is a folder", "set history.path to a file")
        if not os.access(path, os.R_OK | os.W_OK):
            return Line("history", "store", WARN, f"{path}: not writable", f"fix its permissions (chmod u+rw {path}) or set history.path")
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=CONNECT_S)) as db:
                sessions = db.execute("SELECT count(*) FROM sessions").fetchone()[0]
        except sqlite3.Error as e:
            return Line("history", "store", WARN, f"{path}: cannot be read ({e})", "move it aside; voicechat starts a new one")
        detail = f"SQLite {path}, {sessions} session{'s' if sessions != 1 else ''}"
    else:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not os.access(parent, os.W_OK | os.X_OK):
            return Line(
                "history", "store", WARN, f"{path} cannot be created: {parent} is not writable", "set history.path to a writable place"
            )
        detail = f"SQLite {path} (made on the first turn)"
    if no_room(path):
        return Line("history", "store", WARN, f"{detail}; the disk is full", "free some space, or turns go to a recovery file")
    return Line("history", "store", OK, detail, data={"backend": "sqlite", "path": str(path)})


def _postgres(url: str) -> Line:
    from voicechat.errors import register_secret
    from voicechat.storage import urls

    register_secret(urls.password(url))
    label = urls.redacted(url)
    try:
        import psycopg
    except ImportError:
        return Line("history", "store", WARN, f"{label}: psycopg is not installed", 'pip install "voicechat[postgres]"')
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_S, application_name="voicechat-doctor") as conn:
            version = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as e:
        from voicechat.storage.postgres import PostgresStore

        judge = PostgresStore.__new__(PostgresStore)  # (its advice reads only the label)
        judge.label = label
        return Line("history", "store", WARN, judge.advice(e), "until then, turns go to a recovery file")
    shown = version[0] if version else "?"
    return Line("history", "store", OK, f"PostgreSQL {shown} at {label}", data={"backend": "postgresql", "url": label})
