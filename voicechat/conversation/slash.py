"""The in-session commands (/clear, /tokens, /mode, /quit): one table for `chat`, `talk` and any front end.

A front end hands a line that starts with "/" to :func:`run` with its target (an object with the
methods the commands call) and shows the message it gets back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Target(Protocol):
    modes: bool  # the target can switch between voice activity and push-to-talk

    def clear(self) -> None: ...

    def tokens_line(self) -> str: ...

    def toggle_mode(self) -> str: ...


@dataclass(frozen=True)
class Command:
    help: str
    run: Callable[[Any], str]
    needs_modes: bool = False
    quits: bool = False


def _clear(t: Target) -> str:
    t.clear()
    return "conversation cleared"


COMMANDS: dict[str, Command] = {
    "/clear": Command("forget the conversation (the history keeps it)", _clear),
    "/tokens": Command("tokens, cost and latency so far", lambda t: t.tokens_line()),
    "/mode": Command("switch between voice activity and push-to-talk", lambda t: t.toggle_mode(), needs_modes=True),
    "/quit": Command("end the session", lambda t: "", quits=True),
}
ALIASES = {"/exit": "/quit", "/q": "/quit"}
MODES = ("vad", "ptt")  # voice activity detection, push-to-talk


@dataclass(frozen=True)
class Outcome:
    message: str = ""
    quit: bool = False


def names(target: Target) -> list[str]:
    return [n for n, c in COMMANDS.items() if target.modes or not c.needs_modes]


def name(line: str) -> str:
    """The command a line names, aliases resolved ("/q" -> "/quit"); "/" for none."""
    word = line.split()[0].lower() if line.split() else "/"
    return ALIASES.get(word, word)


def run(line: str, target: Target) -> Outcome:
    """Carry out a slash command line."""
    word = name(line)
    command = COMMANDS.get(word)
    if command is None or (command.needs_modes and not target.modes):
        return Outcome(f"unknown command {word}; use {', '.join(names(target))}")
    return Outcome(command.run(target), command.quits)
