"""The history in PostgreSQL (history.url): shared by every `voicechat serve` replica.

One connection per process, used under a lock (a turn is a few small statements). A connection
the server dropped (a restart, a failover, ``pg_terminate_backend``) is opened again and the
transaction run again, but only when it broke before COMMIT was sent: then nothing of it was
kept. A break during COMMIT is reported, never retried, so a turn is never written twice.
Migrations run under an advisory lock, so replicas starting together apply each one once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from voicechat.errors import VoicechatError, register_secret
from voicechat.storage import schema, urls
from voicechat.storage.base import Query, Store, T, now

MIGRATION_LOCK = 0x766F6963  # pg_advisory_xact_lock key: "voic"
CONNECT_TIMEOUT_S = 10


def _line(e: BaseException) -> str:
    """A driver message on one line (libpq's are often several)."""
    text = " ".join(part.strip() for part in str(e).splitlines() if part.strip())
    return text or type(e).__name__


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        register_secret(urls.password(url))
        self.url = url
        self.label = urls.redacted(url)
        try:
            import psycopg  # noqa: F401 - only to say it is missing, here, rather than at the first query
        except ImportError:
            raise VoicechatError(
                f'{self.label}: a PostgreSQL history needs psycopg; install it with `pip install "voicechat[postgres]"`'
            ) from None
        self._lock = threading.RLock()
        self.conn: Any = None
        with self._lock:
            self._connect()
            self._migrate()

    # connecting -------------------------------------------------------------------------------------
    def _connect(self) -> None:
        import psycopg
        from psycopg.rows import dict_row

        try:
            self.conn = psycopg.connect(
                self.url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S, application_name="voicechat"
            )
        except psycopg.Error as e:
            raise VoicechatError(self.advice(e)) from None

    def advice(self, e: BaseException) -> str:
        text = _line(e)
        low = text.lower()
        if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
            return f"{self.label}: PostgreSQL refused the login ({text}); check the user and password in history.url"
        if "does not exist" in low and "database" in low:
            return f"{self.label}: no such PostgreSQL database ({text}); create it (createdb) or fix history.url"
        if any(
            w in low
            for w in (
                "connection refused",
                "could not connect",
                "timeout expired",
                "could not translate",
                "no such file or directory",
                "connection failed",
            )
        ):
            return f"{self.label}: cannot reach PostgreSQL ({text}); check that it runs and that history.url names its host and port"
        if "permission denied" in low:
            return f"{self.label}: PostgreSQL denied access ({text}); grant the history.url user rights on its database"
        if getattr(e, "sqlstate", None) in ("53100", "53400") or "no space left on device" in low:  # disk_full, quota
            return f"{self.label}: the PostgreSQL server has no space left on its disk ({text}); free some space there"
        return f"{self.label}: PostgreSQL history failed ({text})"

    def _broken(self) -> bool:
        return self.conn is None or self.conn.closed or self.conn.broken

    # the schema ---------------------------------------------------------------------------------------
    def _version(self, q: Query) -> int:
        return int(q("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")[0]["v"])

    def _migrate(self) -> None:
        def apply(q: Query) -> None:
            q("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))  # replicas starting at once: one migrates
            q(schema.VERSION_TABLE)
            version = self._version(q)
            if version > len(schema.MIGRATIONS):
                raise VoicechatError(self.newer(version))
            for number, script in enumerate(schema.render(self.dialect)[version:], start=version + 1):
                for statement in schema.statements(script):
                    q(statement)
                q("INSERT INTO schema_version VALUES (?, ?)", (number, now()))

        self.write(apply)

    # running ----------------------------------------------------------------------------------------
    def _q(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql.replace("%", "%%").replace("?", "%s"), params)
        return cur.fetchall() if cur.description is not None else []

    def _run(self, fn: Callable[[Query], T], transaction: bool) -> T:
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                committing = False
                try:
                    if self._broken():
                        self._connect()
                    if not transaction:
                        return fn(self._q)
                    self.conn.execute("BEGIN")
                    try:
                        result = fn(self._q)
                    except BaseException:
                        if not self._broken():
                            self.conn.execute("ROLLBACK")
                        raise
                    committing = True
                    self.conn.execute("COMMIT")
                    return result
                except psycopg.Error as e:
                    if self._broken() and not committing and attempt == 1:
                        continue  # the server dropped us before COMMIT: nothing was kept; once more on a new connection
                    if self._broken() and committing:
                        raise VoicechatError(
                            f"{self.label}: the connection to PostgreSQL broke while committing ({_line(e)}); this write may not be saved"
                        ) from None
                    raise VoicechatError(self.advice(e)) from None
            raise AssertionError("unreachable")

    def read(self, fn: Callable[[Query], T]) -> T:
        return self._run(fn, transaction=False)

    def write(self, fn: Callable[[Query], T]) -> T:
        return self._run(fn, transaction=True)

    def close(self) -> None:
        with self._lock:
            if self.conn is not None:
                try:
                    self.conn.close()
                except Exception:
                    pass
