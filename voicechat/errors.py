"""The one error type users see, and secret scrubbing for anything printed."""

from __future__ import annotations

import re


class VoicechatError(Exception):
    """An error with a one-line message that says what went wrong and how to fix it.

    The CLI prints ``message`` on one line and exits with ``exit_code``; ``--debug``
    re-raises it with its traceback.
    """

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return scrub(self.message)


class ConfigError(VoicechatError):
    exit_code = 2


class EngineUnavailable(VoicechatError):
    """An engine whose package or model is missing."""


class StreamCut(VoicechatError):
    """A remote stream that broke midway; ``partial`` holds what arrived."""

    def __init__(self, message: str, partial: str = "") -> None:
        super().__init__(message)
        self.partial = partial


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup runs as it does for Ctrl-C."""


_secrets: set[str] = set()
_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+")


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`scrub` removes it from anything shown."""
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    """Replace every registered secret (and anything shaped like an OpenAI key) with ***."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub(r"\1***", text)


def mask(value: str | None) -> str | None:
    if not value:
        return value
    return "***" if len(value) < 12 else f"{value[:3]}***{value[-2:]}"
