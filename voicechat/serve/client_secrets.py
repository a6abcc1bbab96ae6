"""Short-lived keys for browsers: ``POST /v1/realtime/client_secrets``, as OpenAI mints them.

A page must never hold the server's key. Its own back end (or anything holding the server key) asks
for a client secret; the page then uses the ``ek_...`` value as its key on ``/v1/realtime`` (the
WebSocket) and ``/v1/realtime/calls`` (WebRTC), and nowhere else. A secret lasts ``expires_after.seconds``
(10 s to 2 h, 10 minutes by default), may open several sessions until then, and carries the session
configuration it was minted with: sessions opened with it start with that configuration.

Only a hash of each secret is kept (never the secret itself, never in a log), in memory: a restarted
server forgets them. At most :data:`MAX_LIVE` secrets are live at once, and their session configurations
take at most :data:`MAX_LIVE_BYTES` (as JSON); past either the oldest go.
Time comes from an injected clock, so expiry is tested without waiting.
"""

from __future__ import annotations

import collections
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from voicechat.serve import realtime_events as rt

PREFIX = "ek_"
DEFAULT_S = 600
MIN_S, MAX_S = 10, 7200
MAX_LIVE = 4096  # secrets alive at once (minting more forgets the oldest)
MAX_LIVE_BYTES = 64 << 20  # their session configurations, as JSON (each may carry long instructions and tools)


@dataclass(frozen=True)
class Grant:
    """What a live secret allows: until ``expires_at`` (epoch seconds), sessions configured by ``session``."""

    expires_at: int
    session: dict[str, Any] | None
    weight: int = 0  # the session configuration's size as JSON

    @property
    def start(self) -> dict[str, Any] | None:
        """The configuration a session opened with this secret starts with (as a session.update would set it)."""
        return {k: v for k, v in self.session.items() if k != "model"} if self.session else None


class Refused(ValueError):
    """A mint request this server cannot honour: the message says which field and what it takes."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class ClientSecrets:
    def __init__(self, clock: Callable[[], float] = time.time, max_live: int = MAX_LIVE, max_live_bytes: int = MAX_LIVE_BYTES) -> None:
        self.clock = clock
        self.max_live, self.max_live_bytes = max_live, max_live_bytes
        self.live_bytes = 0
        self._live: collections.OrderedDict[str, Grant] = collections.OrderedDict()  # sha256 of the secret -> grant
        self._lock = threading.Lock()

    def mint(self, body: Any, defaults: rt.Settings) -> dict[str, Any]:
        """The response to a mint request ``body`` (OpenAI's shape: value, expires_at, session)."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise Refused("the body must be a JSON object (expires_after, session)", "body")
        seconds = _seconds(body.get("expires_after"))
        session = body.get("session")
        settings = settings_for(session, defaults)
        value = PREFIX + secrets.token_urlsafe(24)
        now = self.clock()
        kept = dict(session) if isinstance(session, dict) else None
        grant = Grant(int(now + seconds), kept, len(json.dumps(kept)) if kept else 0)
        if grant.weight > self.max_live_bytes:
            raise Refused(f"the session configuration is {grant.weight} bytes as JSON; at most {self.max_live_bytes}", "session")
        with self._lock:
            for key in [k for k, g in self._live.items() if g.expires_at <= now]:
                self.live_bytes -= self._live.pop(key).weight
            while self._live and (len(self._live) >= self.max_live or self.live_bytes + grant.weight > self.max_live_bytes):
                self.live_bytes -= self._live.popitem(last=False)[1].weight
            self._live[_digest(value)] = grant
            self.live_bytes += grant.weight
        return {"value": value, "expires_at": grant.expires_at, "session": settings.to_dict(rt.new_id("sess"))}

    def grant(self, value: str | None) -> Grant | None:
        """The grant of a live secret; None for an unknown, expired or malformed one."""
        if not value or not value.startswith(PREFIX) or len(value) > 200:
            return None
        digest = _digest(value)
        with self._lock:
            grant = self._live.get(digest)
            if grant is None:
                return None
            if grant.expires_at <= self.clock():
                self.live_bytes -= self._live.pop(digest).weight
                return None
            return grant


def settings_for(session: Any, defaults: rt.Settings) -> rt.Settings:
    """``defaults`` with a session configuration applied (all or nothing): what a session opened with it reports."""
    settings = rt.Settings(**{k: getattr(defaults, k) for k in defaults.__dataclass_fields__})
    settings.output_modalities = list(defaults.output_modalities)
    if session is None:
        return settings
    if not isinstance(session, dict):
        raise Refused("session must be an object (type realtime or transcription)", "session")
    kind = session.get("type", "realtime")
    if kind not in ("realtime", "transcription"):
        raise Refused("session.type is realtime or transcription", "session.type")
    settings.kind = kind
    if isinstance(session.get("model"), str):
        settings.model = session["model"][:100]
    try:
        rt.apply_update(settings, {k: v for k, v in session.items() if k != "model"})
    except rt.UpdateRefused as e:
        raise Refused(str(e), e.param) from None
    return settings


def offered_key(headers: Mapping[str, str], extra: str | None = None) -> str | None:
    """The ephemeral key a request offers (Bearer, or the WebSocket subprotocol's), if it offers one."""
    auth = headers.get("authorization") or ""
    for given in (auth[7:].strip() if auth.lower().startswith("bearer ") else None, extra):
        if given and given.startswith(PREFIX):
            return given
    return None


def _seconds(expires: Any) -> int:
    if expires is None:
        return DEFAULT_S
    if not isinstance(expires, dict):
        raise Refused("expires_after must be an object: {anchor: created_at, seconds: N}", "expires_after")
    if expires.get("anchor", "created_at") != "created_at":
        raise Refused("expires_after.anchor is created_at", "expires_after.anchor")
    seconds = expires.get("seconds", DEFAULT_S)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not MIN_S <= seconds <= MAX_S:
        raise Refused(f"expires_after.seconds must be an integer from {MIN_S} to {MAX_S}", "expires_after.seconds")
    return seconds


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
