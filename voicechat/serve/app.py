"""The FastAPI application: auth, limits, health, readiness, metrics, the web page, and the routes."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import threading
import time
from collections.abc import Mapping
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from voicechat.serve.admission import Busy, TimedOut
from voicechat.serve.boundary import Boundary, media_type
from voicechat.serve.errors import ApiError, error_body

OPEN_PATHS = {"/healthz", "/readyz", "/"}  # a balancer's probes and the page that asks for the key
ROUTES = {
    "/v1/audio/transcriptions",
    "/v1/audio/speech",
    "/v1/chat/completions",
    "/v1/models",
    "/healthz",
    "/readyz",
    "/metrics",
    "/",
    "/v1/voice",
    "/v1/realtime",
    "/v1/realtime/calls",
    "/v1/realtime/client_secrets",
}
STATIC = {"app.js": "text/javascript", "mic-worklet.js": "text/javascript", "style.css": "text/css"}
log = logging.getLogger("voicechat.serve")
_PHRASES = {404: "no such route; see /docs", 405: "this route does not take that method; see /docs"}


# --- keys -------------------------------------------------------------------------------------


def key_protocol(header: str | None) -> tuple[bool, str | None]:
    """WebSocket subprotocols offered: ("voicechat", "voicechat.key.<base64url key>") -> (offered, key).

    Browsers cannot set headers on a WebSocket; a key in the URL would end up in logs, a subprotocol does not."""
    offered, key = False, None
    for item in (header or "").split(","):
        item = item.strip()
        if item == "voicechat":
            offered = True
        elif item.startswith("voicechat.key."):
            raw = item[len("voicechat.key.") :]
            try:
                key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                key = None
    return offered, key


def authorized(state: Any, headers: Mapping[str, str], extra: str | None = None) -> bool:
    want = state.cfg.serve.api_key
    if not want:
        return True
    given = []
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given.append(auth[7:].strip())
    if headers.get("x-api-key"):
        given.append(headers["x-api-key"])
    if extra:
        given.append(extra)
    ok = False
    for g in given:  # constant time for each candidate
        ok |= hmac.compare_digest(g.encode("utf-8", "replace"), want.encode("utf-8"))
    return ok


# --- middleware (pure ASGI: streamed bodies pass through untouched) -----------------------------

JSON_ROUTES = {"/v1/chat/completions", "/v1/audio/speech", "/v1/realtime/client_secrets"}
KEYED_ROUTES = "/v1/realtime/calls"  # these check the key themselves: the server's, or an ephemeral one (realtime_webrtc)
FORM_ROUTES = {"/v1/audio/transcriptions"}
JSON_BASE = 64 * 1024  # a JSON body's room besides its text: model, options, a client's tool list


class BodyRefused(HTTPException):
    """A body too large or too slow, found while it is read: answered with its status, the connection closed
    (an HTTPException, so that FastAPI's form parsing passes it on instead of calling it a parse error)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status_code=status, detail=message, headers={"connection": "close"})


def json_limit(serve: Any) -> int:
    """The largest JSON body worth reading: every message's text (up to 12 bytes a character as JSON escapes),
    the messages' own fields, and some room; never more than an upload."""
    room = JSON_BASE + 12 * serve.max_text_chars + 512 * serve.max_messages
    return min(room, int(serve.max_upload_mb * 1024 * 1024))


class Guard:
    """Host and Origin (every HTTP route and WebSocket), auth, content types (415), the body's size (413)
    and deadline (408), CORS for listed pages, and per-route metrics and access logging (paths only,
    never queries)."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app, self.state = app, state
        self.boundary = Boundary(state.cfg.serve)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)  # the route itself checks the key (close code 1008)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        serve = self.state.cfg.serve
        path = scope.get("path", "")
        method = scope.get("method", "")
        route = path if path in ROUTES or path.startswith("/static/") else "other"
        if route.startswith("/static/"):
            route = "/static"
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500, "first": None, "started": False}
        headers = _headers(scope)
        origin = headers.get("origin")
        cors = origin is not None and self.boundary.listed(origin)
        upload = int(serve.max_upload_mb * 1024 * 1024)
        limit = json_limit(serve) if path in JSON_ROUTES else upload

        async def send_timed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                if cors and origin is not None:
                    message = {**message, "headers": [*message.get("headers", []), *_cors(origin)]}
            elif message["type"] == "http.response.body" and status["first"] is None and message.get("body"):
                status["first"] = time.perf_counter() - started
            await send(message)

        try:
            refusal = self.boundary.host_refusal(headers.get("host"))
            if refusal:
                await _reply(send_timed, 421, refusal)
                return
            refusal = self.boundary.origin_refusal(origin, headers.get("host"))
            if refusal:
                await _reply(send_timed, 403, refusal)
                return
            if method == "OPTIONS" and cors and "access-control-request-method" in headers:
                await _preflight(send_timed, headers)  # a listed page asking first; it carries no key
                return
            keyed = path.startswith(KEYED_ROUTES)
            if path not in OPEN_PATHS and not path.startswith("/static/") and not keyed and not authorized(self.state, headers):
                await _reply(send_timed, 401, "missing or wrong API key; send it as 'Authorization: Bearer KEY'")
                return
            if method == "POST" and (path in JSON_ROUTES or path in FORM_ROUTES):
                want = "application/json" if path in JSON_ROUTES else "multipart/form-data"
                given = media_type(headers.get("content-type"))
                if given != want:
                    shown = f"'{given[:60]}'" if given else "none"
                    await _reply(send_timed, 415, f"{path} takes Content-Type: {want} (the request has {shown})")
                    return
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                await _reply(send_timed, 413, _too_large(path, serve, limit, int(length)))
                return
            try:
                await self.app(scope, _guarded_receive(receive, path, serve, limit), send_timed)
            except BodyRefused as e:  # raised where no handler answered it (outside a route)
                if not status["started"]:
                    await _reply(send_timed, e.status_code, e.detail, close=True)
        finally:
            elapsed = time.perf_counter() - started
            self.state.metrics.observe(route, status["code"], elapsed)
            if status["first"] is not None and route in ("/v1/audio/speech", "/v1/chat/completions", "/v1/audio/transcriptions"):
                self.state.metrics.first_byte.labels(route).observe(status["first"])
            log.info("%s %s %d %.3fs", method, path, status["code"], elapsed)

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Host and Origin before the upgrade is accepted: every WebSocket route, present and future."""
        headers = _headers(scope)
        code, refusal = 421, self.boundary.host_refusal(headers.get("host"))
        if refusal is None:
            code, refusal = 403, self.boundary.origin_refusal(headers.get("origin"), headers.get("host"))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        log.info("WS %s refused %d", scope.get("path", ""), code)
        self.state.metrics.observe("/v1/voice" if scope.get("path") == "/v1/voice" else "other", code, 0.0)
        await receive()  # websocket.connect
        if "websocket.http.response" in (scope.get("extensions") or {}):
            body = json.dumps(error_body(code, refusal)).encode()
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _guarded_receive(receive: Any, path: str, serve: Any, limit: int) -> Any:
    """receive(), counting the body against its limit and holding it to serve.body_timeout_s."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + serve.body_timeout_s
    body = {"n": 0, "done": False}

    async def guarded() -> dict[str, Any]:
        if body["done"]:
            return await receive()  # after the body: a disconnect, however late
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise BodyRefused(
                408,
                f"the request body did not arrive within serve.body_timeout_s ({serve.body_timeout_s:g} s); "
                "send it faster or raise the limit",
            ) from None
        if message["type"] == "http.request":
            body["n"] += len(message.get("body", b""))
            if body["n"] > limit:
                raise BodyRefused(413, _too_large(path, serve, limit))
            body["done"] = not message.get("more_body", False)
        else:
            body["done"] = True
        return message

    return guarded


def _too_large(path: str, serve: Any, limit: int, length: int | None = None) -> str:
    upload = int(serve.max_upload_mb * 1024 * 1024)
    if path in JSON_ROUTES and limit < upload:
        got = f"{length // 1024} kB" if length is not None else f"over {limit // 1024} kB"
        return f"the JSON body is {got}; this server takes up to {limit // 1024} kB (set by serve.max_text_chars and serve.max_messages)"
    if length is not None:
        return f"the upload is {length / 1048576:.1f} MB; this server takes up to {serve.max_upload_mb:g} MB (serve.max_upload_mb)"
    return f"the upload is larger than {serve.max_upload_mb:g} MB (serve.max_upload_mb)"


def _cors(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"Origin"),
        (b"access-control-expose-headers", b"Retry-After, X-Voicechat-Voice, X-Voicechat-Voice-Notice, X-Voicechat-Options-Ignored"),
    ]


async def _preflight(send: Any, headers: Mapping[str, str]) -> None:
    asked = headers.get("access-control-request-headers", "")[:1000]
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", asked.encode("latin-1")),
                (b"access-control-max-age", b"600"),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _reply(send: Any, status: int, message: str, *, close: bool = False) -> None:
    body = json.dumps(error_body(status, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # refused while its body was being read: the rest of it is not worth waiting for
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- the application ------------------------------------------------------------------------------


def create_app(state: Any, *, load: bool = True) -> FastAPI:
    """The application around a :class:`ServerState`; with ``load`` the engines load on a thread at start-up."""
    from contextlib import asynccontextmanager

    from voicechat import __version__
    from voicechat.serve import openai_routes, realtime, realtime_webrtc, voice_ws, voices
    from voicechat.serve.client_secrets import ClientSecrets

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        from voicechat.serve.uploads import Uploads

        if load and not state.loaded.is_set():
            threading.Thread(target=state.load, name="serve-load", daemon=True).start()
        app.state.uploads = Uploads()  # sweeps the uploads of servers that were killed
        try:
            yield
        finally:
            app.state.uploads.close()

    app = FastAPI(
        title="voicechat",
        version=__version__,
        lifespan=lifespan,
        description="Speech to text, chat and speech, OpenAI-compatible, and a live voice session over a WebSocket.",
    )
    app.state.server = state
    app.state.uploads = None
    app.state.voices = voices.for_server(state)  # /v1/audio/speech: voices besides tts.voice, loaded on demand
    app.add_middleware(Guard, state=state)
    app.include_router(openai_routes.router)
    app.include_router(realtime_webrtc.router)  # /v1/realtime/calls (WebRTC) and /v1/realtime/client_secrets
    app.state.client_secrets = ClientSecrets()
    app.state.calls = {}  # call id -> its live connection (hangup)
    app.add_api_websocket_route("/v1/voice", voice_ws.voice_endpoint)
    app.add_api_websocket_route("/v1/realtime", realtime.realtime_endpoint)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> Response:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(Busy)
    async def busy(request: Request, e: Busy) -> Response:
        state.metrics.refused.labels("request").inc()
        return JSONResponse(
            error_body(
                503,
                f"the server is busy (serve.max_active {state.cfg.serve.max_active} running, "
                f"serve.max_queued {state.cfg.serve.max_queued} waiting); try again shortly",
            ),
            status_code=503,
            headers={"Retry-After": str(e.retry_after)},
        )

    @app.exception_handler(TimedOut)
    async def timed_out(request: Request, e: TimedOut) -> Response:
        return JSONResponse(
            error_body(504, f"the request took longer than serve.request_timeout_s ({state.cfg.serve.request_timeout_s:g} s)"),
            status_code=504,
        )

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        """Every refusal in OpenAI's shape: multipart parse errors, 404, 405, a body too large or too slow."""
        message = _PHRASES.get(e.status_code) or (e.detail if isinstance(e.detail, str) and e.detail else "the request was refused")
        if e.status_code == 400 and "parsing the body" in message:
            message = "the multipart body is malformed or cut short; send the file as multipart/form-data field 'file'"
        return JSONResponse(error_body(e.status_code, message), status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> Response:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse(error_body(400, f"{where}: {first.get('msg', 'invalid')}", where), status_code=400)

    from voicechat.errors import VoicechatError

    @app.exception_handler(VoicechatError)
    async def user_error(request: Request, e: VoicechatError) -> Response:
        return JSONResponse(error_body(400, e.message), status_code=400)

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception) -> Response:
        from voicechat.errors import scrub

        log.error("internal error on %s: %s", request.url.path, scrub(f"{type(e).__name__}: {e}"))
        return JSONResponse(error_body(500, f"internal error: {type(e).__name__}"), status_code=500)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        if state.ready:
            return JSONResponse({"ready": True, "engines": state.engine_names()})
        why = "draining" if state.draining else f"engines failed: {state.load_error}" if state.load_error else "loading the engines"
        return JSONResponse({"ready": False, "reason": why}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, kind = state.metrics.render()
        return Response(body, media_type=kind)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return HTMLResponse(_web("index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            return JSONResponse(error_body(404, f"no file {name[:60]}"), status_code=404)
        return Response(_web(name), media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    return app


def _web(name: str) -> str:
    return resources.files("voicechat.serve").joinpath("web", name).read_text(encoding="utf-8")
