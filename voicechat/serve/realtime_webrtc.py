"""OpenAI's Realtime API over WebRTC: ``POST /v1/realtime/calls`` (aiortc), and ``/v1/realtime/client_secrets``.

The browser flow OpenAI documents, unchanged but for the URL: the page makes an offer with one audio
track (its microphone) and a data channel named ``oai-events``, and posts the SDP (``application/sdp``,
or multipart ``sdp`` and ``session`` as the SDK sends it) with the server's key or an ephemeral ``ek_``
key (:mod:`voicechat.serve.client_secrets`). The answer comes back (201, ``Location:
/v1/realtime/calls/{call_id}``); then audio flows both ways as Opus at 48 kHz, and the events are the
WebSocket route's, as JSON on the data channel, except audio: no ``input_audio_buffer.append`` and no
``response.output_audio.delta`` (the audio is on the tracks). The server plays the reply itself, paced
in real time, so it knows what was heard: ``output_audio_buffer.started/stopped/cleared`` say when a
reply's audio starts, ends or is cut, and the history keeps only what was played, without the client's
``conversation.item.truncate``.

A call is a :class:`RealtimeConnection` whose socket is the data channel (:class:`ChannelSocket`): the
same session limits, outbox bounds, idle and session timeouts, shutdown drain and close. The peer
connection closes when the session ends, and the session ends when the peer connection closes.
Host and Origin are checked by the app's Guard as on every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from voicechat.serve import client_secrets as cs
from voicechat.serve import realtime_events as rt
from voicechat.serve.errors import ApiError
from voicechat.serve.realtime import RealtimeConnection, RealtimeSink
from voicechat.serve.webrtc_audio import RATE, Note, ReplyAudio
from voicechat.serve.wsio import CONFIRM_WAIT_S, DRAIN_SLACK_S, ClientSink

if TYPE_CHECKING:
    from voicechat.serve.state import ServerState

log = logging.getLogger("voicechat.serve")
router = APIRouter()
CHANNEL = "oai-events"
MAX_SDP = 64 * 1024  # an offer is a few kB
MAX_INBOX = 256  # data channel messages waiting to be handled; more are refused
MAX_CHANNEL_BUFFER = 1 << 20  # bytes the data channel may hold unsent before the sender waits (then the outbox bounds it)
OPEN_WAIT_S = 20.0  # after the answer, how long events wait for the data channel to open (then they are dropped)
NEGOTIATE_S = 15.0  # setting up the answer (gathering host candidates)


# --- keys -----------------------------------------------------------------------------------------


def access(request_state: Any, app: Any, headers: Any, extra: str | None = None) -> tuple[bool, cs.Grant | None]:
    """May this request use a realtime route: the server's key, or a live ephemeral key (and its grant)."""
    from voicechat.serve.app import authorized

    if request_state.cfg.serve.api_key and authorized(request_state, headers, extra):
        return True, None
    key = cs.offered_key(headers, extra)
    if key is not None:  # an ephemeral key is judged as one: expired or unknown is refused, key or not
        store = getattr(app.state, "client_secrets", None)
        grant = store.grant(key) if store is not None else None
        return grant is not None, grant
    return authorized(request_state, headers, extra), None


def _defaults(state: ServerState, model: str = "voicechat") -> rt.Settings:
    voice = state.tts.model_name if state.loaded.is_set() and state.load_error is None else "none"
    return rt.Settings(model=model, voice=voice, instructions=state.cfg.llm.system_prompt, silence_ms=state.cfg.turn.end_ms)


@router.post("/v1/realtime/client_secrets")
async def client_secrets(request: Request) -> Response:
    """Only the server's key mints (the Guard checks it, as on every route): an ephemeral key cannot."""
    state = request.app.state.server
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):  # (nesting deeper than Python's recursion limit)
        raise ApiError(400, "the body must be JSON: {expires_after, session}") from None
    try:
        doc = request.app.state.client_secrets.mint(body, _defaults(state))
    except cs.Refused as e:
        raise ApiError(400, str(e), param=e.param) from None
    log.info("minted a realtime client secret (expires at %d)", doc["expires_at"])  # never the secret itself
    return JSONResponse(doc, headers={"Cache-Control": "no-store"})


# --- calls ----------------------------------------------------------------------------------------


@router.post("/v1/realtime/calls")
async def create_call(request: Request) -> Response:
    from voicechat.serve.boundary import media_type

    state: ServerState = request.app.state.server
    ok, grant = access(state, request.app, request.headers)
    if not ok:
        raise ApiError(401, "missing, wrong or expired key: send 'Authorization: Bearer KEY' (the server's key or an ek_ client secret)")
    kind = media_type(request.headers.get("content-type"))
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_SDP:
        raise ApiError(413, f"an SDP offer is at most {MAX_SDP // 1024} kB")
    session: Any = None
    if kind == "application/sdp":
        raw = await request.body()
        if len(raw) > MAX_SDP:
            raise ApiError(413, f"an SDP offer is at most {MAX_SDP // 1024} kB")
        sdp = raw.decode("utf-8", "replace")
    elif kind == "multipart/form-data":
        sdp, session = await _form(request)
    else:
        raise ApiError(
            415, f"/v1/realtime/calls takes Content-Type: application/sdp (or multipart/form-data with sdp and session); not {kind!r}"
        )
    if "m=audio" not in sdp or "v=0" not in sdp:
        raise ApiError(400, "the body is not an SDP offer with an audio track (make one with RTCPeerConnection.createOffer)", param="sdp")
    if "a=fingerprint:" not in sdp:  # (aiortc would answer it, then fail the call in the background, holding its slot)
        raise ApiError(
            400, "the SDP offer has no DTLS fingerprint (a=fingerprint); make one with RTCPeerConnection.createOffer", param="sdp"
        )
    if not state.ready:
        state.metrics.refused.labels("session").inc()
        raise ApiError(503, "not ready (loading the models or shutting down); try again shortly", headers={"Retry-After": "2"})
    start = session if session is not None else (grant.session if grant is not None else None)
    model = start.get("model") if isinstance(start, dict) and isinstance(start.get("model"), str) else "voicechat"
    try:
        settings = cs.settings_for(start, _defaults(state, str(model)[:100]))
    except cs.Refused as e:
        raise ApiError(400, str(e), param=e.param) from None
    try:  # (aiortc takes a second to import: not on the event loop, where every session's audio runs)
        webrtc_track = await asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "voicechat.serve.webrtc_track")
    except ImportError:
        raise ApiError(501, "WebRTC needs aiortc: pip install 'voicechat[webrtc]'") from None
    pc = webrtc_track.peer()
    sock = ChannelSocket(pc, "m=application" in sdp, request.app, request.headers)
    conn = CallConnection(state, sock, settings, start)
    number = state.add_session(conn)
    if number is None:
        await pc.close()
        state.metrics.refused.labels("session").inc()
        raise ApiError(
            503,
            f"too many voice sessions (serve.max_sessions is {state.cfg.serve.max_sessions}); try again later",
            headers={"Retry-After": "5"},
        )
    try:
        answer = await asyncio.wait_for(conn.negotiate(sdp), NEGOTIATE_S)
    except Exception as e:
        state.remove_session(number)
        await pc.close()
        if isinstance(e, asyncio.TimeoutError):
            raise ApiError(503, f"could not set up the call within {NEGOTIATE_S:g} s; try again") from None
        why = f"{type(e).__name__}: {str(e)[:200]}" if str(e).strip() else "it is not a well-formed offer"  # (aiortc's parser asserts)
        raise ApiError(400, f"the SDP offer was refused: {why}; make one with RTCPeerConnection.createOffer", param="sdp") from None
    calls: dict[str, CallConnection] = request.app.state.calls
    calls[conn.call_id] = conn
    task = asyncio.create_task(_live(state, conn, number, calls))
    conn.task = task  # (held: a task nobody references may be collected)
    state.metrics.session_total.inc()
    return Response(answer, status_code=201, media_type="application/sdp", headers={"Location": f"/v1/realtime/calls/{conn.call_id}"})


@router.post("/v1/realtime/calls/{call_id}/hangup")
async def hangup(call_id: str, request: Request) -> Response:
    ok, _ = access(request.app.state.server, request.app, request.headers)
    if not ok:
        raise ApiError(401, "missing, wrong or expired key: send 'Authorization: Bearer KEY'")
    conn = request.app.state.calls.get(call_id)
    if conn is None:
        raise ApiError(404, "no live call has this id")
    conn.hang_up()
    return JSONResponse({})


async def _form(request: Request) -> tuple[str, Any]:
    try:
        form = await request.form(max_files=2, max_fields=4, max_part_size=MAX_SDP)
    except Exception:
        raise ApiError(400, "the multipart body is malformed; send fields sdp (the offer) and session (JSON, optional)") from None
    try:
        parts = {}
        for name in ("sdp", "session"):
            value = form.get(name)
            if value is not None and not isinstance(value, str):
                data = await value.read(MAX_SDP + 1)
                if len(data) > MAX_SDP:
                    raise ApiError(413, f"a part is at most {MAX_SDP // 1024} kB", param=name)
                value = data.decode("utf-8", "replace")
            parts[name] = value
    finally:
        await form.close()
    if not parts["sdp"]:
        raise ApiError(400, "the multipart body needs a field sdp: the SDP offer", param="sdp")
    session = None
    if parts["session"]:
        try:
            session = json.loads(parts["session"])
        except (ValueError, RecursionError):
            raise ApiError(400, "the session field must be JSON (a session configuration)", param="session") from None
    return str(parts["sdp"]), session


async def _live(state: ServerState, conn: CallConnection, number: int, calls: dict[str, CallConnection]) -> None:
    try:
        await conn.run(None, None, None)
    except Exception as e:  # a call's failure ends that call, logged in one line
        from voicechat.errors import scrub

        log.warning("realtime call ended by an error: %s", scrub(f"{type(e).__name__}: {e}"))
    finally:
        state.remove_session(number)
        calls.pop(conn.call_id, None)
        await conn.sock.close()


async def sideband(ws: Any, call_id: str, grant: cs.Grant | None) -> None:
    """``/v1/realtime?call_id=...`` (the SDK's ``realtime.connect(call_id=...)``): a server's WebSocket beside a
    browser's call. It gets the call's events as the page does, and its events act on the call (tools, instructions);
    the server's key only, never the page's ephemeral one. It ends with the call, or when it leaves."""
    from voicechat.serve.voice_ws import CLOSE_POLICY, MAX_OUT_BYTES, MAX_OUT_MESSAGES
    from voicechat.serve.wsio import Outbox

    async def refuse(message: str) -> None:
        await ws.send_text(json.dumps(rt.error_event(message)))
        await ws.close(CLOSE_POLICY, reason=message[:120])

    conn = ws.app.state.calls.get(call_id)
    if grant is not None:
        await refuse("joining a call takes the server's key, not an ephemeral one")
        return
    if conn is None:
        await refuse("no live call has this call_id")
        return
    out = Outbox(asyncio.get_running_loop(), MAX_OUT_MESSAGES, MAX_OUT_BYTES)
    conn.sidebands.add(out)

    async def sender() -> None:
        while (item := await out.take()) is not None:
            await ws.send_text(item if isinstance(item, str) else item.decode())

    task = asyncio.create_task(sender())
    try:
        while not conn.closed.is_set() and not out.overflowed and not task.done():
            try:
                message = await asyncio.wait_for(ws.receive(), 0.5)
            except asyncio.TimeoutError:
                continue
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                conn._command(message["text"])
    finally:
        conn.sidebands.discard(out)
        out.end()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 5)
        task.cancel()
        with contextlib.suppress(Exception):
            await ws.close(1000)


# --- the data channel as the connection's socket --------------------------------------------------


class ChannelSocket:
    """What :class:`VoiceConnection` uses of a WebSocket (send_text, send_bytes, receive, close), over the
    ``oai-events`` data channel of a peer connection. Messages in wait in a bounded queue; messages out wait
    (bounded by the connection's outbox) while the channel holds more than :data:`MAX_CHANNEL_BUFFER` unsent."""

    def __init__(self, pc: Any, expects_channel: bool, app: Any = None, headers: Any = None) -> None:
        self.pc = pc
        self.app, self.headers = app, headers or {}  # as a WebSocket has them: the app, and the request's headers
        self.channel: Any = None
        self.expects_channel = expects_channel
        self.opened = asyncio.Event()
        self.gone = asyncio.Event()
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_INBOX)
        self.overflowed = 0  # messages dropped because the inbox was full
        self._closing = False

    def attach(self, channel: Any) -> None:
        if channel.label != CHANNEL or self.channel is not None:
            return  # other channels are not part of the API
        self.channel = channel
        channel.on("open", self.opened.set)
        channel.on("message", self._message)
        channel.on("close", self.lost)
        if channel.readyState == "open":
            self.opened.set()

    def _message(self, data: Any) -> None:
        message = {"type": "websocket.receive", "bytes": data} if isinstance(data, bytes) else {"type": "websocket.receive", "text": data}
        try:
            self.inbox.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed += 1

    def lost(self) -> None:
        """The peer connection or the channel closed: the session ends."""
        if self.gone.is_set():
            return
        self.gone.set()
        while True:
            try:
                self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
                return
            except asyncio.QueueFull:
                self.inbox.get_nowait()  # what waits no longer matters

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send_text(self, text: str) -> None:
        if not self.opened.is_set() and self.expects_channel and not self.gone.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._opened_or_gone(), OPEN_WAIT_S)
            if not self.opened.is_set():
                self.expects_channel = False  # no channel came: the call goes on with audio only
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return
        while channel.bufferedAmount > MAX_CHANNEL_BUFFER and not self.gone.is_set():
            await asyncio.sleep(0.02)
        if channel.readyState == "open":
            channel.send(text)

    async def send_bytes(self, data: bytes) -> None:
        pass  # (a realtime connection sends no binary messages)

    async def _opened_or_gone(self) -> None:
        gone = asyncio.ensure_future(self.gone.wait())
        opened = asyncio.ensure_future(self.opened.wait())
        try:
            await asyncio.wait({gone, opened}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            opened.cancel()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closing:
            return
        self._closing = True
        self.lost()
        with contextlib.suppress(Exception):
            await self.pc.close()


# --- the call -------------------------------------------------------------------------------------


class CallSink(RealtimeSink):
    """Reply audio to the call's track. The server plays it, so the reply is over when it has been played
    (``drain`` waits for the track to say so), and a cut reply reports what was played (at once: it is in process)."""

    confirm_wait_s = CONFIRM_WAIT_S

    def __init__(self, send: Any, closed: threading.Event, queued: Callable[[], float]) -> None:
        super().__init__(send, closed)
        self.queued = queued  # seconds of reply audio still waiting to go out

    def drain(self) -> None:
        """Wait until the track has played the reply: as long as it makes progress (a loaded machine plays late,
        not short), and no longer than the audio waiting plus :data:`DRAIN_SLACK_S` once it makes none."""
        import time

        self.send({"type": "audio_end", "reply": self.reply}, None)
        left = self.queued()
        deadline = time.monotonic() + left + DRAIN_SLACK_S
        while not self._done.wait(0.05):
            if self._stopped or self.closed.is_set():
                return
            now = self.queued()
            if now < left:
                left, deadline = now, max(deadline, time.monotonic() + now + DRAIN_SLACK_S)
            if time.monotonic() > deadline:
                return


class CallConnection(RealtimeConnection):
    def __init__(self, state: ServerState, sock: ChannelSocket, settings: rt.Settings, start: dict[str, Any] | None) -> None:
        super().__init__(state, sock, settings.model, settings.kind)  # type: ignore[arg-type]  # (a socket in all but name)
        self.settings = settings
        self.translator = rt.Translator(settings)
        self.initial = start
        self.sock = sock
        self.call_id = "rtc_" + secrets.token_hex(12)
        self.audio = ReplyAudio()
        self.task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._response_of: dict[int, str] = {}  # the sink's reply number -> the response id (for output_audio_buffer events)
        self._gone = threading.Event()  # the call is over (for the speaker thread waiting for room)
        self.sidebands: set[Any] = set()  # outboxes of servers' WebSockets joined with ?call_id= (sideband)

    async def negotiate(self, offer: str) -> str:
        from aiortc import RTCSessionDescription

        from voicechat.serve.webrtc_track import ReplyTrack, listen

        pc = self.sock.pc

        @pc.on("datachannel")
        def _channel(channel: Any) -> None:
            self.sock.attach(channel)

        @pc.on("track")
        def _track(track: Any) -> None:
            if track.kind == "audio" and self._listener is None:
                self._listener = asyncio.ensure_future(listen(track, self.closed, self._heard))

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.sock.lost()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        pc.addTrack(ReplyTrack(self.audio, self._notes))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    def hang_up(self) -> None:
        self.closed_reason = "hung up"
        self.sock.lost()

    async def run(self, resume: str | None, barge_in: bool | None, mode: str | None) -> None:
        try:
            await super().run(None, None, None)
        finally:
            self._gone.set()
            self.audio.close()
            if self._listener is not None:
                self._listener.cancel()

    def _put(self, item: str | bytes) -> None:
        super()._put(item)
        for out in list(self.sidebands):  # (each bounded: one that does not read is closed, not waited for)
            out.put(item)

    # audio in: the caller's track, on the same path as input_audio_buffer.append --------------------------
    def _heard(self, samples: np.ndarray) -> None:
        import time

        self.last_heard = time.monotonic()  # a caller who speaks (or sends silence) is not idle
        if self.sock.overflowed:
            self.refuse(f"more than {MAX_INBOX} events at once; send fewer", code="rate_limited")
            self.sock.overflowed = 0
        if self.draining or self.source is None:  # (before the session starts, its source holds the audio)
            return
        self._feed(samples, RATE)

    # audio out: the reply on the track, paced; no output_audio.delta events ----------------------------
    def _new_sink(self) -> ClientSink:
        return CallSink(self._send_audio, self.closed, self.audio.queued_s)

    def _send_audio(self, header: dict[str, Any], pcm: bytes | None) -> None:
        kind, reply = header.get("type"), int(header.get("reply", 0))
        if kind == "audio" and pcm is not None:
            samples = np.frombuffer(pcm, dtype="<i2")
            rate = int(header["sample_rate"])
            if rate != RATE:
                import soxr

                samples = soxr.resample(samples, rate, RATE)
            with self._lock:
                response = self.translator.response
                if response is not None:
                    self._reply_of[response.item_id] = reply
                    self._response_of[reply] = response.id
                    while len(self._reply_of) > 16:
                        self._reply_of.pop(next(iter(self._reply_of)))
                    while len(self._response_of) > 16:
                        self._response_of.pop(next(iter(self._response_of)))
                self.translator.audio(b"\x00\x00", len(samples) / RATE * 1000)  # (counts the audio; the delta is not sent)
            self.audio.push(reply, samples, self._gone)
        elif kind == "audio_end":
            self._notes(self.audio.end(reply))
        elif kind == "audio_stop":
            self._notes(self.audio.clear(reply))

    def _notes(self, notes: list[Note]) -> None:
        """What the track did with the replies: events for the client, and what was heard for the history."""
        for note in notes:
            response_id = self._response_of.get(note.reply)
            if note.kind == "started":
                self._emit([{"type": "output_audio_buffer.started", "response_id": response_id}])
                continue
            if self.sink is not None:
                self.sink.confirm(note.reply, note.seconds, True)
            self._emit([{"type": f"output_audio_buffer.{note.kind}", "response_id": response_id}])

    def _command(self, text: str) -> None:
        if len(text) < 4096 and "output_audio_buffer.clear" in text:
            try:
                msg = json.loads(text)
            except (ValueError, RecursionError):
                msg = None
            if isinstance(msg, dict) and msg.get("type") == "output_audio_buffer.clear":
                if self.sink is not None:
                    self._notes(self.audio.clear(self.sink.reply))
                if self.session is not None:
                    self.session.interrupt()
                return
        super()._command(text)
