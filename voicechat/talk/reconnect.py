"""`talk --server` after losing its server: whether to try again, when, and which turns to send again.

Two small state machines, fed one event at a time and given the clock, so that tests can walk them
through an outage without waiting:

- :class:`Reconnect` decides after each loss or failed attempt: :class:`Retry` after a delay that
  doubles from :data:`FIRST_DELAY_S` up to :data:`MAX_DELAY_S` (each one shortened by a random part,
  so that many clients of one restarted server do not all come back at once), or :class:`GiveUp`
  once the window (``serve.reconnect_s``) is over or the server said no in a way a retry cannot
  change (a policy or authentication refusal, a client error).
- :class:`TurnLedger` follows each utterance from typed to committed by the server's history, and
  paces typed lines so that no more are in flight than the server lets wait (the rest are held, in
  order). After a resume, the server's count of saved turns says which of the uncommitted ones it
  kept anyway; the others are sent again, so a turn in flight is neither lost nor saved twice.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

FIRST_DELAY_S = 0.5  # the first retry comes this soon after a loss
MAX_DELAY_S = 5.0  # and later ones at most this far apart (a restarted server is found within this)
JITTER = 0.5  # each delay is shortened by up to this part of it, at random
MAX_TRACKED = 16  # answered turns followed while they wait for their commit
MAX_WAITING = 4  # typed turns a server lets wait when its hello does not say (voicechat serve: MAX_WAITING_TURNS)

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
    state: str  # held (typed, not sent) -> sent -> started (the server said "user") -> answered (a reply) -> committed;
    # or failed: the turn ended in an error, with no reply (not saved, not asked again)


TEXT_REFUSALS = ("messages are already waiting for an answer", "text too long", 'a text message needs "text"')
_BOUND = re.compile(r"(\d+) messages are already waiting for an answer")
RESTING = frozenset({"idle", "listening", "asleep"})  # the states a session says once nothing waits for an answer


def text_refusal(message: str) -> tuple[bool, int | None]:
    """Whether a server's error refuses a text message (too many waiting, too long, empty), and the bound it names if any.

    The wording is the server's (voicechat/serve/voice_ws.py); the drain's refusal is not one of them (what
    is refused while the server shuts down goes again to the next connection).
    """
    bound = _BOUND.search(message)
    return any(words in message for words in TEXT_REFUSALS), int(bound.group(1)) if bound else None


class TurnLedger:
    """What the client said that the server's history may not have yet, in the order the server answers.

    Typed lines go to the server a few at a time: at most ``max_waiting`` turns in flight, what the server
    lets wait (the rest are held, in order, and :meth:`release` gives the next ones as turns end). The
    server counts a turn as waiting until just after its reply and history commit, a moment after the
    client hears the reply, so a turn heard answered still counts (``ending``) until the server shows it
    is over: it takes up the next utterance (``user``) or says it rests (:meth:`over`).

    The server refuses a text it will not take (an error; the same error repeated while it waits is sent
    once, with ``repeats``). The client cannot tell which line a refusal was about, only how many were
    refused, so it counts them: they are the sent lines that never start. A ``user`` event for a typed
    line says that the sent lines before it (the server takes texts in the order sent) were refused,
    which settles the count; the lines refused last are covered by the count itself. So a refusal
    never leaves the ledger waiting. After a refusal for too many waiting (spoken turns fill the
    server too), nothing more is sent until a turn is over, so held lines are not refused one by one.
    """

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self.committed = 0  # turns the session's history holds, as far as this client knows
        self.open: list[Utterance] = []  # oldest first
        self.max_waiting = max_waiting
        self.refused_lines = 0  # sent lines the server refused, not yet known which ones
        self.ending = False  # a turn was heard answered (or failed) and the server has not yet shown it over
        self.full = False  # the server refused a line for too many waiting: nothing goes until a turn is over

    @property
    def in_flight(self) -> int:
        """Turns the server may be holding for an answer, as far as this client knows."""
        sent = max(0, sum(u.state == "sent" for u in self.open) - self.refused_lines)
        return sent + sum(u.state == "started" for u in self.open) + self.ending

    @property
    def held(self) -> int:
        return sum(u.state == "held" for u in self.open)

    def typed(self, text: str) -> None:
        """A line typed: held until :meth:`release` sends it, after those before it."""
        self.open.append(Utterance(text, "held"))

    def release(self) -> list[str]:
        """The held lines that may go now, oldest first (marked sent)."""
        room = 0 if self.full else self.max_waiting - self.in_flight
        out: list[str] = []
        for u in self.open:
            if len(out) >= room:
                break
            if u.state == "held":
                u.state = "sent"
                out.append(u.text)
        return out

    def over(self) -> None:
        """The server says it rests: the turn heard last is over there too."""
        self.ending = self.full = False

    def user(self, text: str, source: str) -> None:
        """The server took up an utterance (typed ones in the order sent; a spoken one comes before any typed one waiting)."""
        self.over()  # (the server takes up the next turn once the last one is over)
        self.open = [u for u in self.open if u.state != "failed"]
        sent = [i for i, u in enumerate(self.open) if u.state == "sent"]
        if source == "typed" and sent:
            i = next((i for i in sent if self.open[i].text == text), sent[0])
            skipped = [j for j in sent if j < i]  # sent before this one and never taken up: refused
            self.open[i].state, self.open[i].text = "started", text
            for j in reversed(skipped):
                del self.open[j]
            self.refused_lines = max(0, self.refused_lines - len(skipped))
            self.refused(0)  # (never more than the lines still sent)
        else:
            first = next((i for i, u in enumerate(self.open) if u.state in ("sent", "held")), len(self.open))
            self.open.insert(first, Utterance(text, "started"))
        self._trim()

    def answered(self) -> None:
        u = next((u for u in self.open if u.state in ("started", "failed")), None)
        if u is not None:
            u.state = "answered"
            self.ending = True
        self._trim()

    def failed(self) -> None:
        """An error during the turn being answered: it is not waited for (a reply may still come; a new turn ends it)."""
        u = next((u for u in self.open if u.state == "started"), None)
        if u is not None:
            u.state = "failed"
            self.ending = True

    def saved(self) -> None:
        """The server committed a turn (its ``session`` event after a reply)."""
        self.committed += 1
        i = next((i for i, u in enumerate(self.open) if u.state == "answered"), None)
        if i is not None:
            del self.open[i]

    def resumed(self, turns: int, same_session: bool) -> list[str]:
        """The server resumed with ``turns`` saved turns: the texts to send again, in order (all held: :meth:`release` paces them).

        In the same session, turns the server saved beyond those known are the oldest open ones (it
        saves in the order it answers). In a new session (none was saved before the loss), what was
        answered was heard and is not asked again. A line refused before the loss is asked again
        (which one it was is not known); a turn that failed is not.
        """
        self.open = [u for u in self.open if u.state != "failed"]
        if same_session:
            extra = max(0, turns - self.committed)
            del self.open[:extra]
        else:
            self.open = [u for u in self.open if u.state != "answered"]
        self.committed = turns
        self.refused_lines = 0
        self.over()
        for u in self.open:
            u.state = "held"
        return [u.text for u in self.open]

    def refused(self, lines: int = 1, bound: int | None = None) -> None:
        """The server refused ``lines`` typed lines (too long; or too many waiting, ``bound`` at most): they will not be answered."""
        sent = sum(u.state == "sent" for u in self.open)
        self.refused_lines = min(sent, self.refused_lines + lines)
        if bound is not None:
            self.max_waiting = max(1, bound)
            self.full = lines > 0

    @property
    def waiting(self) -> bool:
        """Something typed or said is not answered yet (held, or in flight and not refused)."""
        return self.in_flight - self.ending > 0 or self.held > 0

    def _trim(self) -> None:
        """Answered turns wait for their commit; a server that never commits (no history) would pile them up."""
        answered = [i for i, u in enumerate(self.open) if u.state == "answered"]
        for i in reversed(answered[: max(0, len(answered) - MAX_TRACKED)]):
            del self.open[i]
