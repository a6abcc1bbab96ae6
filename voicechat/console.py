"""Consoles and the error boundary between voicechat and the user's terminal."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer

from voicechat.errors import Terminated, VoicechatError, scrub

if TYPE_CHECKING:
    import threading

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class _Globals:
    debug: bool
    config: str | None  # --config: the config file named on the command line


_state = _Globals(debug=bool(os.environ.get("VOICECHAT_DEBUG")), config=None)


def set_globals(*, debug: bool, config: str | None) -> None:
    _state.debug = debug or bool(os.environ.get("VOICECHAT_DEBUG"))
    _state.config = config
    install_scrubbing_excepthook()


def _scrubbing_excepthook(exc_type: Any, exc: BaseException, tb: Any) -> None:
    """Print a traceback (--debug) with every known secret removed.

    A server may echo the API key in its error body, and SDK exceptions carry that
    text: the traceback would show it in full.
    """
    import traceback

    sys.stderr.write(scrub("".join(traceback.format_exception(exc_type, exc, tb))))
    sys.stderr.flush()


def _scrubbing_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    import traceback

    name = args.thread.name if args.thread is not None else "?"
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    sys.stderr.write(scrub(f"Exception in thread {name}:\n{text}"))
    sys.stderr.flush()


def debug_traceback(exc: BaseException) -> None:
    """With --debug, show the traceback of an error that was handled (and so not raised), scrubbed."""
    if debug():
        _scrubbing_excepthook(type(exc), exc, exc.__traceback__)


def install_scrubbing_excepthook() -> None:
    import threading

    sys.excepthook = _scrubbing_excepthook
    threading.excepthook = _scrubbing_thread_excepthook


def debug() -> bool:
    return _state.debug


def config_file() -> str | None:
    return _state.config


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


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def catch_sigterm() -> None:
    """SIGTERM ends the calling command like Ctrl-C does: files are finished or removed, not left half-written.

    Opt-in, per command: talk has its own signal handling (its threads must stop before
    its engines close), so this is not applied to every command."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn VoicechatError (and anything unexpected) into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except VoicechatError as e:
            if debug():
                raise
            fail(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            if debug():
                raise
            terminated = isinstance(e, Terminated)
            sys.stderr.write("voicechat: terminated\n" if terminated else "voicechat: interrupted\n")
            raise typer.Exit(143 if terminated else 130) from None
        except OSError as e:  # a file the command touched: name it, and say a full disk as a full disk
            if debug():
                raise
            if e.filename is None:
                fail(f"unexpected {type(e).__name__}: {e} (run with --debug for the traceback)")
            else:
                from voicechat.errors import file_error

                fail(str(file_error(e.filename, e, "use")))
            raise typer.Exit(1) from None
        except Exception as e:  # the last line of defence: one line, no traceback
            if debug():
                raise
            fail(f"unexpected {type(e).__name__}: {e} (run with --debug for the traceback)")
            raise typer.Exit(1) from None

    return wrapper


def load_config(overrides: dict[str, Any] | None = None) -> Any:
    from voicechat.config import resolve

    return resolve(config_file(), overrides)
