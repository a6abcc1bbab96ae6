"""`talk --server` after losing its server: whether to try again, when, and which turns to send again.

Two small state machines, fed one event at a time and given the clock, so that tests can walk them
through an outage without waiting:

- :class:`Reconnect` decides after each loss or failed attempt: :class:`Retry` after a delay that
  doubles from :data:`FIRST_DELAY_S` up to :data:`MAX_DELAY_S` (each one shortened by a random part,
  so that many clients of one restarted server do not all come back at once), or :class:`GiveUp`
  once the window (``serve.reconnect_s``) is over or the server said no in a way a retry cannot
  change (a policy or authentication refusal, a client error).
- :class:`TurnLedger` follows each utterance from sent to committed by the server's history. After a
  resume, the server's count of saved turns says which of the uncommitted ones it kept anyway; the
  others are sent again, so a turn in flight is neither lost nor saved twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

FIRST_DELAY_S = 0.5  # the first retry comes this soon after a loss
MAX_DELAY_S = 5.0  # and later ones at most this far apart (a restarted server is found within this)
JITTER = 0.5  # each delay is shortened by up to this part of it, at random
MAX_TRACKED = 16  # utterances followed at once (the server lets 4 wait; answered ones wait for their commit)

# WebSocket close codes worth another try: going away (1001), no close at all (1006), an internal
# error (1011), a restart or drain (1012), a proxy's bad gateway (1014), busy or still loading (1013).
RETRY_CLOSE = frozenset({1001, 1006, 1011, 1012, 1013, 1014})
# HTTP statuses of a refused handshake worth another try: a proxy with no server behind it, or busy.
RETRY_HTTP = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Loss:
    """How the connection ended or an attempt failed.

    ``kind``: ``close`` (the server closed with ``code``), ``dropped`` (no close: killed, network
    gone), ``refused`` (nothing listening, or the attempt timed out), ``http`` (the handshake got
    HTTP ``code``). ``message``: what the server said, if anything.
    """

    kind: str
    code: int | None = None
    message: str = ""

    @property
    def retryable(self) -> bool:
        if self.kind in ("dropped", "refused"):
            return True
        if self.kind == "close":
            return self.code in RETRY_CLOSE
        if self.kind == "http":
            return self.code in RETRY_HTTP
        return False

    @property
    def label(self) -> str:
        """A word or two for the one line said about the outage."""
        if self.kind == "close" and self.code == 1012:
            return "drain"
        if self.kind == "close":
            return f"closed {self.code}"
        if self.kind == "http":
            return f"HTTP {self.code}"
        return "dropped" if self.kind == "dropped" else "refused"


@dataclass(frozen=True)
class Retry:
    after_s: float  # wait this long, then try
    timeout_s: float  # and give the attempt at most this long


@dataclass(frozen=True)
class GiveUp:
    loss: Loss
    deadline: bool  # True: the window is over; False: the server refused for good


class Reconnect:
    """The decision after each loss and failed attempt (states: ``connected``, ``waiting``, ``gave_up``)."""

    def __init__(
        self,
        window_s: float,
        *,
        connect_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.window_s = window_s
        self.connect_timeout_s = connect_timeout_s
        self.clock, self.rand = clock, rand
        self.state = "connected"
        self.attempts = 0  # attempts in this outage
        self.outages = 0  # outages so far (each one is said once)
        self.first_loss: Loss | None = None  # what started this outage
        self._deadline = 0.0

    def lost(self, loss: Loss) -> Retry | GiveUp:
        """The connection ended: the first decision of an outage."""
        self.state = "waiting"
        self.attempts = 0
        self.outages += 1
        self.first_loss = loss
        self._deadline = self.clock() + self.window_s
        return self._decide(loss)

    def failed(self, loss: Loss) -> Retry | GiveUp:
        """An attempt to get back failed."""
        assert self.state == "waiting", self.state
        return self._decide(loss)

    def connected(self) -> None:
        self.state = "connected"
        self.attempts = 0

    def _decide(self, loss: Loss) -> Retry | GiveUp:
        if not loss.retryable or self.window_s <= 0:
            self.state = "gave_up"
            return GiveUp(loss, deadline=loss.retryable)
        left = self._deadline - self.clock()
        if left <= 0:
            self.state = "gave_up"
            return GiveUp(loss, deadline=True)
        delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2**self.attempts) * (1 - JITTER * self.rand())
        self.attempts += 1
        delay = min(delay, left)  # the last attempt is at the deadline, not after it
        return Retry(delay, max(0.5, min(self.connect_timeout_s, left - delay)))


@dataclass
class Utterance:
    text: str
    state: str  # sent (typed, not yet taken up) -> started (the server said "user") -> answered (a reply) -> committed


class TurnLedger:
    """What the client said that the server's history may not have yet, in the order the server answers."""

    def __init__(self) -> None:
        self.committed = 0  # turns the session's history holds, as far as this client knows
        self.open: list[Utterance] = []  # oldest first

    def typed(self, text: str) -> None:
        self._add(len(self.open), Utterance(text, "sent"))

    def user(self, text: str, source: str) -> None:
        """The server took up an utterance (typed ones in the order sent; a spoken one comes before any typed one waiting)."""
        waiting = next((i for i, u in enumerate(self.open) if u.state == "sent"), None)
        if source == "typed" and waiting is not None:
            self.open[waiting].state = "started"
            self.open[waiting].text = text
        else:
            self._add(len(self.open) if waiting is None else waiting, Utterance(text, "started"))

    def answered(self) -> None:
        u = next((u for u in self.open if u.state == "started"), None)
        if u is not None:
            u.state = "answered"

    def saved(self) -> None:
        """The server committed a turn (its ``session`` event after a reply)."""
        self.committed += 1
        i = next((i for i, u in enumerate(self.open) if u.state == "answered"), None)
        if i is not None:
            del self.open[i]

    def resumed(self, turns: int, same_session: bool) -> list[str]:
        """The server resumed with ``turns`` saved turns: the texts to send again, in order.

        In the same session, turns the server saved beyond those known are the oldest open ones (it
        saves in the order it answers). In a new session (none was saved before the loss), what was
        answered was heard and is not asked again.
        """
        if same_session:
            extra = max(0, turns - self.committed)
            del self.open[:extra]
        else:
            self.open = [u for u in self.open if u.state != "answered"]
        self.committed = turns
        for u in self.open:
            u.state = "sent"
        return [u.text for u in self.open]

    def refused(self) -> None:
        """The server refused the last message sent (too long, too many waiting): it will not be answered."""
        i = next((i for i in range(len(self.open) - 1, -1, -1) if self.open[i].state == "sent"), None)
        if i is not None:
            del self.open[i]

    @property
    def waiting(self) -> bool:
        """Something was sent that is not answered yet."""
        return any(u.state != "answered" for u in self.open)

    def _add(self, index: int, u: Utterance) -> None:
        self.open.insert(index, u)
        if len(self.open) > MAX_TRACKED:  # a server that never commits (no history): the oldest answered go
            i = next((i for i, x in enumerate(self.open) if x.state == "answered"), 0)
            del self.open[i]
