"""One turn's tool calls that failed, and when to stop offering tools.

A call that failed is never run again with the same arguments in the same turn: the model gets the
first error once more, without the tool running. A round in which every call failed counts against
the model; after ``retries`` such rounds in a row past the first (one retry by default) the turn is
answered without tools. When the failures were the model's (a call the tools refused: an unknown tool,
arguments that do not fit, input the tool cannot take) rather than the tool's (a timeout, a server
down), the user is told, once per session, that this model handles tools poorly.

A model that asks again for a call that already worked (the same arguments) has what it needs and is
looping: the turn is answered at once, without tools, from the results it has.

A pure state machine: fed the calls and their results, it decides; chat.py runs the rounds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voicechat.engines.base import ToolCall
    from voicechat.tools.base import ToolResult

ADVICE = "`voicechat models list --kind llm` lists models that call tools reliably"


def key(name: str, arguments: str) -> tuple[str, str]:
    """A call's identity: its name and its arguments as canonical JSON (spacing and key order aside)."""
    try:
        text = json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        text = " ".join(arguments.split())
    return name, text


@dataclass
class Attempts:
    retries: int = 1  # rounds of failed calls allowed after the first
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # call -> its error
    failed_rounds: int = 0  # rounds in a row in which every call failed
    model_fault: bool = False  # some failure was a call the tools refused (not a tool that broke)
    worked: set[tuple[str, str]] = field(default_factory=set)  # calls that gave a result
    answer_now: bool = False  # the model asked again for results it has

    def earlier_error(self, call: ToolCall) -> str | None:
        """The error this very call gave earlier in the turn, or None: a call seen failing is not run again."""
        return self.failed.get(key(call.name, call.arguments))

    def repeats(self, calls: Sequence[ToolCall]) -> bool:
        """Every call of a round is one that already worked this turn: nothing to run, the model is to answer."""
        if calls and all(key(c.name, c.arguments) in self.worked for c in calls):
            self.answer_now = True
        return self.answer_now

    def round_done(self, calls: Sequence[ToolCall], results: Sequence[ToolResult]) -> None:
        for call, result in zip(calls, results, strict=False):
            if not result.error:
                self.worked.add(key(call.name, call.arguments))
            else:
                self.failed.setdefault(key(call.name, call.arguments), result.text)
                self.model_fault = self.model_fault or result.refused
        if results and all(r.error for r in results):
            self.failed_rounds += 1
        else:
            self.failed_rounds = 0

    @property
    def exhausted(self) -> bool:
        """No usable call after the retries."""
        return self.failed_rounds > self.retries

    @property
    def give_up(self) -> bool:
        """Answer this turn without tools: no usable call after the retries, or the model repeats what worked."""
        return self.exhausted or self.answer_now


def poor_tools_notice(model: str) -> str:
    return (
        f"the chat model {model} handles tools poorly: its tool calls failed after a retry, so the turn was answered "
        f"without tools; for a model that calls tools, {ADVICE}"
    )
