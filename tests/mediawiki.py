"""A loopback server that answers like the MediaWiki Action API (api.php) for the queries the Wikipedia
tool makes: ``action=query&generator=search&prop=extracts|info&formatversion=2``.

The shapes are MediaWiki's: pages as a list with ``index`` (search rank), ``extract`` and ``fullurl``;
no ``query`` key at all when nothing matches; ``{"error": {"code", "info", "docref"}, "servedby"}`` for
a refused request (HTTP 200, as the API does). ``mode`` switches failures per test: ``error`` (an API
error), ``maxlag`` (a lagged replica), ``503`` (the front cache's HTML error page), ``slow`` (answers
after ``delay`` seconds), ``notjson`` and ``huge`` (a body of ``huge_bytes``).
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.servers import LoopbackServer

PAGES = {
    "Ada Lovelace": "Augusta Ada King, Countess of Lovelace (née Byron; 10 December 1815 – 27 November 1852), also known as "
    "Ada Lovelace, was an English mathematician and writer chiefly known for her work on Charles Babbage's "
    "proposed mechanical general-purpose computer, the Analytical Engine.",
    "Eiffel Tower": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
    "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889.",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (its size cap)
            pass

    def do_GET(self) -> None:
        owner = self.server.owner
        url = urlparse(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        owner.requests.append({"path": url.path, "params": params, "headers": {k.lower(): v for k, v in self.headers.items()}})
        if url.path != "/w/api.php":
            self._send(404, b"<html><body>Not Found</body></html>", "text/html")
            return
        mode = owner.mode
        if mode == "slow":
            time.sleep(owner.delay)
        if mode == "503":
            self._send(
                503,
                b"<!DOCTYPE html><html><head><title>Wikimedia Error</title></head><body>Our servers are "
                b"currently under maintenance or experiencing a technical issue</body></html>",
                "text/html",
            )
            return
        if mode == "notjson":
            self._send(200, b"<html>MediaWiki API help</html>", "text/html")
            return
        if mode == "error":
            self._json(
                {
                    "error": {
                        "code": "internal_api_error_DBQueryError",
                        "info": "[abc123] Database query error.",
                        "docref": "See /w/api.php for API usage.",
                    },
                    "servedby": "mw-api-test",
                }
            )
            return
        if mode == "maxlag":
            self._json(
                {
                    "error": {
                        "code": "maxlag",
                        "info": "Waiting for 10.64.16.8: 7 seconds lagged.",
                        "host": "10.64.16.8",
                        "lag": 7,
                        "type": "db",
                        "docref": "See /w/api.php for API usage.",
                    },
                    "servedby": "mw-api-test",
                },
                headers={"Retry-After": "5", "X-Database-Lag": "7"},
            )
            return
        if mode == "huge":
            page = {"pageid": 1, "ns": 0, "title": "Huge", "index": 1, "extract": "word " * (owner.huge_bytes // 5)}
            self._json({"batchcomplete": True, "query": {"pages": [page]}})
            return
        if params.get("action") != "query" or params.get("generator") != "search" or not params.get("gsrsearch"):
            self._json(
                {
                    "error": {
                        "code": "missingparam",
                        "info": 'The "gsrsearch" parameter must be set.',
                        "docref": "See /w/api.php for API usage.",
                    },
                    "servedby": "mw-api-test",
                }
            )
            return
        query = params["gsrsearch"].lower()
        found = [t for t in owner.pages if any(w in t.lower() or w in owner.pages[t].lower() for w in query.split())]
        if not found:
            self._json({"batchcomplete": True})
            return
        title = found[0]
        page = {
            "pageid": 1000 + list(owner.pages).index(title),
            "ns": 0,
            "title": title,
            "index": 1,
            "extract": owner.pages[title],
            "contentmodel": "wikitext",
            "pagelanguage": "en",
            "touched": "2026-11-20T10:00:00Z",
            "length": 120000,
            "fullurl": f"https://en.wikipedia.org/wiki/{title.replace(' ', '_')}",
        }
        self._json({"batchcomplete": True, "continue": {"gsroffset": 1, "continue": "gsroffset||"}, "query": {"pages": [page]}})

    def _json(self, doc: Any, headers: dict | None = None) -> None:
        self._send(200, json.dumps(doc, ensure_ascii=False).encode("utf-8"), headers=headers)


class MediaWikiServer(LoopbackServer):
    def __init__(self, pages: dict[str, str] | None = None) -> None:
        super().__init__(_Handler, "mediawiki-server")
        self.pages = dict(PAGES if pages is None else pages)
        self.mode = "ok"
        self.delay = 2.0
        self.huge_bytes = 3 << 20
        self.requests: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/w/api.php"
