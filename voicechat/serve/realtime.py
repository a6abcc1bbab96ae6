"""``/v1/realtime``: OpenAI's Realtime API (GA, over a WebSocket) on the same :class:`VoiceSession` as ``/v1/voice``.

The official SDK connects with ``OpenAI(base_url=SERVER + "/v1").realtime.connect(model=...)``: it opens
``ws://SERVER/v1/realtime?model=...`` with ``Authorization: Bearer KEY``; browsers offer the subprotocols
``realtime`` and ``openai-insecure-api-key.KEY`` instead. Host and Origin are checked before the upgrade
as on every WebSocket (:class:`voicechat.serve.app.Guard`); the key, the session limits, the outbox
bounds, the idle and session timeouts and the shutdown drain are :class:`VoiceConnection`'s own.

Only the protocol differs: JSON events in (:meth:`RealtimeConnection._command`), and the session's
typed events out through :class:`voicechat.serve.realtime_events.Translator`. Audio in is base64 PCM16
at 24 kHz, resampled to the listener's 16 kHz; reply audio is resampled from the voice's rate to 24 kHz.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from voicechat.serve import g711, realtime_tools
from voicechat.serve import realtime_events as rt
from voicechat.serve.voice_ws import CLOSE_BUSY, CLOSE_POLICY, MAX_MESSAGE, MAX_WAITING_TURNS, VoiceConnection, _no_constant
from voicechat.serve.wsio import ClientSink

if TYPE_CHECKING:
    from voicechat.voice.session import VoiceSession

log = logging.getLogger("voicechat.serve")
MAX_TEXT_ITEMS = 16  # typed items waiting for response.create
AUDIO_PIECE_S = 0.2  # reply audio per response.output_audio.delta
MAX_BUFFER_S = 120  # turn_detection none: audio waiting for a commit


class RealtimeSink(ClientSink):
    """Reply audio as the API sends it: as fast as it is made, the client plays (and reports a cut with
    ``conversation.item.truncate``). Text-only responses make it silent."""

    def __init__(self, send: Any, closed: threading.Event) -> None:
        super().__init__(send, closed)
        self.speaks = True  # False while the session's output modality is text

    def drain(self) -> None:
        pass  # the reply is over once it is sent; the client says what it played

    def heard(self, reply: int, seconds: float) -> str | None:
        """The text of the first ``seconds`` of reply ``reply`` if it is the latest one (else None)."""
        from voicechat.serve.wsio import _heard

        with self._lock:
            return _heard(list(self._sent), seconds) if reply == self.reply else None


class RealtimeConnection(VoiceConnection):
    initial: dict[str, Any] | None = None  # a session configuration to start with (client_secrets)

    def __init__(self, state: Any, ws: WebSocket, model: str, kind: str = "realtime") -> None:
        super().__init__(state, ws)
        voice = state.tts.model_name if state.tts is not None else "none"
        self.settings = rt.Settings(
            model=model, voice=voice, instructions=state.cfg.llm.system_prompt, silence_ms=state.cfg.listen.end_silence_ms
        )
        self.settings.kind = kind
        self.translator = rt.Translator(self.settings)
        self.session_id = rt.new_id("sess")
        self._lock = threading.Lock()  # events from the session's threads and from the receive loop, in order
        self._in: Any = None  # the input audio's resampler to 16 kHz (and the rate it takes)
        self._in_rate = 0
        self._buffer: list[bytes] = []  # turn_detection none: 16 kHz audio appended since the last commit
        self._buffered = 0  # its bytes
        self._reply_of: dict[str, int] = {}  # assistant item id -> the sink's reply number (items with audio)

    # outgoing ------------------------------------------------------------------------------------
    def send_json(self, doc: dict[str, Any]) -> None:
        """VoiceConnection's own messages, as realtime events: its errors become ``error``; the rest is /v1/voice's."""
        kind = doc.get("type")
        if kind == "error" and "error" not in doc:
            doc = rt.error_event(str(doc.get("message", "")), kind="server_error")
        elif kind in ("session", "summary", "closing", "notice", "audio", "audio_end", "audio_stop"):
            return
        self._emit([doc])

    def _emit(self, docs: list[dict[str, Any]]) -> None:
        if self.closed.is_set():
            return
        docs = realtime_tools.outgoing(self, docs)  # function calls, the items kept, the beta dialect (realtime_tools.py)
        for doc in docs:
            self._put(json.dumps(rt.stamp(doc), ensure_ascii=False))

    def refuse(self, message: str, param: str | None = None, event_id: str | None = None, code: str | None = None) -> None:
        self.refused += 1
        self._emit([rt.error_event(message, param=param, event_id=event_id, code=code)])

    def _on_event(self, event: Any) -> None:
        from voicechat.voice import events as ev

        with self._lock:
            self._emit(self.translator.translate(event))
            response = self.translator.response
        assert self.session is not None and isinstance(self.sink, RealtimeSink)
        memory = self.session.conversation.memory
        if isinstance(event, ev.UserText) and response is not None:  # (on the responder's thread, before the reply)
            self.sink.speaks = response.modality == "audio"
            memory.system_prompt = response.instructions if response.instructions is not None else self.settings.instructions
        elif isinstance(event, (ev.TurnStats, ev.Error, ev.Dropped)):
            memory.system_prompt = self.settings.instructions  # a response's own instructions were for it alone
        if isinstance(event, ev.TurnStats) and event.timing.voice_to_voice is not None:
            self.state.metrics.turns.observe(event.timing.voice_to_voice)

    def _send_audio(self, header: dict[str, Any], pcm: bytes | None) -> None:
        if pcm is None or header.get("type") != "audio":
            return
        kind = self.settings.output_format
        rate, target = int(header["sample_rate"]), rt.RATE if kind == "audio/pcm" else g711.RATE
        samples = np.frombuffer(pcm, dtype="<i2")
        if rate != target:
            import soxr

            samples = soxr.resample(samples, rate, target)
        piece = int(target * AUDIO_PIECE_S)  # samples per delta, as the API streams them (a client starts playing sooner)
        with self._lock:
            if self.translator.response is not None:
                self._reply_of[self.translator.response.item_id] = int(header["reply"])
                while len(self._reply_of) > MAX_TEXT_ITEMS:  # only recent replies can be truncated
                    self._reply_of.pop(next(iter(self._reply_of)))
            for start in range(0, len(samples), piece):
                part = samples[start : start + piece]
                data = g711.ENCODERS[kind](part) if kind in g711.ENCODERS else part.astype("<i2").tobytes()
                self._emit(self.translator.audio(data, len(part) / target * 1000))

    # the session ---------------------------------------------------------------------------------
    def _new_sink(self) -> ClientSink:
        return RealtimeSink(self._send_audio, self.closed)

    def _open(self, public_id: str | None, barge_in: bool | None, mode: str | None) -> VoiceSession:
        return super()._open(None, True, "vad")  # a realtime session starts listening, and speech over a reply stops it

    async def run(self, resume: str | None, barge_in: bool | None, mode: str | None) -> None:
        import asyncio

        from voicechat.errors import VoicechatError

        sender = asyncio.create_task(self._sender())
        try:
            try:
                self.session = await self.loop.run_in_executor(None, self._open, None, None, None)
            except VoicechatError as e:
                self._emit([rt.error_event(str(e), kind="server_error")])
                await self._finish(sender, CLOSE_POLICY, str(e))
                return
            from voicechat.voice.endpoint import MeaningPolicy

            self.session.responder.answers = self.settings.kind == "realtime"
            realtime_tools.attach(self)  # function calling, item retrieve/delete, the beta dialect (realtime_tools.py)
            if isinstance(self.session.policy, MeaningPolicy):  # the normal silence a turn ends after, as server_vad says it
                self.settings.silence_ms = self.session.cfg.turn.end_ms
            self._emit([{"type": "session.created", "session": self.settings.to_dict(self.session_id)}])
            if self.initial is not None:  # the config a WebRTC call or an ephemeral key came with (realtime_webrtc)
                self._session_update({"session": self.initial}, None)
            self.session.start()
            await self._receive()
        finally:
            await self._close_session()
            await self._finish(sender, None)

    # incoming ------------------------------------------------------------------------------------
    def _audio(self, data: bytes) -> None:
        self.refuse("binary messages are not part of the Realtime API; send input_audio_buffer.append events")

    def _command(self, text: str) -> None:
        if len(text) > MAX_MESSAGE:
            self.refuse(f"event too large; send at most {MAX_MESSAGE} characters at a time")
            return
        try:
            msg = json.loads(text, parse_constant=_no_constant)
        except ValueError:
            self.refuse("events must be JSON objects with a 'type'")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self.refuse("events must be JSON objects with a 'type'")
            return
        event_id = msg.get("event_id") if isinstance(msg.get("event_id"), str) else None
        handler = HANDLERS.get(msg["type"])
        if handler is None:
            self.refuse(
                f"unknown or unsupported event type '{str(msg['type'])[:60]}'", param="type", event_id=event_id, code="unknown_event"
            )
            return
        handler(self, msg, event_id)

    def _session_update(self, msg: dict[str, Any], event_id: str | None) -> None:
        session, chat = self.session, self.session.conversation if self.session else None
        assert session is not None and chat is not None
        try:
            notices = rt.apply_update(self.settings, msg.get("session"))
        except rt.UpdateRefused as e:
            self.refuse(str(e), param=e.param, event_id=event_id)
            return
        for notice in notices:
            log.info("realtime session: %s", notice)
        if self.translator.response is None:  # (a response in progress keeps its own until it ends)
            chat.memory.system_prompt = self.settings.instructions
        cfg = session.cfg
        rt.tune_policy(session.policy, cfg.turn, cfg.listen.end_silence_ms, self.settings)
        mode = "vad" if self.settings.turn_detection else "ptt"
        if session.mode != mode:
            session.set_mode(mode)
        self._emit([{"type": "session.updated", "session": self.settings.to_dict(self.session_id)}])

    def _append(self, msg: dict[str, Any], event_id: str | None) -> None:
        audio = msg.get("audio")
        if not isinstance(audio, str):
            self.refuse("input_audio_buffer.append needs 'audio': base64 PCM16", param="audio", event_id=event_id)
            return
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            self.refuse("'audio' is not valid base64", param="audio", event_id=event_id)
            return
        kind = self.settings.input_format
        if kind == "audio/pcm" and len(pcm) % 2:
            self.refuse("'audio' must be 16-bit PCM (an even number of bytes)", param="audio", event_id=event_id)
            return
        if self.draining or self.source is None:
            return
        samples = g711.DECODERS[kind](pcm) if kind in g711.DECODERS else np.frombuffer(pcm, dtype="<i2")
        self._feed(samples, g711.RATE if kind in g711.DECODERS else rt.RATE, event_id)

    def _feed(self, samples: np.ndarray, rate: int, event_id: str | None = None) -> None:
        """Input audio, int16 mono at ``rate``: appended events and a WebRTC call's track (realtime_webrtc) alike."""
        if self.source is None:
            return
        if self._in is None or self._in_rate != rate:
            import soxr

            self._in, self._in_rate = soxr.ResampleStream(rate, 16000, 1, dtype="int16"), rate
        with self._lock:
            self.translator.audio_ms += len(samples) / rate * 1000
        out = np.asarray(self._in.resample_chunk(samples), dtype="<i2").tobytes()
        if self.settings.turn_detection:
            self.source.push(out)  # the listener's VAD and turn policy decide where the turn ends
            return
        if self._buffered + len(out) > MAX_BUFFER_S * 16000 * 2:
            self.refuse(
                f"the input audio buffer holds at most {MAX_BUFFER_S} s; commit or clear it",
                event_id=event_id,
                code="input_audio_buffer_full",
            )
            return
        if not self._buffer:
            with self._lock:
                self.translator.speech_item = rt.new_id("item")
                self.translator.speech_ms = (self.translator.audio_ms, self.translator.audio_ms)
        self._buffer.append(out)
        self._buffered += len(out)

    def _commit(self, msg: dict[str, Any], event_id: str | None) -> None:
        session = self.session
        assert session is not None
        if self.settings.turn_detection:
            self.refuse(
                "with server_vad the server commits at the end of speech; set turn_detection to null to commit yourself", event_id=event_id
            )
            return
        if not self._buffer:
            self.refuse("the input audio buffer is empty", event_id=event_id, code="input_audio_buffer_commit_empty")
            return
        if session.pending >= MAX_WAITING_TURNS:
            self.refuse(
                f"{MAX_WAITING_TURNS} turns are already waiting for an answer",
                event_id=event_id,
                code="conversation_already_has_active_response",
            )
            return
        audio = np.frombuffer(b"".join(self._buffer), dtype="<i2").astype(np.float32) / 32768.0
        self._buffer, self._buffered = [], 0
        with self._lock:
            self._emit(self.translator.commit())
        session.send_audio(audio)

    def _clear(self, msg: dict[str, Any], event_id: str | None) -> None:
        self._buffer, self._buffered = [], 0
        with self._lock:
            self.translator.speech_item = None
        self._emit([{"type": "input_audio_buffer.cleared"}])

    def _item_create(self, msg: dict[str, Any], event_id: str | None) -> None:
        if self.settings.kind == "transcription":
            self.refuse("a transcription session takes audio only; connect without ?intent=transcription to converse", event_id=event_id)
            return
        item = msg.get("item")
        text = _user_text(item)
        limit = self.state.cfg.serve.max_text_chars
        if text is None:
            self.refuse("this server takes user message items with input_text content only (for now)", param="item", event_id=event_id)
        elif len(text) > limit:
            self.refuse(
                f"text too long; this server takes up to {limit} characters (serve.max_text_chars)", param="item", event_id=event_id
            )
        elif len(self.translator.announced) >= MAX_TEXT_ITEMS:
            self.refuse(f"{MAX_TEXT_ITEMS} items are waiting for response.create; send one", event_id=event_id)
        else:
            assert isinstance(item, dict)
            item_id = item.get("id") if isinstance(item.get("id"), str) else rt.new_id("item")
            with self._lock:
                self._emit(self.translator.user_text_item(str(item_id)[:64], text))
                self.translator.announced.append(text)

    def _response_create(self, msg: dict[str, Any], event_id: str | None) -> None:
        if self.settings.kind == "transcription":
            self.refuse("a transcription session takes audio only; connect without ?intent=transcription to converse", event_id=event_id)
            return
        session = self.session
        assert session is not None
        if self.draining:
            self.refuse("the server is shutting down", event_id=event_id)
        elif not self.translator.announced:
            self.refuse("response.create needs a new user item first (conversation.item.create)", event_id=event_id, code="no_new_item")
        elif session.pending >= MAX_WAITING_TURNS:
            self.refuse(
                f"{MAX_WAITING_TURNS} responses are already waiting", event_id=event_id, code="conversation_already_has_active_response"
            )
        else:
            try:
                opts = rt.response_options(msg.get("response"))
            except rt.UpdateRefused as e:
                self.refuse(str(e), param=e.param, event_id=event_id)
                return
            with self._lock:
                text = "\n".join(self.translator.announced)
                self.translator.announced.clear()
                self.translator.requested.append(opts)
            session.send_text(text)

    def _response_cancel(self, msg: dict[str, Any], event_id: str | None) -> None:
        assert self.session is not None
        if self.translator.response is None:
            self.refuse("no response is in progress", event_id=event_id, code="response_cancel_not_active")
            return
        self.session.interrupt()

    def _truncate(self, msg: dict[str, Any], event_id: str | None) -> None:
        """The client played only ``audio_end_ms`` of an assistant item: the conversation keeps only what was heard."""
        session, sink = self.session, self.sink
        assert session is not None and isinstance(sink, RealtimeSink)
        item_id, index, end_ms = msg.get("item_id"), msg.get("content_index", 0), msg.get("audio_end_ms")
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            self.refuse("conversation.item.truncate needs 'audio_end_ms': an integer >= 0", param="audio_end_ms", event_id=event_id)
            return
        if index != 0:
            self.refuse("assistant items here have one content part: content_index 0", param="content_index", event_id=event_id)
            return
        reply = self._reply_of.get(item_id) if isinstance(item_id, str) else None
        if reply is None:
            self.refuse("no assistant item with audio has this id (only recent ones can be truncated)", param="item_id", event_id=event_id)
            return
        assert isinstance(item_id, str)
        seconds = end_ms / 1000
        live = self.translator.response is not None and self.translator.response.item_id == item_id
        sink.confirm(reply, seconds, True)  # a reply still being answered: the session records what was heard
        if live:
            session.interrupt()
        else:  # already recorded: the model's memory of it keeps only what was heard
            heard = sink.heard(reply, seconds)
            rounds = session.conversation.memory.rounds
            if heard is not None and rounds:
                question, said = rounds[-1]
                rounds[-1] = (question, heard)
                if not heard.strip():
                    rounds.pop()
                log.debug("realtime session: truncated the last reply from %d to %d characters", len(said), len(heard))
        self._emit([{"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end_ms}])


def _user_text(item: Any) -> str | None:
    if not isinstance(item, dict) or item.get("type") != "message" or item.get("role", "user") != "user":
        return None
    content = item.get("content")
    if not isinstance(content, list) or not content:
        return None
    texts = [c.get("text") for c in content if isinstance(c, dict) and c.get("type") == "input_text"]
    if len(texts) != len(content) or not all(isinstance(t, str) for t in texts):
        return None
    joined = "\n".join(t for t in texts if t).strip()
    return joined or None


HANDLERS = {
    "session.update": RealtimeConnection._session_update,
    "input_audio_buffer.append": RealtimeConnection._append,
    "input_audio_buffer.commit": RealtimeConnection._commit,
    "input_audio_buffer.clear": RealtimeConnection._clear,
    "conversation.item.create": RealtimeConnection._item_create,
    "response.create": RealtimeConnection._response_create,
    "response.cancel": RealtimeConnection._response_cancel,
    "conversation.item.truncate": RealtimeConnection._truncate,
}
HANDLERS.update(realtime_tools.handlers(HANDLERS))  # tools, item retrieve/delete, beta shapes (realtime_tools.py)


def realtime_key(header: str | None) -> tuple[bool, str | None]:
    """Subprotocols a browser offers: ("realtime", "openai-insecure-api-key.KEY") -> (offered, key)."""
    offered, key = False, None
    for item in (header or "").split(","):
        item = item.strip()
        if item == "realtime":
            offered = True
        elif item.startswith("openai-insecure-api-key."):
            key = item[len("openai-insecure-api-key.") :]
    return offered, key


async def realtime_endpoint(ws: WebSocket) -> None:
    """Accept, then check, as /v1/voice does: a refused client gets an ``error`` event and a close code.

    (``WebSocket`` is imported at run time: FastAPI reads the annotation to inject the socket.)"""
    from voicechat.serve.realtime_webrtc import access

    state = ws.app.state.server
    offered, key = realtime_key(ws.headers.get("sec-websocket-protocol"))
    await ws.accept(subprotocol="realtime" if offered else None)

    async def refuse(code: int, message: str, kind: str = "invalid_request_error") -> None:
        await ws.send_text(json.dumps(rt.error_event(message, kind=kind)))
        await ws.close(code, reason=message[:120])

    allowed, grant = access(state, ws.app, ws.headers, key)  # the server's key, or a live ephemeral key (client_secrets)
    if not allowed:
        await refuse(
            CLOSE_POLICY, "missing or wrong API key: send 'Authorization: Bearer KEY' or the subprotocol openai-insecure-api-key.KEY"
        )
        return
    if not state.ready:
        state.metrics.refused.labels("session").inc()
        await refuse(CLOSE_BUSY, "not ready (loading the models or shutting down); try again shortly", "server_error")
        return
    model = ws.query_params.get("model") or "voicechat"
    intent = ws.query_params.get("intent") or "realtime"
    if intent not in ("realtime", "transcription"):
        await refuse(CLOSE_POLICY, "bad query: intent is transcription (or absent)")
        return
    conn = RealtimeConnection(state, ws, model[:100], intent)
    conn.initial = grant.start if grant is not None else None
    number = state.add_session(conn)
    if number is None:
        state.metrics.refused.labels("session").inc()
        await refuse(
            CLOSE_BUSY, f"too many voice sessions (serve.max_sessions is {state.cfg.serve.max_sessions}); try again later", "server_error"
        )
        return
    state.metrics.session_total.inc()
    try:
        await conn.run(None, None, None)
    except WebSocketDisconnect:
        pass
    finally:
        state.remove_session(number)
