"""A bound on the tool calls in flight at once, shared by every session of a server.

A call takes a slot before it runs and gives it back when its work has really ended (a call the
conversation gave up on holds its slot until the tool returns: the bound is on work, not on waiting).
A call that finds every slot taken waits a bounded time, then is refused; the turn goes on with an
error result the model reads. Waiting ends early when the turn is interrupted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

POLL_S = 0.05  # how often a waiting call looks at its turn's interruption


class Gate:
    def __init__(self, slots: int, wait_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self.slots, self.wait_s = slots, wait_s
        self._clock = clock
        self._busy = 0
        self._free = threading.Condition()

    @property
    def busy(self) -> int:
        """Calls in flight now."""
        with self._free:
            return self._busy

    def enter(self, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Take a slot: True at once or once one frees within wait_s; False when none did, or the turn ended."""
        deadline = self._clock() + self.wait_s
        with self._free:
            while self._busy >= self.slots:
                left = deadline - self._clock()
                if left <= 0 or cancelled():
                    return False
                self._free.wait(min(left, POLL_S))
            self._busy += 1
            return True

    def leave(self) -> None:
        """Give a slot back (once per successful :meth:`enter`)."""
        with self._free:
            self._busy = max(0, self._busy - 1)
            self._free.notify()

    def refusal(self) -> str:
        """What a refused call's result says."""
        return (
            f"not run: the server is already running {self.slots} tool call{'s' if self.slots != 1 else ''} for its sessions "
            f"and none finished within {self.wait_s:g} s (tools.server_concurrency); answer without it or try again shortly"
        )
