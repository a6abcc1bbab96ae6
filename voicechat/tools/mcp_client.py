"""MCP servers from the config: each one's tools offered to the model, called through the `mcp` package.

A server is a command started with stdio pipes (``command``, ``args``, ``env``, ``cwd``) or a
Streamable HTTP endpoint (``url``). ``enabled`` switches it; ``allow`` lists the tool names it may
offer (absent: all); ``confirm`` (default true) makes every tool that does not declare itself
read-only ask the user before each call. The `mcp` client is asynchronous: one event-loop thread
holds the connections, and calls from the conversation wait on it with a deadline.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, TextIO

from voicechat.engines.base import ToolSpec
from voicechat.tools.base import Tool, ToolError
from voicechat.tools.mcp_config import ServerConfig


class _Loop:
    """One asyncio loop in a thread for every MCP connection of the process; it ends when the last closes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mcp", daemon=True)
        self.thread.start()
        self.users = 0

    def run(self, coro: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


_shared: list[_Loop] = []
_shared_lock = threading.Lock()


class Connection:
    """A live connection to one server: its tools, and calls to them."""

    def __init__(self, server: ServerConfig) -> None:
        self.server = server
        with _shared_lock:
            if not _shared:
                _shared.append(_Loop())
            self.runner = _shared[0]
            self.runner.users += 1
        self.client: Any = None
        self._closing: asyncio.Event | None = None
        self._held: Any = None
        self.listed: list[Any] = []
        self._closed = False
        self._errlog: TextIO | None = None  # a stdio server's stderr, once started

    async def _hold(self, ready: asyncio.Future) -> None:
        """Enter the client in one task and stay in it until close (anyio needs enter and exit in one task)."""
        from mcp import Client

        self._closing = asyncio.Event()
        try:
            async with Client(self._transport(), read_timeout_seconds=self.server.timeout) as client:
                self.client = client
                listed = await client.list_tools()
                ready.set_result(list(listed.tools))
                await self._closing.wait()
        except BaseException as e:  # the server failed to start or died: whoever waits learns why
            if not ready.done():
                ready.set_exception(e)
            if not isinstance(e, Exception):
                raise

    def _transport(self) -> Any:
        if self.server.url:
            return self.server.url
        assert self.server.command is not None  # (the config gives either a command or a url)
        from mcp.client.stdio import StdioServerParameters, stdio_client

        from voicechat import paths

        log = paths.cache_dir() / f"mcp-{self.server.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self._errlog = open(log, "a", encoding="utf-8")  # the server's stderr: not on the user's screen
        params = StdioServerParameters(command=self.server.command, args=list(self.server.args), env=self.server.env, cwd=self.server.cwd)
        return stdio_client(params, errlog=self._errlog)

    def start(self) -> None:
        async def begin() -> list[Any]:
            ready: asyncio.Future = asyncio.get_running_loop().create_future()
            self._held = asyncio.ensure_future(self._hold(ready))
            return await ready

        what = self.server.url or self.server.command
        try:
            self.listed = self.runner.run(begin(), self.server.timeout)
        except TimeoutError:
            self.close()
            raise ToolError(f"it did not answer within {self.server.timeout:g} s ({what})") from None
        except Exception as e:
            self.close()
            message = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise ToolError(f"cannot start or reach it ({what}): {message}") from None

    def tools(self) -> list[Tool]:
        allowed = self.server.allow
        out = []
        for t in self.listed:
            if allowed is not None and t.name not in allowed:
                continue
            read_only = bool(t.annotations and t.annotations.read_only_hint)
            schema = t.input_schema if isinstance(t.input_schema, dict) else {"type": "object", "properties": {}}
            spec = ToolSpec(t.name, (t.description or t.name).strip()[:1000], schema)
            out.append(Tool(spec, self._caller(t.name), source=f"mcp:{self.server.name}", confirm=self.server.confirm and not read_only))
        return out

    def _caller(self, name: str) -> Any:
        def call(args: dict[str, Any]) -> str:
            if self.client is None:
                raise ToolError(f"MCP server '{self.server.name}' is not connected")
            try:
                result = self.runner.run(self.client.call_tool(name, args), self.server.timeout)
            except TimeoutError:
                raise ToolError(f"MCP server '{self.server.name}' did not answer within {self.server.timeout:g} s") from None
            text = "\n".join(_block_text(b) for b in result.content) or "(no output)"
            if result.is_error:
                raise ToolError(f"'{name}' on MCP server '{self.server.name}' failed: {text[:500]}")
            return text

        return call

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._closing is not None and self._held is not None:
            closing, held = self._closing, self._held

            async def finish() -> None:
                closing.set()
                try:
                    await asyncio.wait_for(held, timeout=5)
                except (asyncio.TimeoutError, Exception):
                    held.cancel()

            try:
                self.runner.run(finish(), 8)
            except Exception:  # a server that will not stop is left to the process's exit
                pass
            self._held = None
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None
        with _shared_lock:
            self.runner.users -= 1
            if self.runner.users <= 0 and _shared and _shared[0] is self.runner:
                _shared.clear()
                self.runner.stop()


def _block_text(block: Any) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return block.text
    if kind == "resource":
        resource = getattr(block, "resource", None)
        return getattr(resource, "text", None) or f"[a resource: {getattr(resource, 'uri', '')}]"
    return f"[{kind or 'unknown'} content left out]"


def connect(server: ServerConfig) -> Connection:
    connection = Connection(server)
    connection.start()
    return connection
