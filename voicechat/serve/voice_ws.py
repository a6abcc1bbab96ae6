"""The live voice session over a WebSocket: the same :class:`VoiceSession` the terminal runs.

Protocol (README "Voice sessions over a WebSocket" has an example client):
- connect to ``/v1/voice`` (``?session=ID`` resumes a conversation; ``barge_in``, ``mode``);
- the server says ``{"type": "session", ...}`` first, then the session's events exactly as
  ``talk --json`` prints them (status, partial, user, reply_delta, reply, turn_stats, notice, error,
  dropped, summary), and reply audio as ``{"type": "audio", ...}`` followed by one binary message of
  16-bit PCM; ``audio_end`` / ``audio_stop`` close a reply's audio;
- the client streams binary messages of 16 kHz mono 16-bit PCM up, and sends JSON messages:
  ``text``, ``command``, ``clear``, ``interrupt``, ``record`` (push-to-talk), ``played``, ``end``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from voicechat.serve.wsio import ClientSink, PushSource

CLOSE_BUSY = 1013  # try again later
CLOSE_RESTART = 1012  # the server is restarting: reconnect (elsewhere)
CLOSE_POLICY = 1008
CLOSE_NOT_FOUND = 4404
MAX_MESSAGE = 1 << 20  # one message of audio (~30 s) or JSON


class VoiceConnection:
    def __init__(self, state: Any, ws: WebSocket) -> None:
        self.state = state
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.out: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = threading.Event()
        self.session: Any = None
        self.sink: ClientSink | None = None
        self.source: PushSource | None = None
        self.last_heard = time.monotonic()
        self.started = time.monotonic()
        self.draining = False

    # outgoing, from any thread -----------------------------------------------------------------
    def _put(self, item: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            self.out.put_nowait(item)  # in order with what the loop itself queues next
        else:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)

    def send_json(self, doc: dict[str, Any]) -> None:
        if not self.closed.is_set():
            self._put(json.dumps(doc, ensure_ascii=False))

    def _send_audio(self, header: dict[str, Any], pcm: bytes | None) -> None:
        if self.closed.is_set():
            return
        self._put(json.dumps(header))
        if pcm is not None:
            self._put(pcm)

    def _on_event(self, event: Any) -> None:
        from voicechat.voice import events as ev

        self.send_json(event.to_dict())
        if isinstance(event, ev.TurnStats) and event.timing.voice_to_voice is not None:
            self.state.metrics.turns.observe(event.timing.voice_to_voice)

    async def _sender(self) -> None:
        while True:
            item = await self.out.get()
            if item is None:
                return
            if isinstance(item, bytes):
                await self.ws.send_bytes(item)
            else:
                await self.ws.send_text(item)

    # the session -------------------------------------------------------------------------------
    def _open(self, resume: int | None, barge_in: bool | None, mode: str | None) -> Any:
        from voicechat.errors import VoicechatError
        from voicechat.session import ChatSession, engines_info
        from voicechat.voice.session import VoiceSession

        state = self.state
        cfg = copy.deepcopy(state.cfg)
        if barge_in is not None:
            cfg.listen.barge_in = barge_in
        if mode is not None:
            cfg.listen.mode = mode
        if resume is not None:
            if state.history is not None and getattr(state.history, "reason", None):
                raise VoicechatError(f"sessions cannot be resumed: {state.history.reason}")
            if state.history is None or not hasattr(state.history, "session"):
                raise VoicechatError("this server keeps no history (history.enabled is false): sessions cannot be resumed")
            state.history.session(resume)
        chat = ChatSession(cfg, state.llm, kind="talk", log=state.log, resume=resume, history=state.history,
                           engines=engines_info(cfg, state.stt, state.llm, state.tts))
        chat.on_recorded = lambda sid: self.send_json({"type": "session", "id": sid})
        self.source = PushSource(cfg.listen.frame_ms)
        self.sink = ClientSink(self._send_audio, self.closed)
        session = VoiceSession(cfg, conversation=chat, stt=state.stt, tts=state.tts, source=self.source, sink=self.sink,
                               turn_model=state.turn_model, ptt_key=True)
        session.subscribe(self._on_event)
        return session

    async def run(self, resume: int | None, barge_in: bool | None, mode: str | None) -> None:
        from voicechat.errors import VoicechatError

        sender = asyncio.create_task(self._sender())
        try:
            try:
                self.session = await self.loop.run_in_executor(None, self._open, resume, barge_in, mode)
            except VoicechatError as e:
                self.send_json({"type": "error", "message": str(e)})
                code = CLOSE_NOT_FOUND if resume is not None and "no session" in e.message.lower() else CLOSE_POLICY
                await self._finish(sender, code)
                return
            chat = self.session.conversation
            self.send_json({"type": "session", "id": chat.session_id, "resumed_turns": getattr(chat, "resumed_turns", 0),
                            "input": {"sample_rate": 16000, "format": "s16le", "channels": 1},
                            "output": {"sample_rate": getattr(self.state.tts, "sample_rate", None), "format": "s16le"},
                            "mode": self.session.mode, "barge_in": self.session.cfg.listen.barge_in})
            self.session.start()
            await self._receive()
        finally:
            await self._close_session()
            await self._finish(sender, None)

    async def _receive(self) -> None:
        serve = self.state.cfg.serve
        while not self.closed.is_set():
            idle_left = serve.idle_timeout_s - (time.monotonic() - self.last_heard)
            total_left = serve.session_timeout_s - (time.monotonic() - self.started)
            if idle_left <= 0 or total_left <= 0:
                why = "no message for" if idle_left <= 0 else "the session lasted"
                limit = serve.idle_timeout_s if idle_left <= 0 else serve.session_timeout_s
                self.send_json({"type": "error", "message": f"closing: {why} {limit:.0f} s (serve.{'idle' if idle_left <= 0 else 'session'}_timeout_s)"})
                return
            if self.session.done and not self.session.errors and self.source is not None and self.source.exhausted:
                return  # the client said "end" and the last reply is over
            if self.session.errors:
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
            self.send_json({"type": "error", "message": f"an audio message of {len(data)} bytes is too big; send at most {MAX_MESSAGE} at a time"})
            return
        if len(data) % 2:
            self.send_json({"type": "error", "message": "audio must be 16-bit PCM (an even number of bytes); this message was dropped"})
            return
        if not self.draining:
            assert self.source is not None
            self.source.push(data)

    def _command(self, text: str) -> None:
        session, sink = self.session, self.sink
        assert session is not None and sink is not None
        if len(text) > MAX_MESSAGE:
            self.send_json({"type": "error", "message": "message too long"})
            return
        try:
            msg = json.loads(text)
        except ValueError:
            self.send_json({"type": "error", "message": "messages must be JSON objects, e.g. {\"type\": \"text\", \"text\": \"hello\"}"})
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self.send_json({"type": "error", "message": "messages must be JSON objects with a \"type\""})
            return
        kind = msg["type"]
        limit = self.state.cfg.serve.max_text_chars
        if kind == "text":
            value = msg.get("text")
            if not isinstance(value, str) or not value.strip():
                self.send_json({"type": "error", "message": "a text message needs \"text\": a non-empty string"})
            elif len(value) > limit:
                self.send_json({"type": "error", "message": f"text of {len(value)} characters; this server takes up to {limit}"})
            elif self.draining:
                self.send_json({"type": "error", "message": "the server is shutting down; send it again after reconnecting"})
            else:
                session.send_text(value.strip())
        elif kind in ("command", "clear"):
            line = "/clear" if kind == "clear" else msg.get("line")
            if not isinstance(line, str) or not line.startswith("/"):
                self.send_json({"type": "error", "message": "a command message needs \"line\", e.g. \"/clear\""})
                return
            if line.strip().split()[0] in ("/quit", "/exit", "/q"):
                if self.source is not None:
                    self.source.end()
                session.interrupt()
                return
            outcome = session.command(line)
            if outcome.message:
                self.send_json({"type": "notice", "message": outcome.message})
        elif kind == "interrupt":
            played = msg.get("played")
            if isinstance(played, (int, float)) and not isinstance(played, bool):
                sink.confirm(sink.reply, played, True)
            session.interrupt()
        elif kind == "played":
            reply, seconds = msg.get("reply"), msg.get("seconds")
            if isinstance(reply, int) and isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
                sink.confirm(reply, seconds, bool(msg.get("done")))
        elif kind == "record":
            session.toggle_recording()
        elif kind == "mode":
            try:
                session.set_mode(msg.get("mode"))
            except Exception as e:
                self.send_json({"type": "error", "message": str(e)})
        elif kind == "end":
            assert self.source is not None
            self.source.end()
        else:
            self.send_json({"type": "error", "message": f"unknown message type '{kind[:40]}'; use text, command, clear, interrupt, played, record, mode or end"})

    async def drain(self, timeout: float) -> None:
        """SIGTERM: say so, let the turn in progress finish (bounded), then close."""
        self.draining = True
        self.send_json({"type": "closing", "reason": "the server is shutting down; reconnect with this session id to go on",
                        "session": self.session.conversation.session_id if self.session is not None else None})
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
        if not getattr(self, "closed_code", None):
            self.send_json(session.summary().to_dict())

    async def _finish(self, sender: asyncio.Task, code: int | None) -> None:
        self.out.put_nowait(None)
        try:
            await asyncio.wait_for(sender, timeout=5)
        except BaseException:
            sender.cancel()
        self.closed.set()
        try:
            await self.ws.close(code or getattr(self, "closed_code", None) or 1000)
        except Exception:
            pass


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
        await refuse(CLOSE_POLICY, "missing or wrong API key: send 'Authorization: Bearer KEY' or the subprotocol voicechat.key.<base64url key>")
        return
    params = ws.query_params
    try:
        resume = int(params["session"]) if params.get("session") else None
        barge_in = None if params.get("barge_in") is None else params["barge_in"].lower() in ("1", "true", "yes", "on")
        mode = params.get("mode") or None
        if mode not in (None, "vad", "ptt"):
            raise ValueError("mode")
    except ValueError:
        await refuse(CLOSE_POLICY, "bad query: session is a number, mode is vad or ptt")
        return
    if not state.ready:
        state.metrics.refused.labels("session").inc()
        await refuse(CLOSE_BUSY, "not ready (loading the models or shutting down); try again shortly")
        return
    conn = VoiceConnection(state, ws)
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
