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
import time
from collections.abc import Iterator
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
MAX_QUEUED_S = 8  # server_vad: audio received and not yet heard by the listener (its source keeps 10 s)


class RealtimeSink(ClientSink):
    """Reply audio as the API sends it: as fast as it is made, the client plays (and reports a cut with
    ``conversation.item.truncate``). Text-only responses make it silent.

    A stopped reply does not wait for that report: the API's clients truncate when they like (or never), and the
    turn's record is amended when they do (RealtimeConnection._truncate). Waiting held the cancelled response.done,
    and the answer to the speech that stopped it, for a second after every barge-in."""

    confirm_wait_s = 0.0

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


class Voiced:
    """A voice engine speaking at a response's speed where it can (``changes_speed``); the rest is the engine's."""

    def __init__(self, engine: Any, speed: float) -> None:
        self.engine, self.speed = engine, speed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def synthesize(self, text: str, *, speed: float | None = None) -> Any:
        if self.speed != 1.0 and self.engine.changes_speed:
            return self.engine.synthesize(text, speed=self.speed)
        return self.engine.synthesize(text)


class Limited:
    """The conversation's chat model with the response's max_output_tokens: past ``limit`` pieces the model's stream
    is closed (it stops writing) and ``cut`` says so. The rest is the model's."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.limit: int | None = None
        self.cut = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)

    def stream(self, messages: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        from voicechat.engines.base import TextDelta, Usage

        gen = self.llm.stream(messages, *args, **kwargs)
        written = 0
        try:
            for item in gen:
                if isinstance(item, TextDelta):
                    if self.limit is not None and written >= self.limit:
                        self.cut = True
                        break
                    written += 1
                yield item
        finally:
            gen.close()  # (first: a local model holds its lock until its stream is closed)
        if self.cut:
            prompt = sum(self.llm.count_tokens(m.content) for m in messages)
            yield Usage(prompt_tokens=prompt, completion_tokens=written, estimated=True)


class RealtimeConnection(VoiceConnection):
    initial: dict[str, Any] | None = None  # a session configuration to start with (client_secrets)

    def __init__(self, state: Any, ws: WebSocket, model: str, kind: str = "realtime") -> None:
        super().__init__(state, ws)
        voice = state.tts.model_name if state.tts is not None else "none"
        self.settings = rt.Settings(
            model=model, voice=voice, instructions=state.cfg.llm.system_prompt, silence_ms=state.cfg.listen.end_silence_ms
        )
        self.settings.kind = kind
        if state.tts is not None:  # the voices a session may ask for, and whether speed can change
            self.settings.own_voice = voice
            self.settings.voices = tuple(state.tts.installed_voices())
            self.settings.changes_speed = bool(state.tts.changes_speed)
        self.translator = rt.Translator(self.settings)
        self.session_id = rt.new_id("sess")
        self._lock = threading.Lock()  # events from the session's threads and from the receive loop, in order
        self._in: Any = None  # the input audio's resampler to 16 kHz (and the rate it takes)
        self._in_rate = 0
        self._buffer: list[bytes] = []  # turn_detection none: 16 kHz audio appended since the last commit
        self._buffered = 0  # its bytes
        self._reply_of: dict[str, int] = {}  # assistant item id -> the sink's reply number (items with audio)
        self._deferred: rt.ResponseOptions | None = None  # a response.create waiting for the transcript it answers
        self._idle = rt.IdleTimer()
        self._saved_rounds: list[tuple[str, str]] | None = None  # the conversation, while a response with its own input runs
        self._skip_record = False  # the response being answered is out of band: not recorded
        self._recorded: str | None = None  # the assistant item the history's last turn holds
        self._answering: str | None = None  # the assistant item of the response being answered (recorded next)
        self._cuts: dict[str, str] = {}  # truncated between response.done and its record: the words heard
        self._recording = threading.Lock()  # a truncate and the record of the reply it cuts: one, then the other
        self._limited: Limited | None = None
        self._barge: Any = None  # the session's own barge-in (speech over a reply stops it)

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

        session = self.session
        assert session is not None and isinstance(self.sink, RealtimeSink)
        ending = self.translator.response
        if isinstance(event, ev.TurnStats) and ending is not None and self._limited is not None and self._limited.cut:
            ending.cut = "max_output_tokens"
        with self._lock:
            self._emit(self.translator.translate(event))
            response = self.translator.response
        memory = session.conversation.memory
        if isinstance(event, (ev.Speech, ev.UserText)):
            self._idle.disarm()
        if isinstance(event, ev.UserText):  # (on the responder's thread, before it answers or not)
            session.responder.answers = response is not None
            if response is not None:
                self._begin(response)
            elif self.settings.kind == "realtime" and event.source == "voice":  # held (by the translator) for response.create
                self._start_deferred()
        elif isinstance(event, (ev.TurnStats, ev.Error, ev.Dropped)):
            memory.system_prompt = self.settings.instructions  # a response's own instructions were for it alone
            if self._saved_rounds is not None:  # and its own input too
                memory.rounds, self._saved_rounds = self._saved_rounds, None
            if isinstance(event, ev.Dropped):
                self._start_deferred()
        if isinstance(event, ev.TurnStats):
            if self.settings.idle_timeout_ms and self.settings.turn_detection and ending is not None:
                self._idle.arm(time.monotonic(), ending.audio_ms / 1000, self.settings.idle_timeout_ms, self.translator.audio_ms)
            if event.timing.voice_to_voice is not None:
                self.state.metrics.turns.observe(event.timing.voice_to_voice)

    def _begin(self, response: rt._Response) -> None:
        """A response starts (on the responder's thread): its modality, instructions, voice, speed, context and limit."""
        session = self.session
        assert session is not None and isinstance(self.sink, RealtimeSink)
        opts, settings = response.options, self.settings
        memory = session.conversation.memory
        self.sink.speaks = response.modality == "audio"
        memory.system_prompt = response.instructions if response.instructions is not None else settings.instructions
        if opts.context is not None:
            self._saved_rounds, memory.rounds = memory.rounds, list(opts.context)
        self._skip_record = opts.out_of_band
        self._answering = response.item_id
        if self._limited is not None:
            self._limited.limit = opts.max_output_tokens if opts.has_max_tokens else settings.max_output_tokens
            self._limited.cut = False
        if response.modality == "audio" and self.state.tts is not None:
            session.speech.tts = self._voice(opts.voice or settings.voice, opts.speed if opts.speed is not None else settings.speed)  # type: ignore[assignment]

    def _voice(self, name: str, speed: float) -> Voiced:
        """The engine for a voice name (loaded on first use, as /v1/audio/speech does), at ``speed``."""
        voices = getattr(self.ws.app.state, "voices", None)
        engine = self.state.tts
        if voices is not None and name != self.settings.own_voice:
            choice = voices.choose(name)
            if choice.notice:
                log.warning("realtime session: %s", choice.notice)
            engine = choice.engine
        return Voiced(engine, speed)

    def _start_deferred(self) -> None:
        opts, self._deferred = self._deferred, None
        if opts is not None:
            self._start(opts, None)

    def _start(self, opts: rt.ResponseOptions, question: str | None) -> None:
        """A response to the held items (or to ``question``, a response's own input), answered by the session."""
        session = self.session
        assert session is not None
        with self._lock:
            if question is None:
                question = "\n".join(self.translator.announced)
                self.translator.announced.clear()
            self.translator.requested.append(opts)
        self._idle.disarm()
        session.send_text(question)

    def _record(self, record: Any) -> Any:
        """The conversation's record(), skipping out-of-band responses (answered, not kept)."""

        def wrapped(user_text: str, reply: str, *args: Any, **kwargs: Any) -> None:
            if self._skip_record:
                self._skip_record = False
                return
            with self._recording:  # (a truncate that found the reply not yet recorded has left its words here)
                heard = self._cuts.pop(self._answering or "", None)  # truncated before it was recorded
                if heard is not None:
                    reply, kwargs["interrupted"] = heard, True
                record(user_text, reply, *args, **kwargs)
                self._recorded, self._answering = self._answering, None
                self._cuts.clear()

        return wrapped

    async def _idle_loop(self) -> None:
        """idle_timeout_ms: no speech that long after a reply's audio ended -> timeout_triggered and a response."""
        import asyncio

        while not self.closed.is_set():
            await asyncio.sleep(0.1)
            session = self.session
            if not self._idle.due(time.monotonic()) or session is None or self.draining:
                continue
            if not session.idle or self.translator.response is not None or self.translator.speech_item is not None:
                continue
            with self._lock:
                self._emit(self.translator.timeout_triggered(self._idle.start_ms))
            self._start(rt.ResponseOptions(), "")

    def _barged_in(self) -> None:
        """Speech over a reply: announced always; it stops the reply unless interrupt_response is false."""
        from voicechat.voice import events as ev

        if self.settings.interrupt_response:
            self._barge()
        elif self.session is not None:
            self.session.emit(ev.Speech("started"))

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

    async def drain(self, timeout: float) -> None:
        """SIGTERM: the response in progress may finish (bounded), then the close (1012) says why."""
        self.closed_reason = "the server is shutting down; reconnect to go on"
        await super().drain(timeout)

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
            self.session.drafts = False  # (each response begins with its own settings once its turn is read: _on_event)
            realtime_tools.attach(self)  # function calling, item retrieve/delete, the beta dialect (realtime_tools.py)
            chat = self.session.conversation
            self._limited = Limited(chat.llm)
            chat.llm = self._limited  # type: ignore[assignment]
            chat.record = self._record(chat.record)  # type: ignore[method-assign]
            listener = self.session.listener
            if listener is not None:
                self._barge, listener.on_barge_in = listener.on_barge_in, self._barged_in
            if isinstance(self.session.policy, MeaningPolicy):  # the normal silence a turn ends after, as server_vad says it
                self.settings.silence_ms = self.session.cfg.turn.end_ms
            self._emit([{"type": "session.created", "session": self.settings.to_dict(self.session_id)}])
            if self.initial is not None:  # the config a WebRTC call or an ephemeral key came with (realtime_webrtc)
                self._session_update({"session": self.initial}, None)
            self.session.start()
            idle = asyncio.create_task(self._idle_loop())
            try:
                await self._receive()
            finally:
                idle.cancel()
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
        except (ValueError, RecursionError):  # (nesting deeper than Python's recursion limit)
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
        refusal = _language_refusal(msg.get("session"), getattr(self.state.stt, "languages", None))
        if refusal is not None:  # (else the first spoken turn fails and the session closes)
            self.refuse(refusal, param="session.audio.input.transcription.language", event_id=event_id)
            return
        try:
            notices = rt.apply_update(self.settings, msg.get("session"))
        except rt.UpdateRefused as e:
            self.refuse(str(e), param=e.param, event_id=event_id)
            return
        for notice in notices:
            log.warning("realtime session: %s", notice)
        if session.transcriber is not None:  # input transcription's language and prompt (any model name: the loaded STT)
            session.transcriber.language = self.settings.language or cfg_language(session)
            session.transcriber.stt = Prompted(self.state.stt, self.settings.prompt)  # type: ignore[assignment]
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
        if self.settings.turn_detection and _queued_s(self.source) + len(samples) / rate > MAX_QUEUED_S:
            self.refuse(  # (nothing of it is kept: the client may send it again, in real time)
                f"more than {MAX_QUEUED_S} s of audio is waiting to be heard; send audio in real time",
                event_id=event_id,
                code="input_audio_buffer_full",
            )
            return
        with self._lock:
            self.translator.audio_ms += len(samples) / rate * 1000
        out = np.asarray(self._in.resample_chunk(samples), dtype="<i2").tobytes()
        if self.settings.turn_detection:
            assert self.source is not None
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
            return
        if session.pending >= MAX_WAITING_TURNS or self._deferred is not None:
            self.refuse(
                f"{MAX_WAITING_TURNS} responses are already waiting", event_id=event_id, code="conversation_already_has_active_response"
            )
            return
        try:
            opts = rt.response_options(msg.get("response"))
        except rt.UpdateRefused as e:
            self.refuse(str(e), param=e.param, event_id=event_id)
            return
        if opts.input is not None:  # this response's own context, not the conversation's
            with self._lock:
                items = self.translator.resolve(opts.input)
            if items is None:
                self.refuse(
                    "an item_reference in input names no item of this session (only recent ones are kept)", "response.input", event_id
                )
                return
            opts.context, question = rt.context_of(items)
            self._start(opts, question)
            return
        with self._lock:  # a turn server_vad ended, still being transcribed: the response answers it once it is read
            waiting = not self.translator.announced and bool(self.translator.committed) and not self.translator.answers_voice()
            if waiting:
                self._deferred = opts
        if not waiting:
            self._start(opts, None)  # the new items, or none (a greeting from the instructions, the conversation so far)

    def _response_cancel(self, msg: dict[str, Any], event_id: str | None) -> None:
        assert self.session is not None
        if self.translator.response is None:
            self.refuse("no response is in progress", event_id=event_id, code="response_cancel_not_active")
            return
        self.session.interrupt()

    def _amend(self, heard: str) -> None:
        """The history's row of the last turn keeps the part of the reply that was heard (off the event loop)."""
        from voicechat.conversation.history import History

        chat = self.session.conversation if self.session is not None else None
        history = chat.turnlog.history if chat is not None else None
        if chat is None or chat.session_id is None or not isinstance(history, History):
            return  # no history, or turns going to a recovery file: the memory alone is cut
        try:
            history.amend_last_reply(chat.session_id, heard)
        except Exception as e:  # the turn stays as it was recorded; the conversation goes on
            log.warning("realtime session: could not amend the last reply in the history: %s", e)

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
            self._emit([{"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end_ms}])
            return
        with self._recording:  # (else the record may come between the check and the cut, and keep the whole reply)
            self._cut(item_id, reply, seconds)
        self._emit([{"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end_ms}])

    def _cut(self, item_id: str, reply: int, seconds: float) -> None:
        """A finished reply was heard only ``seconds`` long: keep only that, in its record or in the one to come."""
        session, sink = self.session, self.sink
        assert session is not None and isinstance(sink, RealtimeSink)
        if item_id == self._answering:  # done, not yet recorded: recorded as heard
            heard = sink.heard(reply, seconds)
            if heard is not None:
                self._cuts[item_id] = heard
        elif item_id == self._recorded:  # already recorded: the memory and the history keep only what was heard
            heard = sink.heard(reply, seconds)
            rounds = session.conversation.memory.rounds
            if heard is not None and rounds:
                question, said = rounds[-1]
                rounds[-1] = (question, heard)
                if not heard.strip():
                    rounds.pop()
                log.debug("realtime session: truncated the last reply from %d to %d characters", len(said), len(heard))
                self.loop.run_in_executor(None, self._amend, heard)


def _queued_s(source: Any) -> float:
    """Seconds of audio a PushSource holds that the listener has not read yet."""
    frames = getattr(source, "_frames", None)
    return frames.qsize() * source.frame_ms / 1000 if frames is not None else 0.0


def cfg_language(session: VoiceSession) -> str | None:
    return session.cfg.stt.language


class Prompted:
    """The STT with the session's transcription prompt before the words of the turn so far."""

    def __init__(self, stt: Any, prompt: str) -> None:
        self.stt, self.prompt = stt, prompt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stt, name)

    def transcribe_turn(self, audio: Any, *, prompt: str | None = None, **kwargs: Any) -> str:
        joined = f"{self.prompt} {prompt or ''}".strip() if self.prompt else prompt
        return str(self.stt.transcribe_turn(audio, prompt=joined or None, **kwargs))


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
    if ws.query_params.get("call_id") is not None:  # joining a WebRTC call (realtime_webrtc)
        from voicechat.serve.realtime_webrtc import sideband

        await sideband(ws, ws.query_params["call_id"], grant)
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


def _language_refusal(session: Any, known: Any) -> str | None:
    """Why a session.update's transcription language cannot be heard by the loaded model (an English-only one), if so."""
    try:
        asked = session["audio"]["input"]["transcription"]["language"]
    except (KeyError, TypeError):
        return None
    if not isinstance(asked, str) or not isinstance(known, list) or not known:
        return None
    code = asked.strip().replace("_", "-").split("-")[0].lower()
    if code in ("", "auto") or code in known:
        return None
    shown = ", ".join(known) if len(known) <= 5 else f"{len(known)} languages"
    return f"the transcription model here understands {shown}; not '{asked[:20]}'"
