"""The one error type users see, and secret scrubbing for anything printed."""

from __future__ import annotations

import errno
import os
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


def disk_full(e: BaseException) -> bool:
    """ENOSPC or EDQUOT: the disk (or the user's quota) has no room left."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def no_room(path: object) -> bool:
    """Whether the disk holding path (a file or a folder, existing or not) has next to no space or no inode left."""
    from pathlib import Path

    here = Path(str(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    try:
        st = os.statvfs(here)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024 or (st.f_files > 0 and st.f_favail == 0)


def file_error(path: object, e: OSError, doing: str = "write") -> VoicechatError:
    """One line for an OS error on a file the user named: the file, what happened, what to do.

    A full disk is said as a full disk; every other errno names the file too (never an
    "unexpected OSError" that leaves the user to guess which of their files it was)."""
    if e.errno == errno.ENOSPC:
        return VoicechatError(f"cannot {doing} {path}: no space left on the disk holding it; free some space and try again")
    if e.errno == errno.EDQUOT:
        return VoicechatError(f"cannot {doing} {path}: disk quota exceeded on the disk holding it; free some space and try again")
    if e.errno == errno.EROFS:
        return VoicechatError(f"cannot {doing} {path}: the file system is read-only; choose a writable place")
    if e.errno in (errno.EACCES, errno.EPERM):
        return VoicechatError(f"cannot {doing} {path}: permission denied; fix its permissions or choose another place")
    if e.errno == errno.EIO:
        return VoicechatError(f"cannot {doing} {path}: input/output error (the disk or its connection failed); check the disk")
    reason = e.strerror or (os.strerror(e.errno) if e.errno else type(e).__name__)
    return VoicechatError(f"cannot {doing} {path}: {reason}; check the disk and the path")


_secrets: set[str] = set()
_KEY_PATTERN = re.compile(r"\b((?:sk-|ek_)[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+")  # OpenAI keys, and the ephemeral ek_ keys serve mints


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`scrub` removes it from anything shown."""
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    """Replace every registered secret (and anything shaped like an OpenAI or ephemeral realtime key) with ***."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub(r"\1***", text)


def mask(value: str | None) -> str | None:
    if not value:
        return value
    return "***" if len(value) < 12 else f"{value[:3]}***{value[-2:]}"
