"""Who may use the server: the Host a request names (DNS rebinding) and the web page it comes from (Origin).

A web page the user visits can send requests to a server on their loopback or LAN; the browser lets
it read the answers only if the server says so (CORS, never granted here except to listed pages),
but WebSockets and "simple" POSTs get through whatever the server says. So:

- Host: a DNS-rebinding page reaches the server under its own domain name, so a request must name
  this server: ``localhost``, an IP address (a rebinding page cannot make its Host an address: the
  address would then be its origin), the name the server binds to, or one of
  ``serve.allowed_hosts``. Bound beyond loopback with an API key, any name is answered unless
  ``serve.allowed_hosts`` lists some: other machines reach the server by whatever name their DNS
  has, and a rebinding page has no key. No Host at all (HTTP/1.0 health checks) is not a browser.
- Origin: a browser says which page a request comes from. Only the server's own page (Origin's
  host:port equals Host) and ``serve.allowed_origins`` may use it; a request without Origin (curl,
  SDKs, ``talk --server``) is not a browser's and passes. An API key does not lift this check: a
  foreign page cannot know the key unless the user gave it one, and then listing it is one line.
"""

from __future__ import annotations

import ipaddress
from typing import Any

WILDCARDS = {"", "0.0.0.0", "::", "*"}
SHOWN = 80  # a name from a request is cut to this in messages


def loopback(host: str) -> bool:
    """A bind address that only this machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, str]:
    """'Example.COM:8000' -> ('example.com', '8000'); '[::1]:80' -> ('::1', '80'); a trailing dot dropped."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, sep, port = value.rpartition(":")
        if not sep or not port.isdigit():
            name, port = value, ""
    return name.rstrip("."), port


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _default_port(scheme: str, port: str) -> str:
    return "" if (scheme, port) in (("http", "80"), ("https", "443"), ("ws", "80"), ("wss", "443")) else port


class Boundary:
    """The Host and Origin rules of one server (built from its ``serve`` config)."""

    def __init__(self, serve: Any) -> None:
        hosts = [h.strip().lower().rstrip(".") for h in serve.allowed_hosts]
        self.any_host = "*" in hosts
        self.hosts = {h for h in hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))  # "*.example.com" -> ".example.com"
        bind = serve.host.strip().lower().strip("[]").rstrip(".")
        self.bind = None if bind in WILDCARDS else bind
        # Beyond loopback with a key: the key guards every route, and clients use names we cannot know.
        self.names_open = not hosts and bool(serve.api_key) and not loopback(serve.host)
        origins = [o.strip().lower().rstrip("/") for o in serve.allowed_origins]
        self.any_origin = "*" in origins
        self.origins = set(origins)

    # Host -----------------------------------------------------------------------------------------
    def host_refusal(self, host: str | None) -> str | None:
        """None when the Host header names this server; else the message of the refusal."""
        if host is None or self.any_host or self.names_open:
            return None
        name, _ = split_host(host)
        if (
            name == "localhost"
            or _is_address(name)
            or name == self.bind
            or name in self.hosts
            or (self.suffixes and name.endswith(self.suffixes))
        ):
            return None
        return (
            f"this server does not answer to the host name '{name[:SHOWN]}' (a web page may be using DNS rebinding); "
            "if the name is yours, add it to serve.allowed_hosts (VOICECHAT_SERVE_ALLOWED_HOSTS)"
        )

    # Origin ---------------------------------------------------------------------------------------
    def listed(self, origin: str) -> bool:
        """An Origin the configuration lets in (its requests get CORS headers)."""
        return self.any_origin or origin.strip().lower().rstrip("/") in self.origins

    def origin_refusal(self, origin: str | None, host: str | None) -> str | None:
        """None for a request without Origin, from the server's own page, or from a listed page."""
        if origin is None or self.listed(origin):
            return None
        if same_origin(origin, host):
            return None
        return (
            f"a web page from {origin.strip()[:SHOWN]} may not use this server; if you trust that page, "
            "add it to serve.allowed_origins (VOICECHAT_SERVE_ALLOWED_ORIGINS)"
        )


def same_origin(origin: str, host: str | None) -> bool:
    """The page's origin names the same host and port as the request (the scheme is the proxy's business)."""
    if host is None:
        return False
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or not rest or "/" in rest:
        return False  # "null" (a sandboxed page, a file), or garbage
    o_name, o_port = split_host(rest)
    h_name, h_port = split_host(host)
    return o_name == h_name and _default_port(scheme, o_port) == _default_port(scheme, h_port)


# content types ----------------------------------------------------------------------------------


def media_type(value: str | None) -> str:
    """'Application/JSON; charset=utf-8' -> 'application/json'."""
    return (value or "").split(";", 1)[0].strip().lower()
