"""Asking the user before a tool that changes things runs: a terminal prompt (chat), or the next typed
line while the live view runs (talk). No answer in time is a no."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from voicechat.tools.base import Tool, short

WAIT_S = 60.0


def question(tool: Tool, args: dict[str, Any]) -> str:
    return f"allow {tool.name} ({tool.source}) with {short(json.dumps(args, ensure_ascii=False), 200)}? [y/N]"


def is_yes(answer: str) -> bool:
    return answer.strip().lower() in ("y", "yes")


class PromptConfirmation:
    """Ask on the terminal and read the answer (a typed chat, where the conversation waits anyway)."""

    def __init__(self, ask: Callable[[str], str]) -> None:
        self.ask = ask

    def __call__(self, tool: Tool, args: dict[str, Any]) -> bool:
        try:
            return is_yes(self.ask(question(tool, args) + " "))
        except (EOFError, KeyboardInterrupt):
            return False


class TypedConfirmation:
    """Say the question as a notice and take the next typed line as the answer (talk's keyboard)."""

    def __init__(self, notice: Callable[[str], None], stop: threading.Event, wait_s: float = WAIT_S) -> None:
        self.notice, self.stop, self.wait_s = notice, stop, wait_s
        self._lock = threading.Lock()
        self._answer: list[str] = []
        self._answered: threading.Event | None = None

    def __call__(self, tool: Tool, args: dict[str, Any]) -> bool:
        answered = threading.Event()
        with self._lock:
            self._answer, self._answered = [], answered
        self.notice(question(tool, args) + f" (type y and Enter; no answer in {self.wait_s:g} s is a no)")
        waited = 0.0
        while not answered.wait(0.1):
            waited += 0.1
            if self.stop.is_set() or waited >= self.wait_s:
                break
        with self._lock:
            self._answered = None
            return bool(self._answer) and is_yes(self._answer[0])

    def answer(self, line: str) -> bool:
        """Take a typed line as the answer if a question is waiting (True: the line was used)."""
        with self._lock:
            if self._answered is None:
                return False
            self._answer.append(line)
            self._answered.set()
            return True


class ServerConfirmation:
    """A server session has no terminal to ask: a tool that needs a yes runs only when the server's config
    names it (tools.server_allow); any other is refused with a result that says so."""

    def __init__(self, allowed: set[str] | frozenset[str]) -> None:
        self.allowed = frozenset(allowed)

    def __call__(self, tool: Tool, args: dict[str, Any]) -> bool:
        from voicechat.tools.base import ToolError

        if tool.name in self.allowed:
            return True
        raise ToolError(
            f"not run: '{tool.name}' ({tool.source}) needs a person's yes, and a server session cannot ask for one; "
            "the server's operator can allow it by name in tools.server_allow"
        )


def names(text: str | None) -> set[str]:
    """The tool names of a comma list (tools.server_allow)."""
    return {n.strip() for n in (text or "").split(",") if n.strip()}
