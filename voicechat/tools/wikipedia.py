"""Look a subject up on Wikipedia: one MediaWiki API request (search, then the best page's plain-text
introduction), with an overall deadline, a cap on the bytes read and on the text returned."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from voicechat.engines.base import ToolSpec
from voicechat.tools.base import Tool, ToolError

MAX_BYTES = 1 << 20  # an introduction is a few kB; an answer bigger than this is not read
USER_AGENT = "voicechat/0.1 (command-line voice assistant; tool calls made for its user)"

SPEC = ToolSpec(
    "wikipedia",
    "Look up a subject on Wikipedia and get the introduction of the best matching article. "
    "Use it for facts about people, places, things and events.",
    {
        "type": "object",
        "properties": {"query": {"type": "string", "maxLength": 300, "description": "what to look up, e.g. Eiffel Tower"}},
        "required": ["query"],
        "additionalProperties": False,
    },
)


class Wikipedia:
    def __init__(self, url: str, *, timeout: float, max_chars: int, max_bytes: int = MAX_BYTES) -> None:
        self.url, self.timeout, self.max_chars, self.max_bytes = url, timeout, max_chars, max_bytes

    def tool(self) -> Tool:
        return Tool(SPEC, self.run)

    def run(self, args: dict[str, Any]) -> str:
        query = " ".join(str(args["query"]).split())
        if not query:
            raise ToolError("the query is empty; say what to look up")
        doc = self._get(
            {
                "action": "query",
                "format": "json",
                "formatversion": "2",
                "generator": "search",
                "gsrsearch": query,
                "gsrlimit": "1",
                "prop": "extracts|info",
                "exintro": "1",
                "explaintext": "1",
                "inprop": "url",
                "redirects": "1",
            }
        )
        if isinstance(doc.get("error"), dict):
            err = doc["error"]
            raise ToolError(f"Wikipedia refused the request: {str(err.get('info') or err.get('code'))[:200]}")
        pages = (doc.get("query") or {}).get("pages") or []
        if isinstance(pages, dict):  # formatversion 1 shape
            pages = list(pages.values())
        pages = [p for p in pages if isinstance(p, dict) and not p.get("missing")]
        if not pages:
            return f"Wikipedia has no article matching '{query}'."
        page = min(pages, key=lambda p: p.get("index", 0))
        extract = " ".join(str(page.get("extract") or "").split())
        if not extract:
            return f"Wikipedia's article '{page.get('title')}' has no introduction."
        return f"Wikipedia, '{page.get('title')}': {cut(extract, self.max_chars)}"

    def _get(self, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.url}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
        deadline = time.monotonic() + self.timeout
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = bytearray()
                while True:
                    if time.monotonic() > deadline:
                        raise ToolError(f"Wikipedia did not answer within {self.timeout:g} s; try again later")
                    block = response.read(65536)
                    if not block:
                        break
                    body += block
                    if len(body) > self.max_bytes:
                        raise ToolError(f"Wikipedia's answer is larger than {self.max_bytes // 1024} kB and was not read")
        except urllib.error.HTTPError as e:
            raise ToolError(f"Wikipedia answered HTTP {e.code} ({e.reason}); try again later") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ToolError(f"Wikipedia did not answer within {self.timeout:g} s; try again later") from None
            raise ToolError(f"cannot reach Wikipedia ({_why(reason)}); are you offline?") from None
        except TimeoutError:
            raise ToolError(f"Wikipedia did not answer within {self.timeout:g} s; try again later") from None
        except OSError as e:
            raise ToolError(f"cannot reach Wikipedia ({_why(e)}); are you offline?") from None
        try:
            doc = json.loads(bytes(body))
        except ValueError:
            raise ToolError("Wikipedia's answer was not JSON; try again later") from None
        if not isinstance(doc, dict):
            raise ToolError("Wikipedia's answer had an unexpected shape")
        return doc


def _why(reason: Any) -> str:
    if isinstance(reason, socket.gaierror):
        return "the name does not resolve"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return getattr(reason, "strerror", None) or str(reason)[:80]


def cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending at a sentence end where one is near."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    return head[: end + 1] if end > limit // 2 else head.rstrip() + "…"
