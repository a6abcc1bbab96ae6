"""Typed events from the talk pipeline to whoever renders them (rich live view, JSON lines, plain text)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Event:
    def to_dict(self) -> dict[str, Any]:
        return {"type": EVENT_NAMES[type(self)], **asdict(self)}


@dataclass
class Status(Event):
    state: str  # listening | hearing | thinking | speaking | recording | idle


@dataclass
class UserText(Event):
    text: str
    source: str  # voice | typed


@dataclass
class ReplyDelta(Event):
    text: str


@dataclass
class ReplyDone(Event):
    text: str  # what was actually played (or written)
    interrupted: bool = False


@dataclass
class TurnStats(Event):
    latency: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    estimated: bool = False


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
    session_id: int | None


EVENT_NAMES = {
    Status: "status", UserText: "user", ReplyDelta: "reply_delta", ReplyDone: "reply", TurnStats: "turn_stats",
    Notice: "notice", Error: "error", Dropped: "dropped", Summary: "summary",
}
