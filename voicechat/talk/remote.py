"""`talk --server URL`: the microphone and the speaker stay here, the session runs on a `voicechat serve`.

:class:`RemoteSession` offers the terminal the same surface as a local
:class:`voicechat.voice.session.VoiceSession` (subscribe, start, send_text, command, toggle_recording,
done, idle, close, summary), so `talk` drives either one with the same code: same live view, same
commands. The server keeps the history; this side reports how much of each reply it played.
A server that goes away mid-session (killed, the network gone) is said in one line (``lost``) with
the turns it had saved and the ``--resume`` id to go on; the session ends there.
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
from voicechat.voice import events as ev


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
    ) -> None:
        self.url = voice_url(server, {"session": resume, "barge_in": None if barge_in is None else str(barge_in).lower(), "mode": mode})
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

    # what the terminal uses ------------------------------------------------------------------
    def subscribe(self, fn: Callable[[ev.Event], None]) -> None:
        self._subscribers.append(fn)

    def emit(self, event: ev.Event) -> None:
        for fn in list(self._subscribers):
            fn(event)

    def warm_up(self) -> None:
        self.connect()

    def connect(self) -> None:
        from websockets.exceptions import InvalidStatus, WebSocketException
        from websockets.sync.client import connect
        from websockets.typing import Subprotocol

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        try:
            self._ws = connect(
                self.url,
                subprotocols=[Subprotocol("voicechat")],
                additional_headers=headers,
                open_timeout=self.connect_timeout,
                max_size=1 << 22,
                close_timeout=2,
            )
            self._ws.__enter__()  # held like `with connect(...)`, closed in close()
        except InvalidStatus as e:
            raise VoicechatError(
                f"the server at {self.server} refused the voice session (HTTP {e.response.status_code}); "
                "is it `voicechat serve`, and is the address right?"
            ) from None
        except (OSError, TimeoutError, WebSocketException) as e:
            raise VoicechatError(f"cannot reach the voicechat server at {self.server} ({e}); start it with `voicechat serve`") from None
        try:
            hello = json.loads(self._ws.recv(timeout=self.connect_timeout))
        except Exception as e:
            self._raise_closed(e)
        if hello.get("type") == "error":
            self._ws.close()
            raise VoicechatError(f"the server refused the session: {hello.get('message')}")
        if hello.get("type") != "session":
            raise VoicechatError(f"{self.server} did not open a voice session (got {str(hello)[:80]}); is it `voicechat serve`?")
        self.mode = hello.get("mode") or self.mode
        self.session_id = hello.get("id") or self.session_id
        if hello.get("resumed_turns"):
            self.emit(ev.Notice(f"resumed session {self.session_id} on the server ({hello['resumed_turns']} turns)"))

    def _raise_closed(self, e: BaseException) -> None:
        rcvd = getattr(e, "rcvd", None)
        if rcvd is not None:
            code, reason = rcvd.code, rcvd.reason
            if code == 1008:
                raise VoicechatError(
                    f"the server at {self.server} wants an API key ({reason}); give --api-key or VOICECHAT_SERVE_API_KEY"
                ) from None
            raise VoicechatError(f"the server at {self.server} closed the session: {reason or code}") from None
        raise VoicechatError(f"the server at {self.server} did not answer ({type(e).__name__}: {e})") from None

    def start(self) -> None:
        for name, target in (("remote-up", self._uplink), ("remote-down", self._downlink)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def send_text(self, text: str) -> None:
        self._send({"type": "text", "text": text})

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
        self._send({"type": "command", "line": line})
        return slash.Outcome()  # the server answers with a notice

    def toggle_recording(self) -> None:
        self._send({"type": "record"})

    def interrupt(self) -> None:
        self.sink.stop()
        self._send({"type": "interrupt", "played": self._played_seconds()})

    @property
    def idle(self) -> bool:
        return not self._answering

    @property
    def done(self) -> bool:
        return self._closed.is_set() or self._quit

    def close(self, timeout: float = 3.0) -> bool:
        if self._ws is None:
            return True
        if not self._closed.is_set():
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
        """The server's summary; when it sent none (it went away), the same figures counted here."""
        if self._summary is not None:
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
        done = f"{self._turns} turn{'s' if self._turns != 1 else ''} completed"
        if self.session_id:
            go_on = f"; go on with `voicechat talk --server {self.server} --resume {self.session_id}` once it is back"
        else:
            go_on = "; nothing of this session was saved"
        self.lost = f"the server at {self.server} went away mid-session (the connection dropped without a close); {done}{go_on}"

    # the two directions --------------------------------------------------------------------------
    def _send(self, message: dict[str, Any] | bytes) -> None:
        if self._ws is None or self._closed.is_set():
            return
        try:
            with self._send_lock:
                self._ws.send(message if isinstance(message, bytes) else json.dumps(message))
        except Exception as e:
            if _dropped(e) and not self._stop.is_set() and not self._quit:
                self._went_away()  # the connection broke under this send: the server did not close it
            self._closed.set()

    def _uplink(self) -> None:
        """Microphone frames up, as they come; the end of an input file says "end"."""
        if self.source is None:
            return
        ended = False
        while not self._stop.is_set() and not self._closed.is_set():
            if self.source.exhausted:
                if not ended:
                    self._send({"type": "end"})
                    ended = True
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
                if _dropped(e) and not self._stop.is_set() and not self._quit:
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
        elif kind == "audio_stop":
            self.sink.stop()
            self._send({"type": "played", "reply": doc.get("reply"), "seconds": self._played_seconds(), "done": True})
        elif kind == "session":
            if doc.get("id"):
                self.session_id = doc["id"]
        elif kind == "closing":
            self.emit(ev.Notice(f"the server is shutting down; session {doc.get('session') or self.session_id} is saved there"))
        else:
            event = ev.from_dict(doc)
            if event is None:
                return
            if isinstance(event, ev.Status):
                self._answering = event.state in ("thinking", "speaking")
            elif isinstance(event, ev.UserText):
                self._answering = True
            elif isinstance(event, (ev.ReplyDone, ev.Dropped)):
                self._answering = False
                if isinstance(event, ev.ReplyDone):
                    self._turns += 1
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
