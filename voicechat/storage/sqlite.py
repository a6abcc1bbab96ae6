"""The history in a SQLite file: private (mode 0600), WAL, opened read-only when it cannot be written.

The schema version is the ``schema_version`` table, mirrored in ``PRAGMA user_version`` so that an
older voicechat (which reads only the pragma) knows a newer file when it sees one.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voicechat.errors import VoicechatError, disk_full, file_error, no_room
from voicechat.storage import schema
from voicechat.storage.base import Query, Store, T, now


def no_space(path: Path, e: BaseException | None = None) -> bool:
    """Whether an error on the history file comes from a full disk (or quota), not from the file.

    SQLite says SQLITE_FULL when a write finds no room; an I/O error or a file it cannot open
    (its -wal or -shm) may also be a full disk underneath, so the disk itself is asked."""
    if e is not None and (
        disk_full(e) or (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF == sqlite3.SQLITE_FULL or "disk is full" in str(e).lower()
    ):
        return True
    return no_room(path)


def full_disk_advice(path: Path) -> str:
    return f"{path}: no space left on the disk holding the history; free some space (keep the file: it is not broken)"


def advice(path: Path, e: BaseException) -> str:
    """One line for a database error: what happened to which file, and what to do.

    Only a file that is not a database, or is damaged, is ever to be moved aside; a full disk
    is said as a full disk, since moving an intact history aside would lose it."""
    text = str(e) or type(e).__name__
    low = text.lower()
    if no_space(path, e):
        return full_disk_advice(path)
    if isinstance(e, OSError) and not isinstance(e, PermissionError):  # EROFS, EIO...: said by errno, naming the file
        return file_error(path, e, "open the history" if path.exists() else "create the history").message
    if "readonly" in low or "read-only" in low or isinstance(e, PermissionError):
        return f"{path}: history is read-only ({text}); fix its permissions or set history.path to a writable file"
    if "locked" in low or "busy" in low:
        return f"{path}: history is locked by another process ({text}); close the other voicechat or try again"
    if isinstance(e, OSError):
        return f"{path}: cannot open history ({e.strerror or text}); check the directory's permissions"
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
    if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN) or "disk i/o error" in low or "unable to open" in low:
        return (
            f"{path}: the history could not be read or written ({text}); check the disk and its free space, "
            "then try again (the file itself may well be intact)"
        )
    if "not a database" in low:
        return f"{path}: not a history database ({text}); move it aside to start a new one"
    return (
        f"{path}: history database is damaged ({text}); move it aside to start a new one (`sqlite3 {path} .recover` may save what is left)"
    )


class SQLiteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        self.read_only = False
        self.why_read_only: str | None = None  # said by a write when the file was opened read-only for a reason
        self._lock = threading.RLock()  # one connection shared by a server's sessions
        self._check_kind()
        try:
            if self._writable():
                self._open_rw()
            else:
                self._open_ro()
        except (sqlite3.DatabaseError, OSError) as e:
            if self.read_only or not self.path.is_file():
                raise VoicechatError(advice(self.path, e)) from None
            if "readonly" in str(e).lower():
                self.close()
                self._open_ro()  # e.g. a file we may not write although the mode bits said so
            elif no_space(self.path, e):
                self.close()  # a full disk: what is there can still be read (history list, chat --continue)
                try:
                    if self.path.stat().st_size == 0:  # a new file: nothing to read yet
                        raise VoicechatError(full_disk_advice(self.path))
                    self._open_ro()
                except VoicechatError:
                    self.close()
                    raise VoicechatError(full_disk_advice(self.path)) from None
                self.why_read_only = full_disk_advice(self.path)
            else:
                raise VoicechatError(advice(self.path, e)) from None

    # opening --------------------------------------------------------------------------------------
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
                db = sqlite3.connect(f"file:{quote(str(self.path))}?{flags}", uri=True, check_same_thread=False, isolation_level=None)
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as e:
                if db is not None:
                    db.close()
                last = e
                continue
            db.row_factory = sqlite3.Row
            self.db = db
            version = self._version()
            if version > len(schema.MIGRATIONS):
                raise VoicechatError(self.newer(version))
            if version < len(schema.MIGRATIONS):
                raise VoicechatError(f"{self.path}: history is read-only and needs an upgrade (schema {version}); make it writable once")
            return
        raise VoicechatError(advice(self.path, last or sqlite3.DatabaseError("cannot open")))

    # the schema -----------------------------------------------------------------------------------
    def _version(self) -> int:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]  # files from before the version table
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone():
            version = max(version, self.db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])
        return int(version)

    def _check_version(self) -> int:
        version = self._version()
        if version > len(schema.MIGRATIONS):
            raise VoicechatError(self.newer(version))
        return version

    def _migrate(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")  # two processes opening a new file at once: one migrates
        try:
            version = self._check_version()
            if version == len(schema.MIGRATIONS):
                self.db.execute("COMMIT")
                return
            self.db.execute(schema.VERSION_TABLE)
            for number in range(1, version + 1):  # what user_version said was applied before the table existed
                self.db.execute("INSERT OR IGNORE INTO schema_version VALUES (?, ?)", (number, now()))
            for number, script in enumerate(schema.render(self.dialect)[version:], start=version + 1):
                for statement in schema.statements(script):
                    self.db.execute(statement)
                self.db.execute("INSERT INTO schema_version VALUES (?, ?)", (number, now()))
                self.db.execute(f"PRAGMA user_version = {number}")
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    # running --------------------------------------------------------------------------------------
    def _q(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(sql, params).fetchall()]

    def read(self, fn: Callable[[Query], T]) -> T:
        try:
            with self._lock:
                return fn(self._q)
        except sqlite3.Error as e:
            raise VoicechatError(advice(self.path, e)) from e

    def write(self, fn: Callable[[Query], T]) -> T:
        if self.why_read_only:
            raise VoicechatError(self.why_read_only)
        try:
            with self._lock:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._q)
                except BaseException:
                    if self.db.in_transaction:  # SQLite may have rolled back already (a damaged page)
                        self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
                return result
        except sqlite3.Error as e:
            raise VoicechatError(advice(self.path, e)) from e

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
