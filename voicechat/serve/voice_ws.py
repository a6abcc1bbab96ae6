"""The live voice session over a WebSocket: the same :class:`VoiceSession` the terminal runs.

Protocol (README "Voice sessions over a WebSocket" has an example client):
- connect to ``/v1/voice`` (``?session=ID`` resumes a conversation; ``barge_in``, ``mode``);
- the server says ``{"type": "session", ...}`` first, then the session's events exactly as
  ``talk --json`` prints them (status, partial, user, reply_delta, reply, turn_stats, tool_call,
  tool_result, notice, error, dropped, summary), and reply audio as ``{"type": "audio", ...}``
  followed by one binary message of 16-bit PCM; ``audio_end`` / ``audio_stop`` close a reply's audio;
  with ``?hold=1`` (the client can pause its playback), ``audio_hold`` with ``on`` true pauses the reply where it
  is and ``on`` false lets it go on: speech over a reply that is not its echo pauses it until it is known whether
  it is a backchannel ("uh-huh") or a cough (it goes on) or the user taking the turn (``audio_stop``);
- the client streams binary messages of 16 kHz mono 16-bit PCM up, and sends JSON messages:
  ``text``, ``command``, ``clear``, ``interrupt``, ``record`` (push-to-talk), ``played``, ``mode``, ``end``.

Session ids are the history's random public ids (:func:`voicechat.conversation.history.new_key`), never row numbers:
an id that is unknown, malformed, deleted or someone else's gets one and the same answer (close 1008,
:data:`SESSION_REFUSED`), so nothing can be learnt by trying ids.

Every connection is bounded: what waits to be sent (:class:`Outbox`, :data:`MAX_OUT_MESSAGES`,
:data:`MAX_OUT_BYTES`: a client that does not read is closed with 1008), the audio waiting to be heard
(:class:`PushSource`, 10 s), typed turns waiting for an answer (:data:`MAX_WAITING_TURNS`: more are
refused), and refused messages (errors about the same input are coalesced; after :data:`MAX_REFUSED`
the connection is closed with 1008). Live sessions are bounded by ``serve.max_sessions`` (1013 past
it); their engine calls take turns on the engines' own locks, beside the ``serve.max_active`` pool.

With tools on (tools.enabled, ``serve --tools``), every session uses the server's one set of tools
(:mod:`voicechat.serve.tools`): the built-ins and MCP servers started once, calls bounded across sessions,
and tools that need a person's yes refused unless tools.server_allow names them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any, TypeGuard

from fastapi import WebSocket, WebSocketDisconnect

from voicechat.conversation import slash
from voicechat.conversation.history import History
from voicechat.serve.wsio import ClientSink, Outbox, PushSource

if TYPE_CHECKING:
    from voicechat.conversation.turnlog import TurnLog
    from voicechat.serve.state import ServerState
    from voicechat.voice.session import VoiceSession

log = logging.getLogger("voicechat.serve")
CLOSE_BUSY = 1013  # try again later
CLOSE_RESTART = 1012  # the server is restarting: reconnect (elsewhere)
CLOSE_POLICY = 1008
MAX_MESSAGE = 1 << 20  # one message of audio (~30 s) or JSON
MAX_OUT_MESSAGES = 4096  # messages waiting to be sent to one client (a reply's events and audio are a few hundred)
MAX_OUT_BYTES = 8 << 20  # and their size: ~3 minutes of 22 kHz reply audio; past either, the client is not reading
MAX_WAITING_TURNS = 4  # typed turns waiting for an answer (the one being answered included); more are refused
MAX_REFUSED = 1000  # refused messages (malformed, too big, too many turns) before the connection is closed
SESSION_REFUSED = "this session cannot be resumed (unknown, deleted or not yours); connect without ?session= to start a new one"


class VoiceConnection:
    def __init__(self, state: ServerState, ws: WebSocket) -> None:
        self.state = state
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.out = Outbox(self.loop, MAX_OUT_MESSAGES, MAX_OUT_BYTES)
        self.refused = 0  # messages refused so far
        self.public_id: str | None = None  # the session's id as the client knows it
        self._public_of: dict[int, str] = {}
        self._turnlog: TurnLog | None = None
        self.closed = threading.Event()
        self.session: VoiceSession | None = None
        self.sink: ClientSink | None = None
        self.holds = False  # the client pauses its playback on audio_hold (?hold=1)
        self.source: PushSource | None = None
        self.last_heard = time.monotonic()
        self.started = time.monotonic()
        self.draining = False
        self.closed_code: int | None = None  # the close code decided before the close (a policy, a restart)
        self.closed_reason: str | None = None

    # outgoing, from any thread -----------------------------------------------------------------
    def _put(self, item: str | bytes) -> None:
        self.out.put(item)  # False: the outbox is full, the client is not reading; _receive closes the connection

    def send_json(self, doc: dict[str, Any]) -> None:
        if not self.closed.is_set():
            self._put(json.dumps(doc, ensure_ascii=False))

    def refuse(self, message: str) -> None:
        """An error about something the client sent: said once however often it is repeated while waiting."""
        self.refused += 1
        if not self.closed.is_set():
            self.out.error(message)

    def _public(self, session_id: int | str | None) -> str | None:
        """The client's id for a history session (looked up once); a public id is its own."""
        if session_id is None or isinstance(session_id, str):
            return session_id
        if session_id not in self._public_of:
            # the session's own log: a history that came back after an outage is there, not in the server's state
            history = self._turnlog.history if self._turnlog is not None else self.state.history
            if not isinstance(history, History):  # an unavailable history: the turns are in a recovery file,
                return None  # and there is nothing to resume by
            try:
                self._public_of[session_id] = history.public_id(session_id)
            except Exception:  # the history failed since: likewise
                return None
        self.public_id = self._public_of[session_id]
        return self.public_id

    def _send_audio(self, header: dict[str, Any], pcm: bytes | None) -> None:
        if self.closed.is_set():
            return
        self._put(json.dumps(header))
        if pcm is not None:
            self._put(pcm)

    def _on_event(self, event: Any) -> None:
        from voicechat.voice import events as ev

        doc = event.to_dict()
        if isinstance(event, ev.Summary):
            doc["session_id"] = self._public(event.session_id)
        self.send_json(doc)
        if isinstance(event, ev.TurnStats) and event.timing.voice_to_voice is not None:
            self.state.metrics.turns.observe(event.timing.voice_to_voice)

    async def _sender(self) -> None:
        while True:
            item = await self.out.take()
            if item is None:
                return
            if isinstance(item, bytes):
                await self.ws.send_bytes(item)
            else:
                await self.ws.send_text(item)

    # the session -------------------------------------------------------------------------------
    def _new_sink(self) -> ClientSink:
        return ClientSink(self._send_audio, self.closed, pausable=self.holds)

    def _open(self, public_id: str | None, barge_in: bool | None, mode: str | None) -> VoiceSession:
        from voicechat.conversation.chat import Conversation, engines_info
        from voicechat.conversation.history import UnavailableHistory
        from voicechat.errors import VoicechatError
        from voicechat.voice.session import VoiceSession

        state = self.state
        cfg = copy.deepcopy(state.cfg)
        if barge_in is not None:
            cfg.listen.barge_in = barge_in
        if mode is not None:
            cfg.listen.mode = mode
        resume = None
        if public_id is not None:
            history = state.history
            if isinstance(history, UnavailableHistory):
                reason = history.reason
                try:  # back since the server started?
                    history = history.available()
                except VoicechatError:
                    raise VoicechatError(f"sessions cannot be resumed: {reason}") from None
            if history is None:
                raise VoicechatError("this server keeps no history (history.enabled is false): sessions cannot be resumed")
            resume = history.find_public(public_id)
            if resume is None:
                raise SessionRefused(SESSION_REFUSED)
            self._public_of[resume] = self.public_id = public_id
        chat = Conversation(
            cfg,
            state.llm,
            kind="talk",
            log=state.log,
            resume=resume,
            history=state.history,
            engines=engines_info(cfg, state.stt, state.llm, state.tts),
            tools=state.tools,
        )
        self._turnlog = chat.turnlog
        chat.on_recorded = lambda sid: self.send_json({"type": "session", "id": self._public(sid)})
        self.source = PushSource(cfg.listen.frame_ms)
        self.sink = self._new_sink()
        session = VoiceSession(
            cfg,
            conversation=chat,
            stt=state.stt,
            tts=state.tts,
            source=self.source,
            sink=self.sink,
            turn_model=state.turn_model,
            ptt_key=True,
        )
        session.subscribe(self._on_event)
        return session

    async def run(self, resume: str | None, barge_in: bool | None, mode: str | None) -> None:
        from voicechat.errors import VoicechatError

        sender = asyncio.create_task(self._sender())
        try:
            try:
                self.session = await self.loop.run_in_executor(None, self._open, resume, barge_in, mode)
            except SessionRefused as e:
                self.send_json({"type": "error", "message": str(e)})
                await self._finish(sender, CLOSE_POLICY, str(e))
                return
            except VoicechatError as e:
                self.send_json({"type": "error", "message": str(e)})
                await self._finish(sender, CLOSE_POLICY, str(e))
                return
            chat = self.session.conversation
            self.send_json(
                {
                    "type": "session",
                    "id": self.public_id,
                    "resumed_turns": chat.resumed_turns,
                    "input": {"sample_rate": 16000, "format": "s16le", "channels": 1},
                    "output": {"sample_rate": self.state.tts.sample_rate, "format": "s16le"},
                    "mode": self.session.mode,
                    "barge_in": self.session.cfg.listen.barge_in,
                    "tools": [spec.name for spec in chat.tools.specs()] if chat.tools is not None else [],
                    "max_waiting": MAX_WAITING_TURNS,  # typed turns that may wait; a client sends no more at once
                }
            )
            self.session.start()
            await self._receive()
        finally:
            await self._close_session()
            await self._finish(sender, None)

    async def _receive(self) -> None:
        serve = self.state.cfg.serve
        session = self.session
        assert session is not None  # (opened by run before it receives)
        while not self.closed.is_set():
            idle_left = serve.idle_timeout_s - (time.monotonic() - self.last_heard)
            total_left = serve.session_timeout_s - (time.monotonic() - self.started)
            if idle_left <= 0 or total_left <= 0:
                why = "no message for" if idle_left <= 0 else "the session lasted"
                limit = serve.idle_timeout_s if idle_left <= 0 else serve.session_timeout_s
                self.send_json(
                    {
                        "type": "error",
                        "message": f"closing: {why} {limit:.0f} s (serve.{'idle' if idle_left <= 0 else 'session'}_timeout_s)",
                    }
                )
                return
            if session.done and not session.errors and self.source is not None and self.source.exhausted:
                return  # the client said "end" and the last reply is over
            if session.errors:
                return
            if self.out.overflowed:
                self.closed_code, self.closed_reason = CLOSE_POLICY, "closing: the client is not reading what it is sent"
                log.warning(
                    "voice session: closed a client that was not reading (more than %d messages or %d MB waiting)",
                    MAX_OUT_MESSAGES,
                    MAX_OUT_BYTES >> 20,
                )
                return
            if self.refused > MAX_REFUSED:
                self.send_json({"type": "error", "message": f"closing: {self.refused} messages refused; fix the client"})
                self.closed_code, self.closed_reason = CLOSE_POLICY, f"{self.refused} messages refused"
                log.warning("voice session: closed a client after %d refused messages", self.refused)
                return
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=min(idle_left, total_left, 0.5))
            except asyncio.TimeoutError:
                continue
            if message["type"] == "websocket.disconnect":
                return
            self.last_heard = time.monotonic()
            data, text = message.get("bytes"), message.get("text")
            if data is not None:
                self._audio(data)
            elif text is not None:
                self._command(text)

    def _audio(self, data: bytes) -> None:
        if len(data) > MAX_MESSAGE:
            self.refuse(f"an audio message is too big; send at most {MAX_MESSAGE} bytes at a time")
            return
        if len(data) % 2:
            self.refuse("audio must be 16-bit PCM (an even number of bytes); this message was dropped")
            return
        if not self.draining:
            assert self.source is not None
            self.source.push(data)

    def _command(self, text: str) -> None:
        from voicechat.errors import VoicechatError

        session, sink = self.session, self.sink
        assert session is not None and sink is not None
        if len(text) > MAX_MESSAGE:
            self.refuse(f"message too long; send at most {MAX_MESSAGE} characters at a time")
            return
        try:
            msg = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError):  # (JSON nested deeper than Python's recursion limit)
            self.refuse('messages must be JSON objects, e.g. {"type": "text", "text": "hello"}')
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self.refuse('messages must be JSON objects with a "type"')
            return
        kind = msg["type"]
        limit = self.state.cfg.serve.max_text_chars
        if kind == "text":
            value = msg.get("text")
            if not isinstance(value, str) or not value.strip():
                self.refuse('a text message needs "text": a non-empty string')
            elif len(value) > limit:
                self.refuse(f"text too long; this server takes up to {limit} characters (serve.max_text_chars)")
            elif self.draining:
                self.refuse("the server is shutting down; send it again after reconnecting")
            elif _waiting_turns(session) >= MAX_WAITING_TURNS:
                self.refuse(f"{MAX_WAITING_TURNS} messages are already waiting for an answer; this one was dropped: send it after a reply")
            else:
                session.send_text(value.strip())
        elif kind in ("command", "clear"):
            line = "/clear" if kind == "clear" else msg.get("line")
            if not isinstance(line, str) or not line.startswith("/"):
                self.refuse('a command message needs "line", e.g. "/clear"')
                return
            if slash.name(line) == "/quit":
                if self.source is not None:
                    self.source.end()
                session.interrupt()
                return
            outcome = session.command(line)
            if outcome.message:
                self.send_json({"type": "notice", "message": outcome.message})
        elif kind == "interrupt":
            played = msg.get("played")
            if _seconds(played):
                sink.confirm(sink.reply, played, True)
            session.interrupt()
        elif kind == "played":
            reply, seconds = msg.get("reply"), msg.get("seconds")
            if isinstance(reply, int) and not isinstance(reply, bool) and _seconds(seconds):
                sink.confirm(reply, seconds, bool(msg.get("done")))
        elif kind == "record":
            session.toggle_recording()
        elif kind == "mode":
            value = msg.get("mode")
            if value not in ("vad", "ptt"):
                self.refuse('a mode message needs "mode": "vad" or "ptt"')
                return
            try:
                session.set_mode(value)
            except VoicechatError as e:
                self.refuse(e.message)
        elif kind == "end":
            assert self.source is not None
            self.source.end()
        else:
            self.refuse("unknown message type; use text, command, clear, interrupt, played, record, mode or end")

    async def drain(self, timeout: float) -> None:
        """SIGTERM: say so, let the turn in progress finish (bounded), then close."""
        self.draining = True
        self.send_json(
            {"type": "closing", "reason": "the server is shutting down; reconnect with this session id to go on", "session": self.public_id}
        )
        deadline = time.monotonic() + timeout
        while self.session is not None and not self.session.idle and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.closed_code = CLOSE_RESTART
        if self.source is not None:
            self.source.end()
        self.closed.set()

    async def _close_session(self) -> None:
        session = self.session
        if session is None:
            return
        session.interrupt()  # the client left (or we close): the model stops writing and synthesis stops
        await self.loop.run_in_executor(None, session.close)
        if not self.closed_code:
            summary = session.summary()
            doc = summary.to_dict()
            doc["session_id"] = await self.loop.run_in_executor(None, self._public, summary.session_id)
            self.send_json(doc)

    async def _finish(self, sender: asyncio.Task, code: int | None, reason: str | None = None) -> None:
        self.out.end()
        try:
            await asyncio.wait_for(sender, timeout=5)  # a client that does not read: its outbox is dropped, not waited for
        except BaseException:
            sender.cancel()
        self.closed.set()
        reason = reason or self.closed_reason or ""
        try:
            await self.ws.close(code or self.closed_code or 1000, reason=reason[:120])
        except Exception:
            pass


class SessionRefused(Exception):
    """?session= names no session this client may resume (whatever the reason: the answer is the same)."""


def _waiting_turns(session: VoiceSession) -> int:
    """Turns delivered to the session and not yet answered."""
    return session.pending


def _seconds(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def voice_endpoint(ws: WebSocket) -> None:
    """Accept, then check: a refused client learns why (an error event and a close code), not just a failed handshake."""
    from voicechat.serve.app import authorized, key_protocol

    state = ws.app.state.server
    offered, protocol_key = key_protocol(ws.headers.get("sec-websocket-protocol"))
    await ws.accept(subprotocol="voicechat" if offered else None)

    async def refuse(code: int, message: str) -> None:
        await ws.send_text(json.dumps({"type": "error", "message": message}))
        await ws.close(code, reason=message[:120])

    if not authorized(state, ws.headers, protocol_key):
        await refuse(
            CLOSE_POLICY, "missing or wrong API key: send 'Authorization: Bearer KEY' or the subprotocol voicechat.key.<base64url key>"
        )
        return
    params = ws.query_params
    resume = params.get("session") or None  # any string: find_public says whether it names a session, and only that
    barge_in = None if params.get("barge_in") is None else params["barge_in"].lower() in ("1", "true", "yes", "on")
    mode = params.get("mode") or None
    if mode not in (None, "vad", "ptt"):
        await refuse(CLOSE_POLICY, "bad query: mode is vad or ptt")
        return
    if not state.ready:
        state.metrics.refused.labels("session").inc()
        await refuse(CLOSE_BUSY, "not ready (loading the models or shutting down); try again shortly")
        return
    conn = VoiceConnection(state, ws)
    conn.holds = (params.get("hold") or "").lower() in ("1", "true", "yes", "on")
    number = state.add_session(conn)
    if number is None:
        state.metrics.refused.labels("session").inc()
        await refuse(CLOSE_BUSY, f"too many voice sessions (serve.max_sessions is {state.cfg.serve.max_sessions}); try again later")
        return
    state.metrics.session_total.inc()
    try:
        await conn.run(resume, barge_in, mode)
    except WebSocketDisconnect:
        pass
    finally:
        state.remove_session(number)
