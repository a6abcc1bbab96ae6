"""Events that a reader thread collects (the JSON lines of `talk --json`, the messages of the voice WebSocket),
and a wait for the first one that matches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Events:
    """The events seen so far, in order (``items``). The reader thread calls ``add`` for each one and
    ``end`` when no more can come (the stream closed); a test waits with ``wait_for``."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._cv = threading.Condition()
        self._ended = False

    def add(self, event: dict[str, Any]) -> None:
        with self._cv:
            self.items.append(event)
            self._cv.notify_all()

    def end(self) -> None:
        with self._cv:
            self._ended = True
            self._cv.notify_all()

    def wait_for(
        self, predicate: Callable[[dict], bool], timeout: float, after: dict | None = None, why: Callable[[], str] = lambda: ""
    ) -> dict[str, Any]:
        """The first event matching ``predicate`` (after the event ``after``, if given). Fails, saying
        ``why()``, once ``timeout`` seconds have passed or the stream has ended without one."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                start = next(i for i, e in enumerate(self.items) if e is after) + 1 if after is not None else 0
                for e in self.items[start:]:
                    if predicate(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or self._ended:
                    raise AssertionError(f"event not seen; {why()}")
                self._cv.wait(min(left, 0.2))
