"""The FastAPI application: auth, limits, health, readiness, metrics, the web page, and the routes."""

from __future__ import annotations

import base64
import hmac
import logging
import threading
import time
from importlib import resources
from typing import Any, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from voicechat.serve.admission import Busy, TimedOut
from voicechat.serve.errors import ApiError, error_body

OPEN_PATHS = {"/healthz", "/readyz", "/"}  # a balancer's probes and the page that asks for the key
ROUTES = {"/v1/audio/transcriptions", "/v1/audio/speech", "/v1/chat/completions", "/v1/models", "/healthz", "/readyz",
          "/metrics", "/", "/v1/voice"}
STATIC = {"app.js": "text/javascript", "mic-worklet.js": "text/javascript", "style.css": "text/css"}
log = logging.getLogger("voicechat.serve")


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
            raw = item[len("voicechat.key."):]
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

class Guard:
    """Auth, the upload size limit (413), and per-route metrics and access logging (paths only, never queries)."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # the WebSocket route checks its key itself (close code 1008)
            return
        path = scope.get("path", "")
        route = path if path in ROUTES or path.startswith("/static/") else "other"
        if route.startswith("/static/"):
            route = "/static"
        started = time.perf_counter()
        status = {"code": 500, "first": None}
        limit = int(self.state.cfg.serve.max_upload_mb * 1024 * 1024)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        async def send_timed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body" and status["first"] is None and message.get("body"):
                status["first"] = time.perf_counter() - started
            await send(message)

        try:
            if path not in OPEN_PATHS and not path.startswith("/static/") and not authorized(self.state, headers):
                await _reply(send_timed, 401, "missing or wrong API key; send it as 'Authorization: Bearer KEY'")
                return
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                await _reply(send_timed, 413, f"the upload is {int(length) / 1048576:.1f} MB; this server takes up to "
                                              f"{self.state.cfg.serve.max_upload_mb:g} MB (serve.max_upload_mb)")
                return
            received = {"n": 0}

            async def receive_counted() -> dict[str, Any]:
                message = await receive()
                if message["type"] == "http.request":
                    received["n"] += len(message.get("body", b""))
                    if received["n"] > limit:
                        raise _TooLarge()
                return message

            try:
                await self.app(scope, receive_counted, send_timed)
            except _TooLarge:
                await _reply(send_timed, 413, f"the upload is larger than {self.state.cfg.serve.max_upload_mb:g} MB (serve.max_upload_mb)")
        finally:
            elapsed = time.perf_counter() - started
            self.state.metrics.observe(route, status["code"], elapsed)
            if status["first"] is not None and route in ("/v1/audio/speech", "/v1/chat/completions", "/v1/audio/transcriptions"):
                self.state.metrics.first_byte.labels(route).observe(status["first"])
            log.info("%s %s %d %.3fs", scope.get("method"), path, status["code"], elapsed)


class _TooLarge(Exception):
    pass


async def _reply(send: Any, status: int, message: str) -> None:
    import json

    body = json.dumps(error_body(status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# --- the application ------------------------------------------------------------------------------

def create_app(state: Any, *, load: bool = True) -> FastAPI:
    """The application around a :class:`ServerState`; with ``load`` the engines load on a thread at start-up."""
    from contextlib import asynccontextmanager

    from voicechat import __version__
    from voicechat.serve import openai_routes, voice_ws

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        if load and not state.loaded.is_set():
            threading.Thread(target=state.load, name="serve-load", daemon=True).start()
        yield

    app = FastAPI(title="voicechat", version=__version__, lifespan=lifespan,
                  description="Speech to text, chat and speech, OpenAI-compatible, and a live voice session over a WebSocket.")
    app.state.server = state
    app.add_middleware(Guard, state=state)
    app.include_router(openai_routes.router)
    app.add_api_websocket_route("/v1/voice", voice_ws.voice_endpoint)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> Response:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(Busy)
    async def busy(request: Request, e: Busy) -> Response:
        state.metrics.refused.labels("request").inc()
        return JSONResponse(error_body(503, f"the server is busy (serve.max_active {state.cfg.serve.max_active} running, "
                                            f"serve.max_queued {state.cfg.serve.max_queued} waiting); try again shortly"),
                            status_code=503, headers={"Retry-After": str(e.retry_after)})

    @app.exception_handler(TimedOut)
    async def timed_out(request: Request, e: TimedOut) -> Response:
        return JSONResponse(error_body(504, f"the request took longer than serve.request_timeout_s ({state.cfg.serve.request_timeout_s:g} s)"),
                            status_code=504)

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
        why = ("draining" if state.draining else f"engines failed: {state.load_error}" if state.load_error
               else "loading the engines")
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
