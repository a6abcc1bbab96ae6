"""`voicechat serve --wyoming tcp://HOST:PORT`: Home Assistant's voice protocol, on the same engines.

Each event is a JSON header line, then ``data_length`` bytes of JSON and ``payload_length`` bytes of
payload (audio). Served here:
- ``describe`` -> ``info``: speech to text, the voice, and the chat model as a conversation agent;
- ``transcribe``, ``audio-start``, ``audio-chunk``..., ``audio-stop`` -> ``transcript``: transcribed
  while the chunks arrive; for long speech, ``transcript-start``/``transcript-chunk``/``transcript-stop``
  carry the words settled at pauses (they add up to the final transcript); any rate, width and channels;
- ``synthesize`` -> ``audio-start``, ``audio-chunk``..., ``audio-stop``, from the first sentence on;
  ``synthesize-start``, ``synthesize-chunk``..., ``synthesize-stop`` -> audio per sentence as text
  arrives, then ``synthesize-stopped``; the ``voice`` is a name ``info`` lists, else a language, spoken
  with that language's voice (tts.voices, the configured voice, espeak-ng's: ``voicechat.voice.language_voices``);
- ``transcript`` (as Home Assistant sends it to a conversation agent) -> ``handled``: the chat model
  with the conversation's memory;
- ``detect``, then audio -> ``detection`` each time a wake word is heard, ``not-detected`` at ``audio-stop`` if
  none was: the built-in wake words, for satellites (``voicechat.serve.wyoming_wake``).
Malformed or oversized events get an ``error`` event and the connection is closed; memory per
connection is bounded (serve.wyoming_max_audio_s of audio, serve.max_text_chars of streamed text);
engine work goes through the server's bounded pool. Events out of order get an answer at once, never
silence: ``audio-stop`` after ``transcribe`` with no audio -> an empty ``transcript``; ``audio-chunk``
or ``audio-stop`` outside ``audio-start`` ... ``audio-stop``, a second ``audio-start`` or
``synthesize-start`` inside a stream, ``synthesize-stop`` without a start, ``detect`` inside a transcription
stream, ``transcribe`` inside a wake word stream -> an ``error`` event; ``audio-stop`` after ``detect`` with no
audio -> ``not-detected``. A client that stops reading for serve.idle_timeout_s is closed (its engine slot
freed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.engines.base import TextToSpeech
    from voicechat.serve.state import ServerState
    from voicechat.voice.language_voices import LanguageVoices

log = logging.getLogger("voicechat.serve")
MAX_HEADER = 64 * 1024
MAX_DATA = 1 << 20
MAX_PAYLOAD = 4 << 20
CONVERSATION_IDLE_S = 300.0  # a conversation without a turn this long starts afresh (no id from the client)


def parse_uri(uri: str) -> tuple[str, int]:
    parts = urlsplit(uri if "://" in uri else f"tcp://{uri}")
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise VoicechatError(f"--wyoming '{uri}' is not tcp://HOST:PORT; e.g. tcp://127.0.0.1:10300")
    return parts.hostname, parts.port


class ProtocolError(Exception):
    pass


async def read_event(reader: asyncio.StreamReader) -> Any:
    """The next event, or None at the end of the stream; ProtocolError for a malformed or oversized one."""
    from wyoming.event import Event

    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise ProtocolError("the connection ended inside an event header") from None
        return None
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"an event header longer than {MAX_HEADER} bytes") from None
    try:
        header = json.loads(line)
    except (ValueError, RecursionError):  # (nested deeper than Python's recursion limit)
        raise ProtocolError("an event header that is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError('an event header without a "type"')
    data = header.get("data") or {}
    data_length, payload_length = header.get("data_length") or 0, header.get("payload_length") or 0
    if (
        not isinstance(data, dict)
        or not isinstance(data_length, int)
        or not isinstance(payload_length, int)
        or data_length < 0
        or payload_length < 0
    ):
        raise ProtocolError("an event with a malformed data or length field")
    if data_length > MAX_DATA or payload_length > MAX_PAYLOAD:
        raise ProtocolError(
            f"an event of {data_length + payload_length} bytes; this server takes up to {MAX_DATA} of data "
            f"and {MAX_PAYLOAD} of payload per event"
        )
    try:
        if data_length:
            more = json.loads(await reader.readexactly(data_length))
            if not isinstance(more, dict):
                raise ProtocolError("event data that is not a JSON object")
            data.update(more)
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        raise ProtocolError("the connection ended inside an event") from None
    except (ValueError, RecursionError):
        raise ProtocolError("event data that is not JSON") from None
    return Event(type=header["type"], data=data, payload=payload)


class Conversations:
    """Chat sessions by conversation id (from the client's context), with their memory; idle ones expire."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._lock = threading.Lock()
        self._chats: dict[str, tuple[Any, float]] = {}

    def get(self, key: str) -> Any:
        from voicechat.conversation.chat import Conversation, engines_info

        now = time.monotonic()
        with self._lock:
            for k in [k for k, (_, used) in self._chats.items() if now - used > CONVERSATION_IDLE_S]:
                del self._chats[k]
            chat = self._chats.get(key, (None, 0.0))[0]
            if chat is None:
                cfg = self.state.cfg
                chat = Conversation(
                    cfg,
                    self.state.llm,
                    kind="wyoming",
                    log=self.state.log,
                    history=self.state.history,
                    engines=engines_info(cfg, self.state.stt, self.state.llm, self.state.tts),
                )
            self._chats[key] = (chat, now)
            return chat


def info_event(state: ServerState, voices: LanguageVoices | None = None) -> Any:
    """``voices``: the server's voices by language, listed after the configured one (reads espeak-ng's table: call
    off the event loop)."""
    from wyoming.info import AsrModel, AsrProgram, Attribution, HandleModel, HandleProgram, Info, TtsProgram, TtsVoice, TtsVoiceSpeaker

    from voicechat import __version__
    from voicechat.serve.wyoming_wake import wake_program

    ids, names = state.model_ids(), state.engine_names()
    me = Attribution(name="voicechat", url="https://pypi.org/project/voicechat/")
    stt_languages = _stt_languages(state)
    whisper = (
        Attribution(name="OpenAI Whisper (faster-whisper)", url="https://github.com/openai/whisper")
        if state.cfg.stt.engine == "faster-whisper"
        else me
    )
    piper = Attribution(name="Piper (rhasspy)", url="https://github.com/rhasspy/piper") if state.cfg.tts.engine == "piper" else me
    speakers = [TtsVoiceSpeaker(name=name) for name in state.tts.speakers] or None
    espeak = Attribution(name="eSpeak NG", url="https://github.com/espeak-ng/espeak-ng")
    others = [
        TtsVoice(
            name=offer.name,
            attribution=espeak if offer.plan.engine == "espeak" else piper if offer.plan.engine == "piper" else me,
            installed=True,
            description=f"{offer.plan.voice} ({', '.join(_language_names(offer.languages))})",
            version=None,
            languages=list(offer.languages),
        )
        for offer in (voices.offered(state.stt.declared) if voices is not None else [])[1:]  # (the first is the configured voice)
    ]
    return Info(
        asr=[
            AsrProgram(
                name="voicechat",
                attribution=me,
                installed=True,
                description="voicechat speech to text",
                version=__version__,
                models=[
                    AsrModel(
                        name=ids["stt"],
                        attribution=whisper,
                        installed=True,
                        description=names["stt"],
                        version=None,
                        languages=stt_languages,
                    )
                ],
                supports_transcript_streaming=True,
            )
        ],
        tts=[
            TtsProgram(
                name="voicechat",
                attribution=me,
                installed=True,
                description="voicechat speech",
                version=__version__,
                voices=[
                    TtsVoice(
                        name=ids["tts"],
                        attribution=piper,
                        installed=True,
                        description=names["tts"],
                        version=None,
                        languages=state.tts.languages,
                        speakers=speakers,
                    ),
                    *others,
                ],
                supports_synthesize_streaming=True,
            )
        ],
        handle=[
            HandleProgram(
                name="voicechat",
                attribution=me,
                installed=True,
                description="voicechat chat model with memory",
                version=__version__,
                models=[
                    HandleModel(
                        name=ids["llm"], attribution=me, installed=True, description=names["llm"], version=None, languages=stt_languages
                    )
                ],
                supports_handled_streaming=False,
            )
        ],
        wake=[wake_program(__version__, me)],
    ).event()


def _language_names(codes: tuple[str, ...], limit: int = 4) -> list[str]:
    from voicechat import languages

    names = [languages.name(code) for code in codes[:limit]]
    return names + [f"{len(codes) - limit} more"] if len(codes) > limit else names


def _stt_languages(state: ServerState) -> list[str]:
    """The languages the loaded speech-to-text model understands (the one stt.language fixes, if set)."""
    from voicechat.stt_languages import fixed

    language = fixed(state.cfg.stt.language)
    return [language] if language else state.stt.languages


def _fixed(language: str | None) -> str | None:
    from voicechat.stt_languages import fixed

    return fixed(language)


def _language(state: ServerState, asked: str | None) -> str:
    """A transcribe event's language as the model's code ("de-DE" is "de"); VoicechatError when the model does not know it."""
    from voicechat.stt_languages import normalize

    codes = normalize([asked], source="transcribe language")
    if not codes:
        raise VoicechatError(f"transcribe language {asked!r}: give a language code such as en or de")
    if state.stt.name == "faster-whisper" and codes[0] not in state.stt.languages:  # (a remote engine's list is not known here)
        raise VoicechatError(
            f"transcribe language {codes[0]!r}: the model {state.stt.model_name} does not understand it; use one of {', '.join(state.stt.languages[:10])}"
        )
    return codes[0]


class Connection:
    """One client: events in, events out, in order."""

    def __init__(self, server: WyomingServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server, self.state = server, server.state
        self.reader, self.writer = reader, writer
        self.loop = asyncio.get_running_loop()
        self.language: str | None = None
        self.stream: Any = None  # StreamingTranscript of the audio in progress
        self.session_slot: int | None = None
        self.converter: Any = None
        self.sent_words: list[str] = []
        self.transcript_started = False
        self.synth: Any = None  # the text stream of synthesize-start ... synthesize-stop
        self.synth_chars = 0  # text received in that stream
        self.synth_voice: dict[str, Any] = {}  # that stream's voice (name, language)
        self.transcribing = False  # a transcribe event waits for its transcript
        self.stray_audio = False  # audio-chunk outside a stream, said once per run of them
        self._chunks: list[Any] = []  # transcript-chunk sends scheduled from the transcriber's thread
        self.wake = self._wake_listener()

    async def drain(self, timeout: float) -> None:
        """Nothing to wind down: a stream in progress just finishes (WyomingServer.close bounds it)."""

    async def write(self, event: Any) -> None:
        """Send one event; a client that does not take it within serve.idle_timeout_s is gone (ConnectionError)."""
        from wyoming.event import async_write_event

        try:
            await asyncio.wait_for(async_write_event(event, self.writer), self.state.cfg.serve.idle_timeout_s)
        except asyncio.TimeoutError:
            self.writer.transport.abort()
            raise ConnectionError("the client stopped reading") from None

    async def error(self, text: str, code: str = "error") -> None:
        from wyoming.error import Error

        from voicechat.errors import scrub

        await self.write(Error(text=scrub(text), code=code).event())

    async def run(self) -> None:
        idle = self.state.cfg.serve.idle_timeout_s
        try:
            while True:
                try:
                    event = await asyncio.wait_for(read_event(self.reader), idle)
                except asyncio.TimeoutError:
                    await self.error(f"no event for {idle:.0f} s (serve.idle_timeout_s); closing", "timeout")
                    return
                except ProtocolError as e:
                    await self.error(f"{e}; closing", "protocol")
                    await self._linger()
                    return
                if event is None:
                    return
                if not await self.handle(event):
                    await self._linger()
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._drop_stream()
            self.wake.close()

    async def _linger(self, seconds: float = 1.0) -> None:
        """Before closing on an error: read and drop what the client is still sending (bounded), so the close is
        clean and the client can read the error, instead of a reset that may discard it."""
        deadline = time.monotonic() + seconds
        try:
            self.writer.write_eof()
        except (OSError, RuntimeError):
            pass
        try:
            while time.monotonic() < deadline:
                if not await asyncio.wait_for(self.reader.read(65536), max(0.01, deadline - time.monotonic())):
                    return
        except (asyncio.TimeoutError, OSError, asyncio.LimitOverrunError):
            return

    # events ------------------------------------------------------------------------------------
    async def handle(self, event: Any) -> bool:
        """False: close the connection."""
        from wyoming.asr import Transcribe, Transcript
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.info import Describe
        from wyoming.ping import Ping, Pong
        from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop
        from wyoming.wake import Detect

        kind = event.type
        try:
            if Describe.is_type(kind):
                await self.write(await self.loop.run_in_executor(None, info_event, self.state, self.server.voices()))
            elif Ping.is_type(kind):
                await self.write(Pong(text=event.data.get("text")).event())
            elif not self.state.ready:
                await self.error("not ready (loading the models or shutting down); try again shortly", "not-ready")
                return False
            elif Transcribe.is_type(kind):
                if self.wake.streaming:
                    await self.error("transcribe inside a wake word stream: ignored; end the stream with audio-stop first", "protocol")
                    return True
                asked = Transcribe.from_event(event).language
                self.language = None
                if asked and asked.strip().lower() != "auto":
                    try:
                        self.language = _language(self.state, asked)
                    except VoicechatError as e:  # transcribed anyway, in the language found in the speech
                        await self.error(f"{e}; transcribing in the language detected", "language")
                self.transcribing = True
                self.wake.stop_requests()
            elif Detect.is_type(kind):
                if self.stream is not None:
                    await self.error("detect inside a transcription stream: ignored; end the stream with audio-stop first", "protocol")
                    return True
                self.transcribing = False
                await self.wake.detect(event)
            elif AudioStart.is_type(kind):
                return await self._audio_start(AudioStart.from_event(event))
            elif AudioChunk.is_type(kind):
                if self.wake.requested:
                    return await self._wake_chunk(event)
                return await self._audio_chunk(event)
            elif AudioStop.is_type(kind):
                if self.wake.requested:
                    await self.wake.stop()
                    return True
                return await self._audio_stop()
            elif Synthesize.is_type(kind):
                if self.synth is None:  # inside a text stream it only repeats the stream, for older clients
                    await self._synthesize(Synthesize.from_event(event).text, whole=True, voice=_voice(event))
            elif SynthesizeStart.is_type(kind):
                from voicechat import sentences

                if self.synth is not None:
                    await self.error(
                        "synthesize-start inside a text stream: the text not yet spoken was dropped; end a stream with synthesize-stop",
                        "protocol",
                    )
                self.synth_voice = _voice(event)
                voices, voice = self.server.voices(), self.synth_voice  # (the voice itself loads with the first sentence)
                language = await self.loop.run_in_executor(None, voices.requested_language, voice.get("name"), voice.get("language"))
                self.synth = sentences.Chunker(self.state.cfg.tts.first_chunk_words, language=language)
                self.synth_chars = 0
            elif SynthesizeChunk.is_type(kind):
                if self.synth is None:
                    await self.error("synthesize-chunk outside synthesize-start ... synthesize-stop", "protocol")
                    return True
                text = SynthesizeChunk.from_event(event).text
                limit = self.state.cfg.serve.max_text_chars
                self.synth_chars += len(text)
                if self.synth_chars > limit:
                    self.synth = None
                    await self.error(f"a text stream longer than {limit} characters (serve.max_text_chars); closing", "too-long")
                    return False
                for piece in self.synth.feed(text):
                    await self._synthesize(piece, whole=False, voice=self.synth_voice)
            elif SynthesizeStop.is_type(kind):
                from wyoming.tts import SynthesizeStopped

                if self.synth is None:
                    await self.error("synthesize-stop without synthesize-start", "protocol")
                    return True
                rest = " ".join(self.synth.flush()).strip()
                self.synth = None
                if rest:
                    await self._synthesize(rest, whole=False, voice=self.synth_voice)
                await self.write(SynthesizeStopped().event())
            elif Transcript.is_type(kind):
                return await self._handle_text(Transcript.from_event(event))
            else:
                await self.error(f"unknown event type '{kind[:40]}'", "unknown-event")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            await self.error(f"malformed {kind[:40]} event ({type(e).__name__}: {e})", "protocol")
        except VoicechatError as e:
            await self.error(e.message, "engine")
        return True

    # speech to text ------------------------------------------------------------------------------
    async def _audio_start(self, start: Any) -> bool:
        from voicechat.voice.stream_stt import StreamingTranscript

        if self.stream is not None or self.wake.streaming:
            await self.error("audio-start inside an audio stream: the audio so far was dropped; end a stream with audio-stop", "protocol")
        self._drop_stream()
        self.wake.close()
        self.stray_audio = False
        if not await self._audio_format(start.rate, start.width, start.channels, "audio-start"):
            return False
        if self.wake.requested:
            return await self.wake.start(start.rate, start.width, start.channels)
        if not await self._take_slot():
            return False
        self.converter = _Converter(start.rate, start.width, start.channels)
        self.sent_words, self.transcript_started, self._chunks = [], False, []
        self.stream = await self.loop.run_in_executor(
            None,
            lambda: StreamingTranscript(
                self.state.stt,
                self.state.cfg,
                self.language,
                on_partial=self._partial,
                max_seconds=self.state.cfg.serve.wyoming_max_audio_s,
            ),
        )
        return True

    async def _audio_format(self, rate: int, width: int, channels: int, what: str) -> bool:
        if 1 <= width <= 4 and 1 <= channels <= 8 and 4000 <= rate <= 192000:
            return True
        await self.error(
            f"{what} with rate {rate}, width {width}, channels {channels}: use 4000-192000 Hz, 1-4 bytes, 1-8 channels", "audio-format"
        )
        return False

    async def _take_slot(self) -> bool:
        """A place among serve.max_sessions for a stream; False (and said) when there is none."""
        self.session_slot = self.state.add_session(self)
        if self.session_slot is None:
            self.state.metrics.refused.labels("wyoming").inc()
            await self.error(
                f"too many streams at once (serve.max_sessions is {self.state.cfg.serve.max_sessions}); try again later", "busy"
            )
            return False
        return True

    def _wake_listener(self) -> Any:
        from voicechat.serve.wyoming_wake import WakeListener

        return WakeListener(
            self.write,
            self.error,
            threshold=self.state.cfg.listen.wake_threshold,
            take_slot=self._take_slot,
            release_slot=self._release,
            convert=_Converter,
        )

    async def _wake_chunk(self, event: Any) -> bool:
        """Audio for the wake words; a satellite streams chunks without audio-start: its first chunk starts the stream."""
        from wyoming.audio import AudioChunk

        chunk = AudioChunk.from_event(event)
        if not self.wake.streaming:
            if not await self._audio_format(chunk.rate, chunk.width, chunk.channels, "audio-chunk"):
                return False
            if not await self.wake.start(chunk.rate, chunk.width, chunk.channels):
                return False
        await self.wake.chunk(chunk.audio)
        return True

    async def _audio_chunk(self, event: Any) -> bool:
        if self.stream is None:  # said once for a run of them (a client streaming without audio-start gets one error, not one per chunk)
            if not self.stray_audio:
                self.stray_audio = True
                await self.error(
                    "audio-chunk before audio-start: send transcribe (optional), audio-start, then the chunks; "
                    "chunks outside a stream are dropped",
                    "protocol",
                )
            return True
        pcm = self.converter.convert(event.payload or b"")
        self.stream.push(pcm)
        limit = self.state.cfg.serve.wyoming_max_audio_s
        if self.stream.seconds > limit:
            self._drop_stream()
            await self.error(f"more than {limit:.0f} s of audio without audio-stop (serve.wyoming_max_audio_s); closing", "too-long")
            return False
        return True

    async def _audio_stop(self) -> bool:
        from wyoming.asr import Transcript, TranscriptChunk, TranscriptStop

        stream, self.stream = self.stream, None
        transcribing, self.transcribing = self.transcribing, False
        self.stray_audio = False
        if stream is None:
            if transcribing:  # transcribe, then no audio at all: the transcript of nothing
                await self.write(Transcript(text="", language=self.language or _fixed(self.state.cfg.stt.language)).event())
            else:
                await self.error("audio-stop without audio-start", "protocol")
            return True
        try:
            text, _ = await self.loop.run_in_executor(None, stream.finish)
        finally:
            self._release()
        if self.transcript_started:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in self._chunks), return_exceptions=True)  # in order: theirs first
            words = text.split()
            if words[: len(self.sent_words)] == self.sent_words and len(words) > len(self.sent_words):
                await self.write(TranscriptChunk(text=" " + " ".join(words[len(self.sent_words) :])).event())
            await self.write(TranscriptStop().event())
        await self.write(Transcript(text=text, language=stream.language or self.language or _fixed(self.state.cfg.stt.language)).event())
        return True

    def _partial(self, text: str, committed: str) -> None:
        """A partial transcript (on the transcriber's thread): stream the settled words (committed text, which later
        passes never change), so the chunks always add up to the final transcript."""
        words = committed.split()
        if len(words) <= len(self.sent_words) or words[: len(self.sent_words)] != self.sent_words:
            return
        new, self.sent_words = words[len(self.sent_words) :], words
        self._chunks.append(asyncio.run_coroutine_threadsafe(self._send_chunk(" ".join(new), first=not self.transcript_started), self.loop))
        self.transcript_started = True

    async def _send_chunk(self, text: str, first: bool) -> None:
        from wyoming.asr import TranscriptChunk, TranscriptStart

        if first:
            found = self.stream.language if self.stream is not None else None
            await self.write(TranscriptStart(language=self.language or found).event())
        await self.write(TranscriptChunk(text=text if first else " " + text).event())

    def _drop_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        self._release()

    def _release(self) -> None:
        if self.session_slot is not None:
            self.state.remove_session(self.session_slot)
            self.session_slot = None

    # speech ---------------------------------------------------------------------------------------
    def _pick_voice(self, voice: dict[str, Any]) -> tuple[TextToSpeech, str | None]:
        """The engine a synthesize event's voice names (a voice ``info`` lists, else its language's voice), and the
        language its text is split by (runs on a worker: the first use of a voice loads it)."""
        choice, language = self.server.voices().requested(voice.get("name"), voice.get("language"))
        if choice is None:
            return self.state.tts, None
        if choice.notice:
            log.info("wyoming synthesize: %s", choice.notice)
        return choice.engine, language

    async def _synthesize(self, text: str, *, whole: bool, voice: dict[str, Any] | None = None) -> None:
        from wyoming.audio import AudioChunk, AudioStart, AudioStop

        from voicechat import sentences

        limit = self.state.cfg.serve.max_text_chars
        if len(text) > limit:
            raise VoicechatError(f"text of {len(text)} characters; this server takes up to {limit} (serve.max_text_chars)")
        started = False
        rate = self.state.tts.sample_rate

        def audio(cancel: threading.Event) -> Any:
            tts, language = self._pick_voice(voice or {})
            pieces = list(sentences.chunks(text, self.state.cfg.tts.first_chunk_words, language=language)) if whole else [text]
            for piece in pieces:
                for chunk in tts.synthesize(piece):
                    yield chunk
                    if cancel.is_set():
                        return

        async for chunk in self.state.admission.stream(audio):
            rate = chunk.sample_rate
            if not started:
                await self.write(AudioStart(rate=rate, width=2, channels=1).event())
                started = True
            pcm = (np.clip(chunk.samples, -1, 1) * 32767).astype("<i2").tobytes()
            for i in range(0, len(pcm), 2048):
                await self.write(AudioChunk(rate=rate, width=2, channels=1, audio=pcm[i : i + 2048]).event())
        if not started:
            await self.write(AudioStart(rate=rate or 22050, width=2, channels=1).event())
        await self.write(AudioStop().event())

    # conversation ----------------------------------------------------------------------------------
    async def _handle_text(self, transcript: Any) -> bool:
        from wyoming.handle import Handled, NotHandled

        text = (transcript.text or "").strip()
        limit = self.state.cfg.serve.max_text_chars
        if not text or len(text) > limit:
            await self.write(NotHandled(text=f"the text is empty or longer than {limit} characters").event())
            return True
        context = transcript.context or {}
        key = str(context.get("conversation_id") or "default")
        chat = self.server.conversations.get(key)

        def answer() -> Any:
            return chat.stream_reply(text, lambda delta: None, lambda: False)

        reply = await self.state.admission.run(answer)
        if reply.failed or not reply.text.strip():
            await self.write(NotHandled(text=reply.error or "the chat model gave no answer", context=context or None).event())
            return True
        chat.record(text, reply.text, reply.usage, interrupted=reply.interrupted)
        await self.write(Handled(text=reply.text, context=context or None).event())
        return True


class _Converter:
    """Any rate, width and channel count -> 16 kHz mono 16-bit, streaming."""

    def __init__(self, rate: int, width: int, channels: int) -> None:
        self.rate, self.width, self.channels = rate, width, channels
        self._rest = b""
        self._resampler: Any = None
        if rate != 16000:
            import soxr

            self._resampler = soxr.ResampleStream(rate, 16000, 1, dtype="float32")

    def convert(self, data: bytes) -> bytes:
        frame = self.width * self.channels
        buf = self._rest + data
        whole = len(buf) - len(buf) % frame
        self._rest = buf[whole:]
        raw = buf[:whole]
        if not raw:
            return b""
        if self.width == 1:
            x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
        elif self.width == 2:
            x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        elif self.width == 3:
            b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 8388608.0
        else:
            x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
        if self.channels > 1:
            x = x.reshape(-1, self.channels).mean(axis=1)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=False)
        return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def _voice(event: Any) -> dict[str, Any]:
    """A synthesize event's voice as sent: name and language both kept (the wyoming package drops the language when a
    name is given), anything else ignored."""
    voice = event.data.get("voice")
    if not isinstance(voice, dict):
        return {}
    return {k: v for k in ("name", "language") if isinstance(v := voice.get(k), str) and v.strip()}


class WyomingServer:
    def __init__(self, state: ServerState, host: str, port: int) -> None:
        self.state, self.host, self.port = state, host, port
        self.conversations = Conversations(state)
        self._voices: LanguageVoices | None = None  # a voice per language, shared by every connection (made on first use)
        self._voices_lock = threading.Lock()
        self.connections: set[asyncio.Task] = set()
        self._server: asyncio.base_events.Server | None = None

    def voices(self) -> LanguageVoices:
        """The server's voices by language: the configured one, tts.voices', espeak-ng's; each loaded once, for all
        connections, each behind its own lock (serve.shared.SharedTTS)."""
        from voicechat.voice.language_voices import LanguageVoices

        with self._voices_lock:
            if self._voices is None:
                self._voices = LanguageVoices(self.state.cfg, self.state.tts, create=_shared_tts)
            return self._voices

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, self.host, self.port, limit=MAX_HEADER)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self.connections) >= self.state.cfg.serve.max_connections or self.state.draining:
            conn = Connection(self, reader, writer)
            await conn.error("too many connections (serve.max_connections) or shutting down; try again later", "busy")
            writer.close()
            return
        assert task is not None
        self.connections.add(task)
        try:
            await Connection(self, reader, writer).run()
        except Exception as e:  # one client's failure never takes the server down
            log.error("wyoming client failed: %s: %s", type(e).__name__, e)
        finally:
            self.connections.discard(task)
            try:
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 2)
            except Exception:
                pass

    async def close(self, timeout: float) -> None:
        """Stop accepting; let the connections finish what they are doing (bounded), then close them."""
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in list(self.connections):
            task.cancel()
        if self._voices is not None:
            self._voices.close()


def _shared_tts(cfg: Any) -> TextToSpeech:
    from voicechat.engines import registry
    from voicechat.serve.shared import SharedTTS

    return SharedTTS(registry.create("tts", cfg))
