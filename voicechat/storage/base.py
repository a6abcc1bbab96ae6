"""What every history backend offers: reads and one-transaction writes of plain SQL, and migrations.

The queries themselves live once, in :class:`voicechat.conversation.history.History`; a backend only
connects, runs them (``?`` placeholders, rows as dicts), applies :mod:`schema` and turns its
driver's failures into one :class:`~voicechat.errors.VoicechatError` line naming the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

T = TypeVar("T")
Query = Callable[..., list[dict[str, Any]]]  # q(sql, params=()) -> rows


class Store(ABC):
    dialect: str
    label: str  # names the store in messages: a file path, or a URL without its password
    read_only: bool = False
    why_read_only: str | None = None  # why a store that could be written was opened read-only (a full disk)

    @abstractmethod
    def read(self, fn: Callable[[Query], T]) -> T:
        """Run fn(q) for reading."""

    @abstractmethod
    def write(self, fn: Callable[[Query], T]) -> T:
        """Run fn(q) in one transaction, committed (durably) before this returns."""

    @abstractmethod
    def close(self) -> None: ...

    def newer(self, version: int) -> str:
        return f"{self.label}: history was written by a newer voicechat (schema {version}); upgrade voicechat"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
