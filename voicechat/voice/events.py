"""Typed events from a voice session to whoever shows them (live view, JSON lines, a server)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from voicechat.voice.timing import TurnTiming


@dataclass
class Event:
    def to_dict(self) -> dict[str, Any]:
        return {"type": EVENT_NAMES[type(self)], **asdict(self)}


@dataclass
class Status(Event):
    state: str  # listening | hearing | thinking | speaking | recording | idle | asleep (waiting for the wake word)


@dataclass
class Speech(Event):
    """The user's speech: ``started`` (voice while listening, or speech over a reply that stops it) or
    ``ended`` (the turn is complete and goes to be answered). Front ends that play the reply themselves
    stop playing at ``started``."""

    phase: str  # started | ended


@dataclass
class Partial(Event):
    """The transcript so far while the user is still speaking (it may still change)."""

    text: str


@dataclass
class UserText(Event):
    text: str
    source: str  # voice | typed
    language: str | None = None  # the turn's language (ISO 639-1, e.g. "de"), detected or declared; None: not known


@dataclass
class ReplyDelta(Event):
    text: str


@dataclass
class ReplyDone(Event):
    text: str  # what was actually played (or written)
    interrupted: bool = False


@dataclass
class TurnStats(Event):
    timing: TurnTiming = field(default_factory=TurnTiming)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    estimated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "turn_stats",
            "latency": self.timing.to_dict(),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "estimated": self.estimated,
        }


@dataclass
class ToolCalled(Event):
    """The model called a tool; it is running."""

    name: str
    arguments: str  # the JSON text the model wrote (cut, control characters removed)


@dataclass
class ToolDone(Event):
    """A tool call's result (or error), as the model will read it."""

    name: str
    result: str
    error: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"type": "tool_result", "name": self.name, "result": self.result, "error": self.error, "seconds": round(self.seconds, 3)}


@dataclass
class Notice(Event):
    message: str


@dataclass
class Error(Event):
    message: str


@dataclass
class Dropped(Event):
    reason: str


@dataclass
class Summary(Event):
    turns: int
    p50: float | None
    p95: float | None
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    cost: float | None
    session_id: int | str | None  # the history's number; over `talk --server`, the server's public id


EVENT_NAMES = {
    Status: "status",
    Speech: "speech",
    Partial: "partial",
    UserText: "user",
    ReplyDelta: "reply_delta",
    ReplyDone: "reply",
    TurnStats: "turn_stats",
    ToolCalled: "tool_call",
    ToolDone: "tool_result",
    Notice: "notice",
    Error: "error",
    Dropped: "dropped",
    Summary: "summary",
}


def from_dict(d: dict[str, Any]) -> Event | None:
    """An event back from its JSON form (a thin client showing a server's session); None for other messages."""
    from dataclasses import fields

    by_name: dict[str, type[Event]] = {name: cls for cls, name in EVENT_NAMES.items()}
    name = d.get("type")
    kind = by_name.get(name) if isinstance(name, str) else None
    if kind is None:
        return None
    if kind is TurnStats:
        return TurnStats(
            TurnTiming.from_dict(d.get("latency") or {}), d.get("prompt_tokens"), d.get("completion_tokens"), bool(d.get("estimated"))
        )
    names = {f.name for f in fields(kind)}
    try:
        event: Event = kind(**{k: v for k, v in d.items() if k in names})
    except TypeError:
        return None
    return event
