"""The official openai SDK's realtime client against a test server: connecting and reading events."""

from __future__ import annotations

from typing import Any


def sdk(server: Any, key: str) -> Any:
    """The SDK's client for ``server``, unchanged but for its base URL (no retries: a refusal is the answer)."""
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def collect(conn: Any, until: str, limit: int = 4000) -> list:
    """Events up to the first of type ``until`` (an ``error`` on the way fails the test)."""
    events = []
    for event in conn:
        events.append(event)
        assert event.type != "error", event
        if event.type == until or len(events) >= limit:
            return events
    raise AssertionError(f"closed before {until}: {[e.type for e in events]}")
