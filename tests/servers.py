"""Real HTTP servers on loopback that answer like OpenAI-compatible APIs.

``OpenAILikeServer`` runs real engines behind the endpoints (bundled Whisper for
transcriptions, the piper library for speech) so engine tests exercise real
HTTP, real multipart uploads and real streamed bodies. Error modes (401, 404,
429, 500, a stall, a stream cut midway) are switched per test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, doc: Any, headers: dict | None = None) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self._body()
        owner.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        if owner.mode != "ok" and owner.error(self):
            return
        route = owner.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        route(self, body)

    def do_GET(self) -> None:
        if self.path.startswith("/v1/models"):
            self.send_json(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})
        else:
            self.send_json(404, {"error": {"message": "not found"}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (a timeout, a size cap) is part of the test, not noise for its output


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, with ``handler`` answering; a context manager."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str) -> None:
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=name)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def event_stream(h: BaseHTTPRequestHandler) -> Callable[[Any], None]:
    """Start a chunked text/event-stream answer; the function sends one event (a JSON document, or raw bytes)."""
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()

    def event(doc: Any) -> None:
        data = b"data: " + (doc if isinstance(doc, bytes) else json.dumps(doc).encode()) + b"\n\n"
        h.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()

    return event


class OpenAILikeServer(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(_Handler, "openai-like-server")
        self.mode = "ok"
        self.requests: list[dict] = []
        self.routes: dict[str, Callable[[_Handler, bytes], None]] = {
            "/v1/audio/transcriptions": self._transcriptions,
            "/v1/audio/speech": self._speech,
            "/v1/chat/completions": self._chat,
        }
        self.reply = "Hello from the test server. This reply streams in pieces."
        # Answers for the next chat requests, in order (then ``reply``): a string (``{tool}`` is replaced
        # by the content of the request's last tool message), a ToolCalls, streamed as OpenAI streams calls,
        # or an HTTP status to fail with.
        self.script: list[Any] = []
        self.api_key: str | None = None
        self.calls_before_ok = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # error modes ---------------------------------------------------------------------
    def error(self, h: _Handler) -> bool:
        """Answer with the current error mode; return False to fall through to the route."""
        if self.mode == "401":
            h.send_json(
                401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}
            )
        elif self.mode == "404":
            h.send_json(
                404, {"error": {"message": "The model `nope` does not exist", "type": "invalid_request_error", "code": "model_not_found"}}
            )
        elif self.mode == "429":
            if self.calls_before_ok > 0:
                self.calls_before_ok -= 1
                h.send_json(429, {"error": {"message": "Rate limit reached", "type": "requests"}}, {"retry-after-ms": "10"})
                return True
            return False
        elif self.mode == "500":
            h.send_json(500, {"error": {"message": "internal server error", "type": "server_error"}})
        elif self.mode == "stall":
            time.sleep(5)
            return False
        elif self.mode == "cut":
            return False  # handled by the chat route
        else:
            return False
        return True

    # routes --------------------------------------------------------------------------
    def _transcriptions(self, h: _Handler, body: bytes) -> None:
        fields = _multipart(h.headers.get("Content-Type", ""), body)

        import tempfile

        from voicechat.decode import decode

        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            tmp.write(fields["file"])
            tmp.flush()
            audio = decode(tmp.name)
        model = _whisper()
        segments, info = model.transcribe(audio, beam_size=5, language=fields.get("language", b"").decode() or None)
        segs = [
            {"id": i, "start": s.start, "end": s.end, "text": s.text, "no_speech_prob": s.no_speech_prob, "avg_logprob": s.avg_logprob}
            for i, s in enumerate(segments)
        ]
        text = "".join(s["text"] for s in segs).strip()
        if fields.get("response_format", b"json") == b"verbose_json":
            h.send_json(200, {"task": "transcribe", "language": "english", "duration": info.duration, "text": text, "segments": segs})
        else:
            h.send_json(200, {"text": text})

    def _chat(self, h: _Handler, body: bytes) -> None:
        """Stream a fixed reply as server-sent events, like OpenAI (usage last when asked for)."""
        req = json.loads(body)
        answer = self.script.pop(0) if self.script else self.reply
        if isinstance(answer, int):  # a scripted HTTP error for this request
            h.send_json(answer, {"error": {"message": "internal server error", "type": "server_error"}})
            return
        if isinstance(answer, ToolCalls):
            self._stream_calls(h, req, answer)
            return
        tool_results = [m.get("content") or "" for m in req.get("messages", []) if m.get("role") == "tool"]
        reply = answer.replace("{tool}", tool_results[-1] if tool_results else "")
        if not req.get("stream"):
            h.send_json(
                200,
                {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22},
                },
            )
            return
        event = event_stream(h)
        words = reply.split(" ")
        base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": req.get("model")}
        for i, word in enumerate(words):
            if self.mode == "cut" and i == 4:
                h.wfile.flush()
                h.close_connection = True
                import socket

                h.connection.shutdown(socket.SHUT_RDWR)
                return
            piece = word if i == 0 else " " + word
            event({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            time.sleep(0.01)
        event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (req.get("stream_options") or {}).get("include_usage"):
            event({**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)}})
        event(b"[DONE]")
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    def _stream_calls(self, h: _Handler, req: dict, calls: ToolCalls) -> None:
        """Tool calls as OpenAI streams them: id, name and empty arguments first, then argument pieces."""
        event = event_stream(h)

        base = {"id": "chatcmpl-calls", "object": "chat.completion.chunk", "created": 0, "model": req.get("model")}
        event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": calls.text or None}, "finish_reason": None}]})
        for i, (name, arguments) in enumerate(calls.calls):
            first = {"index": i, "id": f"call_{i}_{name}", "type": "function", "function": {"name": name, "arguments": ""}}
            event({**base, "choices": [{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}]})
            for k in range(0, len(arguments), 7):
                piece = {"index": i, "function": {"arguments": arguments[k : k + 7]}}
                event({**base, "choices": [{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}]})
        event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        if (req.get("stream_options") or {}).get("include_usage"):
            event({**base, "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}})
        event(b"[DONE]")
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    def _speech(self, h: _Handler, body: bytes) -> None:
        import numpy as np

        req = json.loads(body)
        from tests.helpers import piper_voice

        voice = piper_voice()
        fmt = req.get("response_format", "mp3")
        if fmt not in ("pcm", "wav"):
            h.send_json(400, {"error": {"message": f"format {fmt} not supported by this test server"}})
            return
        if req.get("voice") not in ("alloy", "echo", "nova"):
            h.send_json(400, {"error": {"message": f"unknown voice {req.get('voice')}"}})
            return
        import soxr

        h.send_response(200)
        h.send_header("Content-Type", "audio/pcm" if fmt == "pcm" else "audio/wav")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(data: bytes) -> None:
            h.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        if fmt == "wav":  # a streaming WAV header with unknown size, like OpenAI's
            import struct

            chunk(
                b"RIFF"
                + struct.pack("<I", 0xFFFFFFFF)
                + b"WAVEfmt "
                + struct.pack("<IHHIIHH", 16, 1, 1, 24000, 48000, 2, 16)
                + b"data"
                + struct.pack("<I", 0xFFFFFFFF)
            )
        for c in voice.synthesize(req["input"]):  # one sentence at a time, as it is made
            pcm = soxr.resample(c.audio_float_array, voice.config.sample_rate, 24000)
            chunk((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()


class ToolCalls:
    """A scripted answer that calls tools: (name, arguments JSON text) pairs, and optional text before them."""

    def __init__(self, *calls: tuple[str, str], text: str = "") -> None:
        self.calls, self.text = list(calls), text


_MODEL: list = []


def _whisper():
    if not _MODEL:
        from faster_whisper import WhisperModel

        from voicechat import models

        _MODEL.append(WhisperModel(models.whisper_model(), device="cpu", compute_type="int8"))
    return _MODEL[0]


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    msg = BytesParser(policy=email_policy).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    out: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        out[name] = part.get_payload(decode=True)
    return out
