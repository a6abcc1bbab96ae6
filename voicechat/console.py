"""Consoles and the error boundary between voicechat and the user's terminal."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, TypeVar

import typer

from voicechat.errors import VoicechatError, scrub

F = TypeVar("F", bound=Callable[..., Any])

_state = {"debug": bool(os.environ.get("VOICECHAT_DEBUG")), "config": None}


def set_globals(*, debug: bool, config: str | None) -> None:
    _state["debug"] = debug or bool(os.environ.get("VOICECHAT_DEBUG"))
    _state["config"] = config


def debug() -> bool:
    return bool(_state["debug"])


def config_file() -> str | None:
    return _state["config"]  # type: ignore[return-value]


def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    """Print one error line to stderr (no markup interpretation)."""
    sys.stderr.write(f"voicechat: error: {scrub(message)}\n")
    sys.stderr.flush()


def handle_errors(fn: F) -> F:
    """Turn VoicechatError (and anything unexpected) into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except VoicechatError as e:
            if debug():
                raise
            fail(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            if debug():
                raise
            sys.stderr.write("voicechat: interrupted\n")
            raise typer.Exit(130) from None
        except Exception as e:  # the last line of defence: one line, no traceback
            if debug():
                raise
            fail(f"unexpected {type(e).__name__}: {e} (run with --debug for the traceback)")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def load_config(overrides: dict[str, Any] | None = None) -> Any:
    from voicechat.config import resolve

    return resolve(config_file(), overrides)
