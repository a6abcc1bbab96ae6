"""`talk --server URL`: the microphone and the speaker stay here, the session runs on a `voicechat serve`.

:class:`RemoteSession` offers the terminal the same surface as a local
:class:`voicechat.voice.session.VoiceSession` (subscribe, start, send_text, command, toggle_recording,
done, idle, close, summary), so `talk` drives either one with the same code: same live view, same
commands. The server keeps the history; this side reports how much of each reply it played.
Typed lines go up a few at a time (:class:`voicechat.talk.reconnect.TurnLedger` holds the rest, in
order), never more than the server lets wait for an answer (its hello's ``max_waiting``, else 4), so
a pasted or piped batch is answered line by line as it is locally, not refused past that bound.
A server that goes away mid-session (a drain, killed, the network gone) is tried again for
``serve.reconnect_s`` (:mod:`voicechat.talk.reconnect` decides when and whether): the session is
resumed by its id, what was said and not yet saved is sent again, and the outage is said in one line
and its end in another. Past that window, or when the server refuses the session for good, one line
(``lost``) says what was saved and the ``--resume`` command to go on; the session ends there.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np

from voicechat.conversation import slash
from voicechat.errors import VoicechatError
from voicechat.talk.reconnect import MAX_WAITING, RESTING, GiveUp, Loss, Reconnect, Retry, TurnLedger, text_refusal
from voicechat.voice import events as ev

MAX_HELD = 1000  # typed lines held here before the keyboard reader waits for room


def voice_url(server: str, params: dict[str, Any]) -> str:
    """http(s)://host:port[/prefix] (or ws(s)://) -> the voice WebSocket URL."""
    parts = urlsplit(server if "://" in server else f"http://{server}")
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise VoicechatError(f"--server '{server}' is not a server address; give e.g. http://127.0.0.1:8000")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/voice"):
        path += "/v1/voice"
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return urlunsplit((scheme, parts.netloc, path, query, ""))


class RemoteSession:
    modes = True

    def __init__(
        self,
        server: str,
        *,
        api_key: str | None,
        source: Any,
        sink: Any,
        resume: str | None = None,
        barge_in: bool | None = None,
        mode: str | None = None,
        connect_timeout: float = 10.0,
        reconnect_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._params = {
            "barge_in": None if barge_in is None else str(barge_in).lower(),
            "mode": mode,
            "hold": "1" if getattr(sink, "pausable", False) else None,  # a sound card pauses a reply (audio_hold)
        }
        self.url = voice_url(server, {"session": resume, **self._params})
        self.server = server
        self.api_key = api_key
        self.source, self.sink = source, sink
        self.connect_timeout = connect_timeout
        self.errors: list[str] = []
        self.mode = mode or "vad"
        self.session_id: str | None = resume  # the server's random id for the conversation (what --resume takes)
        self.lost: str | None = None  # set when the server went away without closing the session
        self._subscribers: list[Callable[[ev.Event], None]] = []
        self._ws: Any = None
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._send_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._audio_header: dict[str, Any] | None = None
        self._reply = 0
        self._reply_seconds = 0.0
        self._answering = False
        self._summary: ev.Summary | None = None
        self._quit = False
        self._turns = 0  # replies the server finished (and saved) in this connection
        self._latencies: list[float] = []
        self._tokens = [0, 0]
        self._estimated = False
        self.reconnect = Reconnect(reconnect_s, connect_timeout_s=connect_timeout, clock=clock)
        self.ledger = TurnLedger()  # what was said and is not yet in the server's history
        self._ledger_lock = threading.RLock()  # the ledger, and the moment a resumed connection takes over
        self._room = threading.Condition(self._ledger_lock)  # a held line was sent: room for one more typed
        self._outage = False  # the server is gone and being tried again
        self._draining = False  # the server said it is shutting down (texts wait for the next connection)
        self._reconnected = 0

    # what the terminal uses ------------------------------------------------------------------
    def subscribe(self, fn: Callable[[ev.Event], None]) -> None:
        self._subscribers.append(fn)

    def emit(self, event: ev.Event) -> None:
        for fn in list(self._subscribers):
            fn(event)

    def warm_up(self) -> None:
        self.connect()

    def connect(self) -> None:
        try:
            ws, hello = self._dial(self.connect_timeout)
        except _Failed as f:
            raise VoicechatError(f.message) from None
        self._attach(ws, hello)
        self.ledger.committed = int(hello.get("resumed_turns") or 0)
        if hello.get("resumed_turns"):
            self.emit(ev.Notice(f"resumed session {self.session_id} on the server ({hello['resumed_turns']} turns)"))

    def _dial(self, timeout: float) -> tuple[Any, dict[str, Any]]:
        """One attempt: the connection and the server's hello, or :class:`_Failed` (what happened, and the line to say)."""
        from websockets.exceptions import InvalidStatus, WebSocketException
        from websockets.sync.client import connect
        from websockets.typing import Subprotocol

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        self.url = voice_url(self.server, {"session": self.session_id, **self._params})
        try:
            ws = connect(
                self.url,
                subprotocols=[Subprotocol("voicechat")],
                additional_headers=headers,
                open_timeout=timeout,
                max_size=1 << 22,
                close_timeout=2,
            )
            ws.__enter__()  # held like `with connect(...)`, closed in close()
        except InvalidStatus as e:
            status = e.response.status_code
            raise _Failed(
                Loss("http", status),
                f"the server at {self.server} refused the voice session (HTTP {status}); is it `voicechat serve`, and is the address right?",
            ) from None
        except (OSError, TimeoutError, WebSocketException) as e:
            raise _Failed(
                Loss("refused", None, str(e)), f"cannot reach the voicechat server at {self.server} ({e}); start it with `voicechat serve`"
            ) from None
        try:
            hello = json.loads(ws.recv(timeout=timeout))
        except Exception as e:
            _close_quietly(ws)
            raise self._closed_failure(e) from None
        if not isinstance(hello, dict):
            hello = {}
        if hello.get("type") == "error":
            code = _close_code(ws, timeout)
            _close_quietly(ws)
            message = str(hello.get("message"))
            raise _Failed(Loss("close", code, message), f"the server refused the session: {message}")
        if hello.get("type") != "session":
            _close_quietly(ws)
            raise _Failed(Loss("other"), f"{self.server} did not open a voice session (got {str(hello)[:80]}); is it `voicechat serve`?")
        return ws, hello

    def _attach(self, ws: Any, hello: dict[str, Any]) -> None:
        with self._send_lock:
            self._ws = ws
        self.mode = hello.get("mode") or self.mode
        self.session_id = hello.get("id") or self.session_id
        bound = hello.get("max_waiting")  # typed turns the server lets wait (a server that does not say: its usual bound)
        with self._ledger_lock:
            self.ledger.max_waiting = bound if isinstance(bound, int) and not isinstance(bound, bool) and bound > 0 else MAX_WAITING
        self._reply, self._audio_header = -1, None  # reply numbers start again with each connection

    def _closed_failure(self, e: BaseException) -> _Failed:
        rcvd = getattr(e, "rcvd", None)
        if rcvd is not None:
            code, reason = rcvd.code, rcvd.reason
            if code == 1008:
                message = f"the server at {self.server} wants an API key ({reason}); give --api-key or VOICECHAT_SERVE_API_KEY"
            else:
                message = f"the server at {self.server} closed the session: {reason or code}"
            return _Failed(Loss("close", code, reason), message)
        message = f"the server at {self.server} did not answer ({type(e).__name__}: {e})"
        return _Failed(Loss("refused" if isinstance(e, TimeoutError) else "dropped", None, str(e)), message)

    def start(self) -> None:
        for name, target in (("remote-up", self._uplink), ("remote-down", self._downlink)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def send_text(self, text: str) -> None:
        """A typed line: sent when the server has room for it, after those before it (held meanwhile, also through an outage)."""
        with self._room:  # (in the order the ledger has it, after what a resumed session is asked again)
            while self.ledger.held >= MAX_HELD and not (self.done or self._stop.is_set()):
                self._room.wait(0.2)  # many lines ahead: the reader waits (a pipe fills) rather than lose any
            if self.done or self._stop.is_set():
                return
            self.ledger.typed(text)
            self._release()

    def _release(self) -> None:
        """Send the held lines the server has room for (not while it is away or shutting down: they wait for the next connection)."""
        with self._room:
            if self._outage or self._draining or self._ws is None:
                return
            sent = self.ledger.release()
            for text in sent:
                self._send({"type": "text", "text": text})
            if sent:
                self._room.notify_all()

    def command(self, line: str) -> slash.Outcome:
        name = slash.name(line)
        if name == "/quit":
            self._quit = True
            return slash.Outcome(quit=True)
        if name == "/mode":
            self.mode = "ptt" if self.mode == "vad" else "vad"
            self._send({"type": "mode", "mode": self.mode})
            return slash.Outcome(
                message=f"mode: {'push-to-talk (space to start/stop)' if self.mode == 'ptt' else 'voice activity detection'}"
            )
        if self._outage:
            return slash.Outcome(message=f"{name}: not connected to the server (reconnecting); try it again once reconnected")
        self._send({"type": "command", "line": line})
        return slash.Outcome()  # the server answers with a notice

    def toggle_recording(self) -> None:
        self._send({"type": "record"})

    def interrupt(self) -> None:
        self.sink.stop()
        self._send({"type": "interrupt", "played": self._played_seconds()})

    @property
    def idle(self) -> bool:
        return not self._answering and not self._outage and not self._draining and not self.ledger.waiting

    @property
    def done(self) -> bool:
        return self._closed.is_set() or self._quit

    def close(self, timeout: float = 3.0) -> bool:
        if self._ws is None:
            return True
        if not self._closed.is_set() and not self._outage:
            self._send({"type": "command", "line": "/quit"})  # the server ends the session and sends its summary
            self._closed.wait(timeout)
        self._stop.set()
        try:
            self._ws.close()
        except Exception:
            pass
        for t in self._threads:
            t.join(timeout)
        return True

    def summary(self) -> ev.Summary:
        """The server's summary; when it sent none (it went away), or knows one connection only, the figures counted here."""
        if self._summary is not None and not self._reconnected:
            return self._summary
        from voicechat.conversation.chat import percentile

        return ev.Summary(
            self._turns,
            percentile(self._latencies, 0.5),
            percentile(self._latencies, 0.95),
            self._tokens[0],
            self._tokens[1],
            self._estimated,
            None,
            self.session_id,
        )

    def _went_away(self) -> None:
        self.lost = f"the server at {self.server} went away mid-session (the connection dropped without a close); {self._saved_so_far()}"

    def _saved_so_far(self) -> str:
        done = f"{self._turns} turn{'s' if self._turns != 1 else ''} completed"
        if self.session_id:
            return f"{done}; go on with `voicechat talk --server {self.server} --resume {self.session_id}` once it is back"
        return f"{done}; nothing of this session was saved"

    def _come_back(self, loss: Loss) -> bool:
        """The connection is lost: try again until the session is resumed (True) or it is time to give up (False, ``lost`` says why)."""
        self._outage, self._answering = True, False
        old, self._draining = self._ws, False
        _close_quietly(old)
        self.emit(ev.Notice(f"server connection lost ({loss.label}): reconnecting..."))
        decision: Retry | GiveUp = self.reconnect.lost(loss)
        message = loss.message
        while isinstance(decision, Retry):
            if self._stop.wait(decision.after_s) or self._quit:
                return False
            try:
                ws, hello = self._dial(decision.timeout_s)
            except _Failed as f:
                decision, message = self.reconnect.failed(f.loss), f.message
                continue
            if self._stop.is_set() or self._quit:
                _close_quietly(ws)
                return False
            self._resumed(ws, hello)
            return True
        gone = f"the server at {self.server} went away mid-session ({loss.label})"
        if decision.deadline:
            window = f"{self.reconnect.window_s:g} s (serve.reconnect_s)"
            self.lost = f"{gone} and did not come back within {window}; {self._saved_so_far()}"
        else:
            self.lost = f"{gone} and would not take the session back ({message}); {self._saved_so_far()}"
        return False

    def _resumed(self, ws: Any, hello: dict[str, Any]) -> None:
        """Back on the server: the session resumed; what it had not saved is said again."""
        same = self.session_id is not None  # (the attempt asked for ?session=ID)
        self._attach(ws, hello)
        turns = int(hello.get("resumed_turns") or 0)
        self.reconnect.connected()
        self._reconnected += 1
        with self._ledger_lock:
            again = self.ledger.resumed(turns, same)
            self._outage = False
            self._answering = bool(again)
            self._release()  # the first of them now, the others as turns end; then what was typed meanwhile
        if same:
            line = f"reconnected, session {self.session_id} resumed ({turns} turn{'s' if turns != 1 else ''})"
        else:
            line = "reconnected (a new session: nothing of the old one had been saved)"
        if again:
            line += f"; asking again what was not answered ({len(again)} message{'s' if len(again) != 1 else ''})"
        self.emit(ev.Notice(line))

    # the two directions --------------------------------------------------------------------------
    def _send(self, message: dict[str, Any] | bytes) -> bool:
        if self._ws is None or self._closed.is_set() or self._outage:
            return False
        try:
            with self._send_lock:
                self._ws.send(message if isinstance(message, bytes) else json.dumps(message))
            return True
        except Exception as e:
            if self.reconnect.window_s > 0:
                return False  # the downlink sees the loss too, and reconnects
            if _dropped(e) and not self._stop.is_set() and not self._quit:
                self._went_away()  # the connection broke under this send: the server did not close it
            self._closed.set()
            return False

    def _uplink(self) -> None:
        """Microphone frames up, as they come; the end of an input file says "end"."""
        if self.source is None:
            return
        ended = False
        while not self._stop.is_set() and not self._closed.is_set():
            if self.source.exhausted:
                if not ended:
                    ended = self._send({"type": "end"})
                time.sleep(0.05)
                continue
            frame = self.source.read(0.1)
            if frame is not None:
                self._send(frame.pcm)

    def _downlink(self) -> None:
        from voicechat.engines.base import AudioChunk

        while not self._stop.is_set():
            try:
                message = self._ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            except Exception as e:
                rcvd = getattr(e, "rcvd", None)
                if self._stop.is_set() or self._quit:
                    break
                loss = self._closed_failure(e).loss
                if self.reconnect.window_s > 0 and loss.retryable:
                    if self._come_back(loss):
                        continue
                    break
                if _dropped(e):
                    self._went_away()  # no close frame: the server (or the network) died
                elif rcvd is not None and rcvd.code == 1012:
                    self.emit(
                        ev.Notice(f"the server restarted; continue with `voicechat talk --server {self.server} --resume {self.session_id}`")
                    )
                elif rcvd is not None and rcvd.code not in (1000, 1001):
                    self.errors.append(f"the server closed the session: {rcvd.reason or rcvd.code}")
                    self.emit(ev.Error(self.errors[-1]))
                break
            if isinstance(message, bytes):
                header, self._audio_header = self._audio_header, None
                if header is None:
                    continue
                samples = np.frombuffer(message[: len(message) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
                self._reply_seconds += len(samples) / header["sample_rate"]
                self.sink.play(AudioChunk(samples, int(header["sample_rate"]), header.get("text", "")))
                continue
            try:
                doc = json.loads(message)
            except ValueError:
                continue
            self._handle(doc)
        self._closed.set()

    def _handle(self, doc: dict[str, Any]) -> None:
        kind = doc.get("type")
        if kind == "audio":
            if doc.get("reply") != self._reply:
                self._reply = doc.get("reply", 0)
                self._reply_seconds = 0.0
                self.sink.begin()
            self._audio_header = doc
        elif kind == "audio_end":
            reply = doc.get("reply")
            threading.Thread(target=self._report_when_played, args=(reply,), name="remote-played", daemon=True).start()
        elif kind == "audio_hold":  # speech over the reply: paused until the server knows whose and what it is
            if doc.get("reply") == self._reply:
                self.sink.hold(bool(doc.get("on")))
        elif kind == "audio_stop":
            self.sink.stop()
            self._send({"type": "played", "reply": doc.get("reply"), "seconds": self._played_seconds(), "done": True})
        elif kind == "session":  # after each turn the server saved
            if doc.get("id"):
                self.session_id = doc["id"]
            with self._ledger_lock:
                self.ledger.saved()
                self._release()
        elif kind == "closing":
            if self.reconnect.window_s > 0:
                self._draining = True  # said once the connection closes (a drain lets the turn in progress end)
            else:
                self.emit(ev.Notice(f"the server is shutting down; session {doc.get('session') or self.session_id} is saved there"))
        else:
            event = ev.from_dict(doc)
            if event is None:
                return
            if isinstance(event, ev.Status):
                self._answering = event.state in ("thinking", "speaking")
                if event.state in RESTING:
                    with self._ledger_lock:
                        self.ledger.over()  # nothing waits there now: room for the next held lines
                        self._release()
            elif isinstance(event, ev.UserText):
                self._answering = True
                with self._ledger_lock:
                    self.ledger.user(event.text, event.source)
                    self._release()
            elif isinstance(event, (ev.ReplyDone, ev.Dropped)):
                self._answering = False
                if isinstance(event, ev.ReplyDone):
                    self._turns += 1
                    with self._ledger_lock:
                        self.ledger.answered()
                        self._release()
            elif isinstance(event, ev.TurnStats):
                if event.timing.voice_to_voice is not None:
                    self._latencies.append(event.timing.voice_to_voice)
                self._tokens[0] += event.prompt_tokens or 0
                self._tokens[1] += event.completion_tokens or 0
                self._estimated = self._estimated or event.estimated
            elif isinstance(event, ev.Summary):
                self._summary = event
                return  # the terminal shows the summary once, at the end
            elif isinstance(event, ev.Error):
                if self._draining:
                    return  # a text refused while the server shuts down: it is sent again after reconnecting
                with self._ledger_lock:
                    refusal, bound = text_refusal(event.message)
                    if refusal:  # lines refused (the server says how many more with "repeats")
                        repeats = doc.get("repeats")
                        self.ledger.refused(1 + (repeats if isinstance(repeats, int) and repeats > 0 else 0), bound)
                    else:  # an error in the turn being answered (none, or a reply, may follow)
                        self.ledger.failed()
                    self._release()
                self.errors.append(event.message)
            self.emit(event)

    def _report_when_played(self, reply: Any) -> None:
        self.sink.drain()
        self._send({"type": "played", "reply": reply, "seconds": self._played_seconds(), "done": True})

    def _played_seconds(self) -> float:
        played = self.sink.playback().seconds
        return self._reply_seconds if played is None else played  # a file: everything written counts as played


def _dropped(e: BaseException) -> bool:
    """The connection ended without a close from the server (it was killed, or the network went)."""
    from websockets.exceptions import ConnectionClosed

    return isinstance(e, ConnectionClosed) and e.rcvd is None


class _Failed(Exception):
    """An attempt to open the session failed: how (for the decision to try again) and the line to say."""

    def __init__(self, loss: Loss, message: str) -> None:
        super().__init__(message)
        self.loss, self.message = loss, message


def _close_code(ws: Any, timeout: float) -> int | None:
    """The close code that follows a refusal (the server sends an error, then closes)."""
    try:
        ws.recv(timeout=min(timeout, 2.0))
    except Exception as e:
        rcvd = getattr(e, "rcvd", None)
        return None if rcvd is None else int(rcvd.code)
    return None


def _close_quietly(ws: Any) -> None:
    if ws is None:
        return
    try:
        ws.close()
    except Exception:
        pass
