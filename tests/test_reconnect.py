"""`talk --server` gets its session back after losing the server (voicechat/talk/reconnect.py, talk/remote.py).

The decisions (when to try again, when to give up, which turns to send again) are walked event by
event with a clock the test moves; one end-to-end test kills and restarts a real `voicechat serve`
under a thin client fed typed lines, and one lets the client give up.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from voicechat.talk.reconnect import FIRST_DELAY_S, MAX_DELAY_S, GiveUp, Loss, Reconnect, Retry, TurnLedger


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- when to try again ----------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.parametrize(
    ("loss", "retried"),
    [
        (Loss("close", 1012), True),  # a drain or restart
        (Loss("close", 1001), True),  # going away
        (Loss("close", 1006), True),
        (Loss("close", 1013), True),  # busy, or still loading its models
        (Loss("dropped"), True),  # killed: no close at all
        (Loss("refused"), True),  # nothing listening yet
        (Loss("http", 502), True),  # a proxy with no server behind it
        (Loss("http", 503), True),
        (Loss("close", 1000), False),  # the server ended the session on purpose
        (Loss("close", 1008), False),  # a policy: wrong key, session not resumable
        (Loss("close", 4001), False),  # an application's client error
        (Loss("http", 401), False),
        (Loss("http", 403), False),
        (Loss("http", 404), False),
        (Loss("other"), False),  # not a voicechat server
    ],
)
def test_which_losses_are_tried_again(loss, retried):
    assert loss.retryable is retried
    decision = Reconnect(30, clock=Clock(), rand=lambda: 0.0).lost(loss)
    assert isinstance(decision, Retry if retried else GiveUp)


@pytest.mark.fast
def test_backoff_doubles_up_to_its_cap_with_jitter_and_gives_up_at_the_deadline():
    clock = Clock()
    r = Reconnect(60, connect_timeout_s=10, clock=clock, rand=lambda: 0.0)  # no jitter: the full delays
    first = r.lost(Loss("close", 1012))
    assert first == Retry(FIRST_DELAY_S, 10) and r.state == "waiting" and r.outages == 1
    delays = [first.after_s]
    while True:
        clock.now += delays[-1] + 1.0  # the wait, then an attempt that took a second and failed
        d = r.failed(Loss("refused"))
        if isinstance(d, GiveUp):
            break
        assert d.timeout_s <= 10
        delays.append(d.after_s)
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, MAX_DELAY_S]  # doubling
    assert max(delays) == MAX_DELAY_S  # capped
    assert d == GiveUp(Loss("refused"), deadline=True) and r.state == "gave_up"
    assert clock.now >= 100.0 + 60  # not before the window is over
    assert clock.now - 100.0 <= 60 + MAX_DELAY_S + 1.0


@pytest.mark.fast
def test_jitter_shortens_each_delay_by_up_to_half_and_the_last_try_is_at_the_deadline():
    clock = Clock()
    r = Reconnect(5, clock=clock, rand=lambda: 1.0)  # the most jitter
    assert r.lost(Loss("dropped")).after_s == FIRST_DELAY_S / 2
    clock.now += 4.9
    last = r.failed(Loss("refused"))
    assert isinstance(last, Retry) and last.after_s == pytest.approx(0.1)  # clipped to what is left of the window
    assert last.timeout_s >= 0.5  # the last attempt still gets time to connect
    clock.now += 0.1
    assert isinstance(r.failed(Loss("refused")), GiveUp)


@pytest.mark.fast
def test_a_refusal_for_good_ends_the_outage_at_once():
    r = Reconnect(60, clock=Clock(), rand=lambda: 0.5)
    assert isinstance(r.lost(Loss("dropped")), Retry)
    assert isinstance(r.failed(Loss("close", 1013)), Retry)  # back, but still loading: wait
    gone = r.failed(Loss("close", 1008, "this session cannot be resumed"))
    assert gone == GiveUp(Loss("close", 1008, "this session cannot be resumed"), deadline=False)


@pytest.mark.fast
def test_each_outage_has_its_own_window_and_starts_from_the_first_delay():
    clock = Clock()
    r = Reconnect(10, clock=clock, rand=lambda: 0.0)
    r.lost(Loss("dropped"))
    for _ in range(3):
        clock.now += 3
        r.failed(Loss("refused"))
    r.connected()
    assert r.state == "connected"
    clock.now += 1000
    again = r.lost(Loss("close", 1012))
    assert again == Retry(FIRST_DELAY_S, 9.5) and r.outages == 2


@pytest.mark.fast
def test_a_window_of_zero_never_tries_again():
    assert Reconnect(0, clock=Clock()).lost(Loss("close", 1012)) == GiveUp(Loss("close", 1012), deadline=True)


# --- which turns to send again --------------------------------------------------------------------


def sent(ledger: TurnLedger, text: str) -> None:
    """A typed line, sent at once (the server has room)."""
    ledger.typed(text)
    assert ledger.release() == [text]


@pytest.mark.fast
def test_a_turn_in_flight_is_sent_again_when_the_server_had_not_saved_it():
    ledger = TurnLedger()
    sent(ledger, "My name is Ada.")
    ledger.user("My name is Ada.", "typed")
    ledger.answered()
    ledger.saved()
    sent(ledger, "What is my name?")
    ledger.user("What is my name?", "typed")  # being answered when the server died
    assert ledger.waiting
    assert ledger.resumed(1, same_session=True) == ["What is my name?"]
    assert ledger.committed == 1 and ledger.waiting


@pytest.mark.fast
def test_a_turn_the_server_saved_before_the_client_heard_so_is_not_sent_again():
    ledger = TurnLedger()
    sent(ledger, "one")
    ledger.user("one", "typed")
    ledger.answered()  # the reply came; the "saved" did not (the connection dropped)
    sent(ledger, "two")  # sent after, never taken up
    assert ledger.resumed(1, same_session=True) == ["two"]  # the server reports 1 saved turn: "one" is it
    assert ledger.release() == ["two"]
    ledger.user("two", "typed")
    ledger.answered()
    ledger.saved()
    assert not ledger.open and ledger.committed == 2 and not ledger.waiting


@pytest.mark.fast
def test_a_spoken_turn_goes_before_typed_ones_waiting_and_is_sent_again_as_text():
    ledger = TurnLedger()
    sent(ledger, "typed while speaking")
    ledger.user("spoken first", "voice")  # the server answers the utterance before the typed line
    assert [u.text for u in ledger.open] == ["spoken first", "typed while speaking"]
    assert ledger.resumed(0, same_session=True) == ["spoken first", "typed while speaking"]


@pytest.mark.fast
def test_in_a_new_session_what_was_answered_is_not_asked_again():
    ledger = TurnLedger()
    sent(ledger, "hello")
    ledger.user("hello", "typed")
    ledger.answered()  # a server without history: never saved
    sent(ledger, "and then?")
    assert ledger.resumed(0, same_session=False) == ["and then?"]


@pytest.mark.fast
def test_after_a_resume_the_lines_asked_again_go_first_then_those_typed_meanwhile_a_few_at_a_time():
    ledger = TurnLedger(max_waiting=4)
    sent(ledger, "asked")
    sent(ledger, "not yet taken up")
    for text in ("a", "b", "c", "d"):
        ledger.typed(text)  # during the outage
    assert ledger.resumed(0, same_session=True) == ["asked", "not yet taken up", "a", "b", "c", "d"]
    assert ledger.release() == ["asked", "not yet taken up", "a", "b"]  # what the server lets wait
    ledger.user("asked", "typed")
    ledger.answered()
    assert ledger.release() == []  # heard, but the server still counts it until it takes up the next
    ledger.user("not yet taken up", "typed")
    assert ledger.release() == ["c"]
    ledger.answered()
    ledger.over()  # the server rests (it says idle)
    assert ledger.release() == ["d"]


@pytest.mark.fast
def test_a_refused_line_is_not_waited_for_even_when_the_server_says_so_once_for_several():
    ledger = TurnLedger()
    for text in ("fine", "x" * 10, "y" * 10):
        sent(ledger, text)
    ledger.refused(2)  # "text too long" with "repeats": 1 (which lines, the client cannot tell)
    assert ledger.waiting and ledger.in_flight == 1
    ledger.user("fine", "typed")
    ledger.answered()
    assert not ledger.waiting  # the two left were refused: talk's typed input can end


@pytest.mark.fast
def test_a_line_taken_up_after_one_never_taken_up_settles_which_was_refused():
    ledger = TurnLedger()
    for text in ("one", "two", "three"):
        sent(ledger, text)
    ledger.refused()  # about "two"; the client learns it when "three" starts
    ledger.user("one", "typed")
    ledger.answered()
    ledger.saved()
    ledger.user("three", "typed")
    assert [(u.text, u.state) for u in ledger.open] == [("three", "started")] and ledger.refused_lines == 0
    assert ledger.resumed(1, same_session=True) == ["three"]  # "two" is not asked again after an outage


@pytest.mark.fast
def test_a_turn_that_fails_with_an_error_is_not_waited_for_nor_asked_again():
    ledger = TurnLedger()
    sent(ledger, "one")
    sent(ledger, "two")
    ledger.user("one", "typed")
    ledger.failed()  # the chat model failed: an error and no reply
    assert ledger.waiting  # "two" still is
    ledger.user("two", "typed")
    ledger.answered()
    assert not ledger.waiting and [u.text for u in ledger.open] == ["two"]


# --- the thin client through an outage, with the connections played by the test -----------------


class ScriptedConnection:
    """A voice WebSocket that gives the client the messages of a script (a callable is run in between)."""

    def __init__(self, *script) -> None:
        self.script = list(script)
        self.sent: list = []

    def recv(self, timeout=None):
        item = self.script.pop(0)
        if callable(item):
            item()
            return self.recv(timeout)
        if isinstance(item, BaseException):
            raise item
        return json.dumps(item)

    def send(self, message) -> None:
        self.sent.append(json.loads(message))

    def close(self) -> None:
        pass


def closed(code: int, reason: str = ""):
    from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
    from websockets.frames import Close

    kind = ConnectionClosedOK if code == 1000 else ConnectionClosedError
    return kind(Close(code, reason), None)


class NoWait(threading.Event):
    def wait(self, timeout=None) -> bool:
        return self.is_set()


def scripted_session(attempts, clock=None):
    """A RemoteSession on session "abc" (1 turn saved), whose attempts to come back are ``attempts`` in turn."""
    from voicechat.talk import remote

    session = remote.RemoteSession("http://127.0.0.1:9", api_key=None, source=None, sink=None, reconnect_s=30)
    session.reconnect = Reconnect(30, clock=clock or Clock(), rand=lambda: 1.0)
    session._stop = NoWait()  # the waits between attempts pass at once
    notices: list[str] = []
    session.subscribe(lambda e: notices.append(e.message) if type(e).__name__ == "Notice" else None)

    def dial(timeout):
        outcome = attempts.pop(0)
        outcome = outcome() if callable(outcome) else outcome
        if isinstance(outcome, remote._Failed):
            raise outcome
        return outcome

    session._dial = dial
    return session, notices


@pytest.mark.fast
def test_a_drain_holds_what_is_typed_and_the_resumed_session_gets_it():
    from voicechat.talk import remote

    after = ScriptedConnection(
        {"type": "user", "text": "Are you there?", "source": "typed"},
        {"type": "reply", "text": "Yes.", "interrupted": False},
        {"type": "session", "id": "abc"},
        closed(1000),
    )
    session, notices = scripted_session(
        [
            remote._Failed(Loss("refused"), "cannot reach"),  # not listening yet
            remote._Failed(Loss("close", 1013, "not ready"), "loading"),  # loading its models
            (after, {"type": "session", "id": "abc", "resumed_turns": 1}),
        ]
    )
    before = ScriptedConnection(
        {"type": "closing", "session": "abc"},
        lambda: session.send_text("Are you there?"),  # typed while the server drains
        {"type": "error", "message": "the server is shutting down; send it again after reconnecting"},
        closed(1012, "restart"),
    )
    session._attach(before, {"type": "session", "id": "abc", "resumed_turns": 1})
    session.ledger.committed = 1
    session._downlink()
    assert before.sent == []  # held: a draining server refuses it
    assert after.sent == [{"type": "text", "text": "Are you there?"}]
    assert notices == [
        "server connection lost (drain): reconnecting...",
        "reconnected, session abc resumed (1 turn); asking again what was not answered (1 message)",
    ]
    assert session.errors == [] and session.lost is None and session.idle
    assert session.summary().turns == 1 and session.summary().session_id == "abc"


@pytest.mark.fast
@pytest.mark.parametrize("refused", [False, True])
def test_giving_up_says_what_to_run_in_one_line(refused):
    from voicechat.talk import remote

    clock = Clock()

    def later(failure):
        def attempt():
            clock.now += 31  # this attempt took the rest of the window
            return failure

        return attempt

    last = remote._Failed(Loss("close", 1008, "cannot be resumed"), "the server refused the session: cannot be resumed")
    session, notices = scripted_session([later(last if refused else remote._Failed(Loss("refused"), "cannot reach"))], clock)
    session._attach(ScriptedConnection(closed(1006)), {"type": "session", "id": "abc", "resumed_turns": 2})
    session._downlink()
    assert notices == ["server connection lost (closed 1006): reconnecting..."]
    go_on = "0 turns completed; go on with `voicechat talk --server http://127.0.0.1:9 --resume abc` once it is back"
    if refused:
        assert session.lost == (
            "the server at http://127.0.0.1:9 went away mid-session (closed 1006) and would not take the session back "
            f"(the server refused the session: cannot be resumed); {go_on}"
        )
    else:
        assert session.lost == (
            f"the server at http://127.0.0.1:9 went away mid-session (closed 1006) and did not come back within 30 s (serve.reconnect_s); {go_on}"
        )
    assert session.done


class QueueingServer:
    """A voice WebSocket that answers typed lines in order and, as `voicechat serve` does, lets at most
    ``bound`` wait (refusing more, the same error said once with ``repeats`` while it waits). A turn stops
    counting as waiting only after its last event was read: the client hears the reply first."""

    REFUSAL = "{} messages are already waiting for an answer; this one was dropped: send it after a reply"

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.pending = 0  # turns delivered and not yet over
        self.most = 0  # the most that ever waited
        self.refused = 0
        self.queue: list[str] = []
        self.out: list = []
        self.on_empty = lambda: None  # run once nothing is left: the test looks at the client then

    def send(self, message) -> None:
        doc = json.loads(message)
        if doc["type"] != "text":
            return
        if self.pending >= self.bound:
            self.refused += 1
            unsent = next((m for m in self.out if isinstance(m, dict) and m["type"] == "error"), None)
            if unsent is not None:
                unsent["repeats"] = unsent.get("repeats", 0) + 1  # the same error still waiting to be sent: coalesced
            else:
                self.out.append({"type": "error", "message": self.REFUSAL.format(self.bound)})
            return
        self.pending += 1
        self.most = max(self.most, self.pending)
        self.queue.append(doc["text"])

    def recv(self, timeout=None):
        while True:
            if self.out:
                item = self.out.pop(0)
                if callable(item):
                    item()
                    continue
                return json.dumps(item)
            if self.queue:
                text = self.queue.pop(0)
                self.out += [
                    {"type": "user", "text": text, "source": "typed"},
                    {"type": "status", "state": "thinking"},
                    {"type": "reply", "text": f"re: {text}", "interrupted": False},
                    {"type": "session", "id": "abc"},
                    self._over,
                ]
                continue
            self.on_empty()
            raise closed(1000)  # the test is over

    def _over(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.out.append({"type": "status", "state": "idle"})  # the session rests

    def close(self) -> None:
        pass


def piped(lines, server: QueueingServer, hello: dict):
    """A thin client fed ``lines`` at once (a pipe), on ``server``; what the user saw when nothing was left."""
    from voicechat.talk import remote

    session = remote.RemoteSession("http://127.0.0.1:9", api_key=None, source=None, sink=None)
    seen: list = []
    session.subscribe(seen.append)
    at_end: dict = {}

    def look() -> None:
        at_end.update(idle=session.idle, waiting=session.ledger.waiting)

    server.on_empty = look
    session._attach(server, {"type": "session", "id": "abc", **hello})
    for line in lines:
        session.send_text(line)
    session._downlink()
    return session, seen, at_end


EIGHT = ["one", "two", "three", "four", "five", "six", "seven", "eight"]


@pytest.mark.fast
@pytest.mark.parametrize("announced", [False, True])
def test_eight_piped_lines_go_a_few_at_a_time_and_are_all_answered_in_order(announced):
    server = QueueingServer(4)
    session, seen, at_end = piped(EIGHT, server, {"max_waiting": 4} if announced else {})
    assert server.refused == 0 and server.most <= 4
    assert [e.text for e in seen if type(e).__name__ == "UserText"] == EIGHT
    assert [e.text for e in seen if type(e).__name__ == "ReplyDone"] == [f"re: {t}" for t in EIGHT]
    assert session.errors == [] and at_end == {"idle": True, "waiting": False}
    assert session.summary().turns == 8


@pytest.mark.fast
def test_a_server_that_lets_fewer_wait_says_so_in_its_hello_and_nothing_is_refused():
    server = QueueingServer(2)
    session, seen, at_end = piped(EIGHT, server, {"max_waiting": 2})
    assert server.refused == 0 and server.most <= 2
    assert [e.text for e in seen if type(e).__name__ == "UserText"] == EIGHT
    assert session.errors == [] and at_end == {"idle": True, "waiting": False}


@pytest.mark.fast
def test_refused_lines_said_once_with_repeats_do_not_keep_the_client_waiting():
    server = QueueingServer(1)  # lets fewer wait than the client assumes, and does not say so
    session, seen, at_end = piped(EIGHT, server, {})
    errors = [e for e in seen if type(e).__name__ == "Error"]
    assert server.refused >= 2 and len(errors) < server.refused  # some said once for several
    answered = [e.text for e in seen if type(e).__name__ == "UserText"]
    assert answered == [t for t in EIGHT if t in answered]  # in order
    assert len(answered) + server.refused == 8  # each line answered or refused
    assert at_end == {"idle": True, "waiting": False}  # typed input can end
    assert session.ledger.max_waiting == 1  # the refusal named the bound; the lines after it went one at a time


# --- end to end: a real server killed and restarted under a thin client ---------------------------


NO_SOUND = {"ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"}  # no devices: typed input, replies to a file


class Client:
    """`voicechat talk --server URL --json`, fed typed lines; its events read as they come."""

    def __init__(self, url: str, out: Path, *args: str, reconnect_s: float) -> None:
        from tests.helpers import VOICECHAT

        env = {**os.environ, **NO_SOUND, "VOICECHAT_SERVE_RECONNECT_S": str(reconnect_s)}
        self.proc = subprocess.Popen(
            [VOICECHAT, "talk", "--server", url, "--output", str(out), "--json", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.events: list[dict] = []
        self._lines: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, match, timeout: float = 240) -> dict:
        while True:
            event = self._lines.get(timeout=timeout)
            if event is None:
                raise AssertionError(f"talk ended first: {self.events}")
            self.events.append(event)
            if match(event):
                return event

    def finish(self, timeout: float = 240) -> tuple[int, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self._reader.join(10)
        while (event := self._lines.get_nowait()) is not None:
            self.events.append(event)
        return self.proc.returncode, err.decode()

    def notices(self) -> list[str]:
        return [e["message"] for e in self.events if e["type"] == "notice"]


def wait_until_saved(path: Path, turns: int) -> None:
    import time

    for _ in range(600):
        with sqlite3.connect(path) as db:
            if db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] >= turns:
                return
        time.sleep(0.1)
    raise AssertionError(f"the history never had {turns} turns")


def restart(server) -> None:
    """The same server again: its port, its config, its history."""
    server._log.close()
    server.start()


def test_the_thin_client_resumes_after_its_server_is_killed_and_gives_up_when_it_stays_away(tmp_path):
    from tests.serveproc import ServeProcess

    history = tmp_path / "s" / "history.sqlite3"
    with ServeProcess(tmp_path / "s", config="llm:\n  max_tokens: 16\n") as server:
        c = Client(server.url, tmp_path / "one.wav", reconnect_s=240)
        c.say("My name is Ada.")
        c.wait_for(lambda e: e["type"] == "turn_stats")
        c.say("What is my name?")
        c.wait_for(lambda e: e["type"] == "user" and e["text"] == "What is my name?")
        c.wait_for(lambda e: e["type"] == "reply_delta")
        server.proc.send_signal(signal.SIGKILL)  # mid-reply (a reply is saved once it has been played): this turn is not saved
        server.proc.wait(30)
        c.wait_for(lambda e: e["type"] == "notice" and "reconnecting" in e["message"])
        restart(server)
        c.wait_for(lambda e: e["type"] == "notice" and e["message"].startswith("reconnected"))
        c.wait_for(lambda e: e["type"] == "turn_stats")  # the question in flight, answered by the new server
        c.say("Thank you.")
        c.wait_for(lambda e: e["type"] == "turn_stats")
        code, err = c.finish()
        assert code == 0 and "Traceback" not in err, err
        with sqlite3.connect(history) as db:
            public = [p for (p,) in db.execute("SELECT public_id FROM sessions")]
            rows = [r for (r,) in db.execute("SELECT user_text FROM turns ORDER BY id")]
        assert len(public) == 1, public  # one session, resumed
        assert rows == ["My name is Ada.", "What is my name?", "Thank you."]  # every completed turn, once
        assert [n for n in c.notices() if "reconnect" in n] == [
            "server connection lost (dropped): reconnecting...",
            f"reconnected, session {public[0]} resumed (1 turn); asking again what was not answered (1 message)",
        ], c.notices()  # one line for the outage, one for its end
        users = [e["text"] for e in c.events if e["type"] == "user"]
        assert users == ["My name is Ada.", "What is my name?", "What is my name?", "Thank you."], users
        assert [e for e in c.events if e["type"] == "summary"][-1]["turns"] == 3

        # the same session again, and a server that drains and does not come back: one line with the command to go on
        c = Client(server.url, tmp_path / "two.wav", "--resume", public[0], reconnect_s=2)
        c.say("Goodbye.")
        c.wait_for(lambda e: e["type"] == "turn_stats")
        wait_until_saved(history, 4)  # (the server saves a turn just after its stats)
        server.terminate()
        c.wait_for(lambda e: e["type"] == "notice" and e["message"] == "server connection lost (drain): reconnecting...")
        server.proc.wait(60)
        code, err = c.finish()
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("voicechat: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "did not come back within 2 s (serve.reconnect_s)" in errors[0], errors
    assert f"`voicechat talk --server {server.url} --resume {public[0]}`" in errors[0], errors
    assert f"resumed session {public[0]} on the server (3 turns)" in c.notices()
    with sqlite3.connect(history) as db:
        rows = [r for (r,) in db.execute("SELECT user_text FROM turns ORDER BY id")]
    assert rows == ["My name is Ada.", "What is my name?", "Thank you.", "Goodbye."]
