"""Where the history is kept: a SQLite file (the default) or PostgreSQL (history.url), behind one interface.

:class:`voicechat.conversation.history.History` holds the queries; a :class:`~voicechat.storage.base.Store`
connects and runs them. Both backends apply the same :mod:`~voicechat.storage.schema` migrations.
"""

from __future__ import annotations

from pathlib import Path

from voicechat.storage.base import Store
from voicechat.storage.urls import is_postgres


def open_store(target: Path | str) -> Store:
    """A ``postgresql://`` URL opens PostgreSQL; anything else is a SQLite file path."""
    if is_postgres(target):
        from voicechat.storage.postgres import PostgresStore

        return PostgresStore(str(target))
    from voicechat.storage.sqlite import SQLiteStore

    return SQLiteStore(target)
