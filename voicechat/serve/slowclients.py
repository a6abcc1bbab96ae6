"""A deadline for a request's headers, which uvicorn does not have.

uvicorn closes a keep-alive connection that stays idle, but once a byte of a request has arrived (or on
a fresh connection) it waits for the rest of the headers forever: a client sending one byte a second
(slowloris) holds a connection, and enough of them hold every file descriptor. This wraps uvicorn's
HTTP protocol: from a connection's start, and from the first byte of each further request, the headers
must be complete within ``seconds``, else the client gets 408 and the connection is closed. The body has
its own deadline (serve.body_timeout_s, kept by the application's guard).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from voicechat.serve.errors import error_body


def with_header_timeout(base: type, seconds: float) -> type:
    """A subclass of uvicorn's HTTP protocol class ``base`` (h11 or httptools) that enforces the deadline."""

    body = json.dumps(error_body(408, f"the request's headers did not arrive within serve.header_timeout_s ({seconds:g} s)")).encode()
    refusal = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )

    class HeaderDeadline(base):
        _header_timer: asyncio.TimerHandle | None = None
        _waiting_since: Any = None  # the request cycle that was current when the wait began

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self._between_requests():
                self._arm()  # the first byte of a further request on a kept-alive connection
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._waiting_since:
                self._disarm()  # the headers are in: a new request began

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_websocket_upgrade(self, *args: Any) -> None:
            self._disarm()  # the headers are in; the WebSocket protocol takes the connection
            super().handle_websocket_upgrade(*args)

        def _between_requests(self) -> bool:
            cycle = self.cycle
            return cycle is None or bool(getattr(cycle, "response_complete", True))

        def _arm(self) -> None:
            self._disarm()
            self._waiting_since = self.cycle
            self._header_timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            transport = self.transport
            if transport is None or transport.is_closing() or self.cycle is not self._waiting_since:
                return
            if transport.get_protocol() is not self:
                return  # upgraded
            try:
                transport.write(refusal)
            finally:
                transport.close()

    HeaderDeadline.__name__ = HeaderDeadline.__qualname__ = f"HeaderDeadline{base.__name__}"
    return HeaderDeadline
