"""A reply begun before its turn is known to be over.

In a pause after which the turn may end (the words so far read finished or unclear, and the policy waits
for more silence), the listener hands the turn to the responder as a draft: the reply is written and its
first words are synthesized, and nothing is shown, played or recorded. When the silence ends the turn, the
draft is confirmed: what it held back is shown in order and the reply plays at once. When the user goes on,
it is dropped: the reply is cancelled unheard and nothing of it is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Draft:
    def __init__(self, end: int) -> None:
        self.end = end  # the utterance's length (samples) when drafted: only the same utterance confirms it
        self.go = threading.Event()  # set once confirmed: the reply may sound (its SpokenReply.go)
        self.confirmed = False
        self._decided = threading.Event()
        self._lock = threading.Lock()
        self._held: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._cancel: threading.Event | None = None

    @property
    def decided(self) -> bool:
        return self._decided.is_set()

    def take(self, cancel: threading.Event) -> bool:
        """The responder starts on it with this reply's cancel event (set when the draft is dropped). False: it
        was dropped already, there is nothing to do."""
        with self._lock:
            self._cancel = cancel
            if self._decided.is_set() and not self.confirmed:
                cancel.set()
                return False
            return True

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` now once confirmed, later (in order) while undecided, never once dropped."""
        with self._lock:
            if not self._decided.is_set():
                self._held.append((fn, args))
                return
            if not self.confirmed:
                return
            fn(*args)  # (under the lock: after whatever confirm() let out)

    def confirm(self, before: Callable[[], None] | None = None) -> bool:
        """Let out what was held (after ``before()``, which says the turn ended) and let the reply sound. False: it was
        dropped already (then ``before`` is not called)."""
        with self._lock:
            if self._decided.is_set():
                return self.confirmed
            if before is not None:
                before()
            self.confirmed = True
            self._decided.set()
            held, self._held = self._held, []
            for fn, args in held:
                fn(*args)
        self.go.set()
        return True

    def drop(self) -> bool:
        """Cancel the reply, unheard. False: it was confirmed already (nothing changes)."""
        with self._lock:
            if self._decided.is_set():
                return not self.confirmed
            self._decided.set()
            self._held = []
            if self._cancel is not None:
                self._cancel.set()
            return True

    def wait(self, stop: threading.Event) -> bool:
        """Until it is decided (or the session stops): True if confirmed."""
        while not self._decided.wait(0.02):
            if stop.is_set():
                return False
        return self.confirmed
