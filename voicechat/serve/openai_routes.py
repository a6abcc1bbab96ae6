"""OpenAI-compatible routes: the `openai` SDK, LangChain and any OpenAI client work unchanged.

POST /v1/audio/transcriptions, POST /v1/audio/speech, POST /v1/chat/completions, GET /v1/models.
Every engine call runs on the bounded pool (:mod:`.admission`), never on the event loop; a streamed
body whose client goes away stops its engine.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from voicechat.config import shown
from voicechat.serve.errors import ApiError

if TYPE_CHECKING:
    from voicechat.engines.base import Message
    from voicechat.serve.state import ServerState
    from voicechat.serve.voices import Choice, VoiceCache

router = APIRouter()
TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
PER_MESSAGE_TOKENS = 8  # a chat template's role and separator tokens around each message (ChatML: 5), with room


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    if not state.loaded.is_set():
        raise ApiError(503, "the server is still loading its models; try again shortly", headers={"Retry-After": "2"})
    if state.load_error:
        raise ApiError(503, f"the engines failed to load: {state.load_error}")
    if state.draining:
        raise ApiError(503, "the server is shutting down; retry on another replica", headers={"Retry-After": "5"})
    return state


class WindowOptions(NamedTuple):
    """What a transcription request asks of each window, as far as the engine honours it."""

    word_timestamps: bool | None
    prompt: str | None


def _sse(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n".encode()


# --- speech to text ---------------------------------------------------------------------------


@router.post("/v1/audio/transcriptions")
async def transcriptions(
    request: Request,
    file: UploadFile = File(...),
    model: str = Form("whisper-1"),
    language: str | None = Form(None),
    prompt: str | None = Form(None),
    response_format: str = Form("json"),
    temperature: float | None = Form(None),
    granularities: list[str] | None = Form(None, alias="timestamp_granularities[]"),
    stream: bool = Form(False),
) -> Response:
    state = _state(request)
    serve = state.cfg.serve
    if response_format not in TRANSCRIPT_FORMATS:
        raise ApiError(
            400, f"response_format {shown(response_format)} is not one of {', '.join(TRANSCRIPT_FORMATS)}", param="response_format"
        )
    granularities = granularities or []
    bad = [g for g in granularities if g not in ("word", "segment")]
    if bad:
        raise ApiError(400, f"timestamp_granularities {shown(bad[0])} is not word or segment", param="timestamp_granularities")
    if prompt is not None and len(prompt) > serve.max_text_chars:
        raise ApiError(413, f"prompt is {len(prompt)} characters; this server takes up to {serve.max_text_chars}", param="prompt")
    words = "word" in granularities or response_format in ("srt", "vtt")
    language = _asked_language(state, language)
    name = upload_name(file.filename)
    path = await _save_upload(request, file)
    options = WindowOptions(
        word_timestamps=words if state.stt.times_words else None, prompt=prompt if prompt and state.stt.takes_prompt else None
    )

    meta: dict[str, Any] = {}

    def segments(cancel: threading.Event) -> Iterator[Any]:
        try:
            yield from _transcribe(state, path, name, language, options, cancel, meta)
        finally:
            os.unlink(path)

    if stream:

        async def events() -> Any:
            texts: list[str] = []
            try:
                async for seg in state.admission.stream(segments):
                    if seg.text.strip():
                        delta = (" " if texts else "") + seg.text.strip()
                        texts.append(seg.text.strip())
                        yield _sse({"type": "transcript.text.delta", "delta": delta, "logprobs": None})
                yield _sse({"type": "transcript.text.done", "text": " ".join(texts), "logprobs": None})
            except Exception as e:
                yield _sse({"type": "error", "error": _user_error(e)})

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    try:
        segs = [s async for s in state.admission.stream(segments)]
    except BaseException:
        if os.path.exists(path):
            os.unlink(path)
        raise
    return _transcript_response(segs, response_format, meta, "word" in granularities, "segment" in granularities or not granularities)


def upload_name(filename: str | None) -> str:
    """The upload as messages name it: its file name, without directories or control characters, cut short."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:80].strip()
    return base or "the upload"


async def _save_upload(request: Request, file: UploadFile) -> str:
    """The upload on disk (the decoder reads files; big uploads never sit in memory), in this server's
    private upload directory, which the next start sweeps if this process is killed (:mod:`.uploads`)."""
    from voicechat.serve.uploads import Uploads

    uploads = request.app.state.uploads  # (None until the app's lifespan starts)
    if uploads is None:
        uploads = request.app.state.uploads = Uploads()
    fd, path = uploads.new()
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                block = await file.read(1 << 20)
                if not block:
                    break
                out.write(block)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _transcribe(
    state: ServerState, path: str, name: str, language: str | None, options: WindowOptions, cancel: threading.Event, meta: dict[str, Any]
) -> Iterator[Any]:
    from voicechat.decode import TooLong, open_audio
    from voicechat.errors import VoicechatError
    from voicechat.transcription.longform import transcribe_windows, windows

    limit = state.cfg.serve.max_audio_s
    try:
        with open_audio(path, name=name, max_seconds=limit + 1) as audio:  # (refused at the first frame past it)
            if audio.duration is not None and audio.duration > limit + 1:
                raise ApiError(413, f"{name}: {audio.duration:.0f} s of audio; this server takes up to {limit:.0f} s per request")

            def blocks() -> Iterator[Any]:
                for block in audio:
                    if cancel.is_set():
                        return
                    yield block

            for seg in transcribe_windows(
                state.stt,
                windows(blocks()),
                no_speech_threshold=state.cfg.stt.no_speech_threshold,
                language=language,
                word_timestamps=options.word_timestamps,
                prompt=options.prompt,
            ):
                yield seg
                if cancel.is_set():
                    return
            meta["duration"] = audio.samples / audio.sample_rate
            meta["language"] = state.stt.info.language
    except TooLong:
        raise ApiError(413, f"{name}: more than {limit:.0f} s of audio; this server takes up to {limit:.0f} s per request") from None
    except VoicechatError as e:  # the decoder names the file it read: the client knows its upload, not our path
        raise ApiError(400, e.message.replace(path, name)) from None


def _transcript_response(segs: list[Any], fmt: str, meta: dict[str, Any], words: bool, segments: bool) -> Response:
    from voicechat.transcription import formats

    text = " ".join(s.text.strip() for s in segs if s.text.strip())
    if fmt == "json":
        return JSONResponse({"text": text, "usage": {"type": "duration", "seconds": round(meta.get("duration", 0.0))}})
    if fmt == "text":
        return PlainTextResponse(text + "\n")
    if fmt in ("srt", "vtt"):
        subtitles = formats.WRITERS[fmt](segs)
        return PlainTextResponse(subtitles, media_type="text/vtt" if fmt == "vtt" else "application/x-subrip")
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": _language_name(meta.get("language")),
        "duration": round(meta.get("duration", 0.0), 3),
        "text": text,
    }
    if segments:
        body["segments"] = [
            {
                "id": i,
                "seek": 0,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": round(s.avg_logprob, 4),
                "compression_ratio": 0.0,
                "no_speech_prob": round(s.no_speech_prob, 4),
            }
            for i, s in enumerate(segs)
        ]
    if words:
        body["words"] = [{"word": w.text.strip(), "start": round(w.start, 3), "end": round(w.end, 3)} for s in segs for w in s.words]
    return JSONResponse(body)


def _language_name(code: str | None) -> str:
    """The language as OpenAI's verbose_json names it ("german"); a code without a known name as itself."""
    from voicechat.languages import NAMES

    return NAMES.get(code or "en", code or "english").lower()


def _asked_language(state: ServerState, language: str | None) -> str | None:
    """The request's language as the model's code ("de-DE" is "de"; "auto" or none: detect); 400 for one it does not know."""
    from voicechat.errors import VoicechatError
    from voicechat.stt_languages import fixed, normalize

    if fixed(language) is None:
        return None
    try:
        code = normalize([language], source="language")[0]
    except VoicechatError as e:
        raise ApiError(400, e.message, param="language") from None
    known = state.stt.languages
    if state.stt.name == "faster-whisper" and code not in known:  # (a remote engine's list is not known here)
        raise ApiError(
            400,
            f"language {code!r}: the model {state.stt.model_name} does not understand it; use one of {', '.join(known[:10])}",
            param="language",
        )
    return code


def _user_error(e: BaseException) -> dict[str, Any]:
    from voicechat.errors import VoicechatError, scrub
    from voicechat.serve.admission import TimedOut

    if isinstance(e, ApiError):
        return e.body()["error"]
    if isinstance(e, TimedOut):
        return {"message": "the request took longer than serve.request_timeout_s", "type": "timeout_error", "param": None, "code": 504}
    message = e.message if isinstance(e, VoicechatError) else f"{type(e).__name__}: {e}"
    return {"message": scrub(message), "type": "server_error", "param": None, "code": 500}


# --- text to speech ---------------------------------------------------------------------------


@router.post("/v1/audio/speech")
async def speech(request: Request) -> Response:
    from voicechat import sentences
    from voicechat.serve.encode import FORMATS, Encoder
    from voicechat.serve.voices import printable

    state = _state(request)
    body = await _json(request)
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "input is missing or empty; give the text to speak", param="input")
    limit = state.cfg.serve.max_text_chars
    if len(text) > limit:
        raise ApiError(413, f"input is {len(text)} characters; this server takes up to {limit}", param="input")
    fmt = body.get("response_format") or "mp3"
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ApiError(400, f"response_format {shown(fmt)} is not one of {', '.join(FORMATS)}", param="response_format")
    speed = body.get("speed", 1.0)
    if not isinstance(speed, (int, float)) or isinstance(speed, bool) or not 0.25 <= speed <= 4.0:
        raise ApiError(400, f"speed {shown(speed)} is not a number from 0.25 to 4.0", param="speed")
    change: float | None = None
    if speed != 1.0:
        if not state.tts.changes_speed:
            raise ApiError(400, f"the {state.cfg.tts.engine} engine cannot change speed; leave speed at 1.0", param="speed")
        change = float(speed)
    voice = body.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise ApiError(400, f"voice {shown(voice)} is not a voice name", param="voice")
    first_words = state.cfg.tts.first_chunk_words
    encoder = Encoder(fmt)
    voices: VoiceCache = request.app.state.voices
    chosen: list[Choice] = []

    def audio(cancel: threading.Event) -> Iterator[bytes]:
        choice = voices.choose(voice)  # (on the worker: a voice not yet loaded loads here, off the event loop)
        chosen.append(choice)
        yield b""  # the voice is known before any sound: the headers name it
        for piece in sentences.chunks(text, first_words):  # the first sentence is spoken before the rest is read
            if cancel.is_set():
                return
            for chunk in choice.engine.synthesize(piece, speed=change):
                data = encoder.feed(chunk.samples, chunk.sample_rate)
                if data:
                    yield data
                if cancel.is_set():
                    return
        tail = encoder.finish()
        if tail:
            yield tail

    chunks = state.admission.stream(audio)
    try:
        await chunks.__anext__()  # the voice chosen
        first = await chunks.__anext__()  # errors before the first byte get a proper status
    except StopAsyncIteration:
        first = b""
    except Exception:
        await chunks.aclose()
        raise
    headers = {"X-Voicechat-Voice": printable(chosen[0].name if chosen else state.tts.model_name or state.cfg.tts.engine, 200)}
    if chosen and chosen[0].notice:
        headers["X-Voicechat-Voice-Notice"] = printable(chosen[0].notice, 1000)

    async def body_stream() -> Any:
        try:
            if first:
                yield first
            async for data in chunks:
                yield data
        finally:
            await chunks.aclose()

    return StreamingResponse(body_stream(), media_type=encoder.media_type, headers=headers)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except HTTPException:
        raise  # the body was too large or too slow (the guard's refusal)
    except Exception:
        raise ApiError(400, "the body is not valid JSON; send a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


# --- chat --------------------------------------------------------------------------------------


def _messages(body: dict[str, Any], limit: int, most: int) -> list[Any]:
    from voicechat.engines.base import Message

    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "messages is missing or empty; give a list of {role, content}", param="messages")
    if len(raw) > most:
        raise ApiError(
            400, f"messages holds {len(raw)} messages; this server takes up to {most} in one request (serve.max_messages)", param="messages"
        )
    out = []
    total = 0
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise ApiError(400, f"messages[{i}] is not an object", param="messages")
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise ApiError(400, f"messages[{i}].role {shown(role)} is not system, user or assistant", param="messages")
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ApiError(
                        400, f"messages[{i}].content holds a part that is not text; this server reads text only", param="messages"
                    )
                parts.append(part["text"])
            content = "".join(parts)
        if content is None and role == "assistant":
            content = ""
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content is not text", param="messages")
        total += len(content)
        out.append(Message(role, content))
    if total > limit:
        raise ApiError(413, f"messages hold {total} characters; this server takes up to {limit} (serve.max_text_chars)", param="messages")
    return out


def _fits(state: ServerState, messages: list[Message]) -> None:
    """A local model's context must hold the prompt: said before any engine work, as OpenAI says it."""
    if state.cfg.llm.engine != "llama-cpp":
        return  # a remote engine's server knows its own context
    count = state.llm.count_tokens
    context = state.cfg.llm.context_size
    tokens = 0
    for m in messages:
        tokens += count(m.content) + PER_MESSAGE_TOKENS
        if tokens >= context:
            raise ApiError(
                400,
                f"the messages take more than the model's context of {context} tokens (llm.context_size); send fewer or shorter messages",
                param="messages",
                code="context_length_exceeded",
            )


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    from voicechat.engines.base import TextDelta, Usage
    from voicechat.serve.sampling import sampling_options

    state = _state(request)
    body = await _json(request)
    messages = _messages(body, state.cfg.serve.max_text_chars, state.cfg.serve.max_messages)
    options = sampling_options(body, state.cfg.serve.max_tokens)
    _fits(state, messages)
    model = state.model_ids()["llm"]
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    ignored = sorted(options.asked() - state.llm.options_honoured)
    headers = {"X-Voicechat-Options-Ignored": ", ".join(ignored)} if ignored else {}  # (what this engine cannot apply per call)

    def reply(cancel: threading.Event) -> Iterator[Any]:
        yield from state.llm.stream(messages, options=options)

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
        doc: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
        }
        if usage is not None:
            doc["usage"] = usage
        return _sse(doc)

    if body.get("stream"):
        items = state.admission.stream(reply)

        async def events() -> Any:
            usage = None
            finish = "stop"
            try:
                yield chunk({"role": "assistant", "content": ""})
                async for item in items:
                    if isinstance(item, TextDelta) and item.text:
                        yield chunk({"content": item.text})
                    elif isinstance(item, Usage):
                        usage, finish = _usage(item), item.finish_reason or finish
                yield chunk({}, finish)
                if include_usage and usage is not None:
                    yield chunk({}, usage=usage)
                yield _sse("[DONE]")
            except Exception as e:
                yield _sse({"error": _user_error(e)})
            finally:
                await items.aclose()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", **headers})
    texts: list[str] = []
    usage = None
    finish = "stop"
    async for item in state.admission.stream(reply):
        if isinstance(item, TextDelta):
            texts.append(item.text)
        elif isinstance(item, Usage):
            usage, finish = _usage(item), item.finish_reason or finish
    return JSONResponse(
        {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(texts)}, "finish_reason": finish, "logprobs": None}
            ],
            "usage": usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        },
        headers=headers,
    )


def _usage(u: Any) -> dict[str, int]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


@router.get("/v1/models")
async def models(request: Request) -> Response:
    state = _state(request)
    created = int(state.started)
    ids, names = state.model_ids(), state.engine_names()
    data = [
        {"id": ids[kind], "object": "model", "created": created, "owned_by": "voicechat", "kind": kind, "name": names[kind]}
        for kind in ("llm", "stt", "tts")
    ]
    return JSONResponse({"object": "list", "data": data})
