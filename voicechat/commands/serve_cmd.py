"""`voicechat serve`: the engines loaded once, served to programs, browsers and other machines."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voicechat.commands import options
from voicechat.console import handle_errors

if TYPE_CHECKING:
    from voicechat.serve.state import ServerState

HELP = "Serve the assistant: OpenAI-compatible speech, transcription and chat routes, a live voice WebSocket and a web page."


@handle_errors
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to bind (default 127.0.0.1: this machine only).")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="Port (default 8000; 0 picks a free one).")] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Require this key on every route (or VOICECHAT_SERVE_API_KEY).", show_default=False)
    ] = None,
    stt: options.Stt = None,
    llm: options.Llm = None,
    tts: options.Tts = None,
    stt_model: options.SttModel = None,
    llm_model: options.LlmModel = None,
    voice: options.Voice = None,
    system: options.System = None,
    languages: options.Languages = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Keep voice sessions out of the history.")] = False,
    wyoming: Annotated[
        str | None,
        typer.Option("--wyoming", help="Also speak the Wyoming protocol (Home Assistant) at tcp://HOST:PORT.", show_default=False),
    ] = None,
    http: Annotated[
        bool,
        typer.Option("--http/--no-http", help="Serve HTTP (OpenAI routes, WebSocket, page); --no-http with --wyoming serves Wyoming only."),
    ] = True,
    tools: Annotated[
        bool | None,
        typer.Option("--tools/--no-tools", help="Let the model call tools in voice sessions (tools.enabled), as `talk --tools` does."),
    ] = None,
) -> None:
    from voicechat.console import err_console, load_config
    from voicechat.errors import register_secret

    register_secret(api_key)
    cfg = load_config(
        {
            "serve.host": host,
            "serve.port": port,
            "serve.api_key": api_key,
            "tools.enabled": tools,
            "listen.languages": languages,
            **options.engine_overrides(stt, llm, tts, stt_model, llm_model, voice, system),
        }
    )
    from voicechat.errors import VoicechatError

    err = err_console()
    wyoming_at = None
    if wyoming is not None:
        from voicechat.serve.wyoming import parse_uri

        wyoming_at = parse_uri(wyoming)
        if not _loopback(wyoming_at[0]):
            err.print(
                f"warning: Wyoming on {wyoming_at[0]}: the protocol carries no key, so anyone who can reach port {wyoming_at[1]} "
                "can use it (keep it on a trusted network)",
                style="yellow",
                markup=False,
            )
    elif not http:
        raise VoicechatError("--no-http leaves nothing to serve; add --wyoming tcp://HOST:PORT")
    if http and not cfg.serve.api_key and not _loopback(cfg.serve.host):
        err.print(
            f"warning: serving on {cfg.serve.host} without an API key: anyone who can reach this port can use it "
            "(set --api-key or VOICECHAT_SERVE_API_KEY); clients must use an IP address or a name in serve.allowed_hosts",
            style="yellow",
            markup=False,
        )
    run(cfg, log=not no_log, announce=lambda m: err.print(m, markup=False, highlight=False), http=http, wyoming=wyoming_at)


def _loopback(host: str) -> bool:
    from voicechat.serve.boundary import loopback

    return loopback(host)


def run(cfg: Any, *, log: bool, announce: Any, http: bool = True, wyoming: tuple[str, int] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C: HTTP (uvicorn) and/or Wyoming, on one event loop and one set of engines."""
    import asyncio
    import threading

    import uvicorn

    from voicechat.errors import VoicechatError
    from voicechat.serve.app import create_app
    from voicechat.serve.state import ServerState

    state = ServerState(cfg, log=log)
    _scrub_logs()
    loader = threading.Thread(target=state.load, name="serve-load", daemon=True)  # started once the ports are bound:
    # a port in use is said at once, before any model takes the machine's time
    shown = cfg.serve.host if ":" not in cfg.serve.host else f"[{cfg.serve.host}]"

    class Server(uvicorn.Server):
        """uvicorn, with SIGTERM (and a first Ctrl-C) draining first: not ready, sessions told and their turns
        finished, in-flight requests done (bounded by serve.drain_timeout_s); a second signal forces."""

        drain_task: Any = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.drain_task is not None or self.should_exit:
                self.force_exit = True
                self.should_exit = True
                return
            state.draining = True
            announce("draining: finishing turns and requests (again to force)")
            self.drain_task = asyncio.get_event_loop().create_task(drain(state, self))

        async def startup(self, sockets: Any = None) -> None:
            quiet = _BindError()  # uvicorn logs a failed bind and exits: it is said in one line instead
            logging.getLogger("uvicorn.error").filters.insert(0, quiet)  # before the scrubbing filter turns it into text
            try:
                await super().startup(sockets)
            except SystemExit:
                if quiet.error is None:
                    raise
                raise VoicechatError(cannot_listen(quiet.error, cfg.serve.host, cfg.serve.port, "--port N", "--host and --port")) from None
            finally:
                logging.getLogger("uvicorn.error").removeFilter(quiet)
            if self.started:
                bound = [s.getsockname() for srv in self.servers for s in srv.sockets]
                port = bound[0][1] if bound else cfg.serve.port
                state.port = port
                announce(f"http://{shown}:{port}/healthz answers now; /readyz once the models are loaded")
                loader.start()

    async def main() -> None:
        wy = None
        if wyoming is not None:
            from voicechat.serve.wyoming import WyomingServer

            wy = WyomingServer(state, *wyoming)
            try:
                port = await wy.start()
            except OSError as e:
                raise VoicechatError(
                    cannot_listen(e, wyoming[0], wyoming[1], "--wyoming tcp://HOST:N", "--wyoming", "for Wyoming ")
                ) from None
            state.wyoming = wy
            announce(f"Wyoming: tcp://{wyoming[0]}:{port}")
        ready = asyncio.get_running_loop().create_task(announce_ready(state, shown, http, announce))
        try:
            if http:
                config = uvicorn.Config(
                    create_app(state, load=False),
                    host=cfg.serve.host,
                    port=cfg.serve.port,
                    log_level="warning",
                    access_log=False,
                    timeout_graceful_shutdown=int(cfg.serve.drain_timeout_s) + 1,
                    ws_max_size=1 << 21,
                    lifespan="on",
                    http=_http_protocol(cfg.serve.header_timeout_s),
                    # no compression: PCM barely compresses, and a small deflated read can inflate
                    # into thousands of messages queued before the session's own bounds see them
                    ws_per_message_deflate=False,
                )
                server = Server(config)
                await server.serve()
                if not server.started and not server.should_exit:
                    raise VoicechatError(
                        f"cannot listen on {cfg.serve.host}:{cfg.serve.port}; is another server using the port? (--port picks another)"
                    )
            else:
                loader.start()
                await _until_signal(state, announce)
        finally:
            ready.cancel()
            if wy is not None:
                await wy.close(cfg.serve.drain_timeout_s)

    try:
        asyncio.run(main())
    finally:
        state.close()
    if state.load_error:
        raise VoicechatError(state.load_error)


class _BindError(logging.Filter):
    """Takes uvicorn's log line about a socket it could not bind (an OSError logged as is), to say it in voicechat's words."""

    error: OSError | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, OSError):
            self.error = record.msg
            return False
        return True


def cannot_listen(error: OSError, host: str, port: int, option: str, check: str, what: str = "") -> str:
    """One line for a port that cannot be listened on: in use (the usual case), or why not."""
    import errno

    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use: stop what runs there or pass {option}"
    import os

    reason = os.strerror(error.errno) if error.errno else str(error).strip() or type(error).__name__
    return f"cannot listen on {host}:{port} {what}({reason.lower()}); check {check}"


def _http_protocol(header_timeout_s: float) -> type:
    """uvicorn's HTTP protocol (httptools when installed, else h11), with a deadline for each request's headers."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from voicechat.serve.slowclients import with_header_timeout

    return with_header_timeout(AutoHTTPProtocol, header_timeout_s)


async def _until_signal(state: ServerState, announce: Any) -> None:
    """No HTTP server: wait for SIGTERM or Ctrl-C, then drain (a second signal forces)."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    forced = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            forced.set()
        else:
            state.draining = True
            announce("draining: finishing requests (again to force)")
            stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    wy = state.wyoming
    if wy is not None:
        done = asyncio.ensure_future(wy.close(state.cfg.serve.drain_timeout_s))
        await asyncio.wait([done, asyncio.ensure_future(forced.wait())], return_when=asyncio.FIRST_COMPLETED)


async def announce_ready(state: ServerState, shown: str, http: bool, announce: Any) -> None:
    import asyncio

    while http and state.port is None:  # the port is bound first: a port in use is the only line said
        await asyncio.sleep(0.05)
    announce("loading the models…")
    while not state.loaded.is_set():
        await asyncio.sleep(0.05)
    if state.load_error:
        announce(f"error: {state.load_error}")
        return
    for note in state.notices:
        announce(f"note: {note}")
    if http:
        port = state.port or state.cfg.serve.port
        announce(f"ready: http://{shown}:{port}/ (web page), /v1 (OpenAI-compatible), /v1/voice (WebSocket), /docs")
    else:
        announce("ready")


async def drain(state: ServerState, server: Any) -> None:
    import asyncio
    import time

    timeout = state.cfg.serve.drain_timeout_s
    deadline = time.monotonic() + timeout
    await asyncio.gather(*(conn.drain(timeout) for conn in list(state.sessions.values())), return_exceptions=True)
    while (state.admission.active or state.admission.waiting or state.sessions) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    server.should_exit = True


def _scrub_logs() -> None:
    """Anything uvicorn logs goes through the same secret scrubbing as voicechat's own messages."""
    import logging

    from voicechat.errors import scrub

    class Scrub(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            try:
                record.msg = scrub(record.getMessage())
                record.args = ()
            except Exception:
                pass
            return True

    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "voicechat.serve"):
        logging.getLogger(name).addFilter(Scrub())
    from voicechat.console import debug

    if debug():
        logging.basicConfig(level=logging.INFO)
