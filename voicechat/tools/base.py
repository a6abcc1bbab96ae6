"""A tool: its spec for the model, the function that runs it, and what a call gave back."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicechat.engines.base import ToolSpec

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI-compatible servers accept as a function name


class ToolError(Exception):
    """A tool could not do its job; the message goes to the model as the result, and to the user."""


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    run: Callable[[dict[str, Any]], str]  # checked arguments -> result text; raises ToolError
    source: str = "built-in"  # built-in | mcp:<server>
    confirm: bool = False  # changes something: ask the user before each call
    worker: str | None = None  # "module:function" of ``run`` for pure-Python tools: run in a process the deadline can kill

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class ToolResult:
    """One call as it happened: for the model (``text``), the live view, --json and the history."""

    name: str
    arguments: str
    text: str
    error: bool = False
    seconds: float = 0.0
    source: str = ""
    refused: bool = False  # (with error) the call itself was wrong: no such tool, arguments that do not fit, input refused
    handed_off: bool = False  # run by the caller's client, not here: the turn ends at this call; its result comes later

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arguments": self.arguments,
            "result": self.text,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "source": self.source,
        }


@dataclass
class ToolEvent:
    """What the session tells its front end while a tool runs: ``call`` (starting), ``slow`` (still
    running after tools.filler_after_s) and ``result``."""

    phase: str
    name: str
    arguments: str = ""
    result: ToolResult | None = field(default=None)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


def check_arguments(schema: dict[str, Any], args: Any) -> dict[str, Any]:
    """The arguments if they fit the schema's top level (types, required, unknown keys, string lengths);
    else a ToolError that says what is wrong, for the model to correct."""
    if not isinstance(args, dict):
        raise ToolError(f"arguments must be a JSON object, not {type(args).__name__}")
    props: dict[str, Any] = schema.get("properties") or {}
    for key in schema.get("required") or ():
        if key not in args:
            raise ToolError(f"missing argument '{key}'")
    for key, value in args.items():
        if key not in props:
            if schema.get("additionalProperties") is False:
                raise ToolError(f"unknown argument '{str(key)[:40]}'; expected {', '.join(props) or 'none'}")
            continue
        prop = props[key] if isinstance(props[key], dict) else {}
        kind = prop.get("type")
        expected = _TYPES.get(kind) if isinstance(kind, str) else None
        if expected is not None and (not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool))):
            article = "an" if kind in ("integer", "object", "array") else "a"
            raise ToolError(f"argument '{key}' must be {article} {kind}, not {type(value).__name__}")
        if isinstance(value, str) and "maxLength" in prop and len(value) > prop["maxLength"]:
            raise ToolError(f"argument '{key}' is {len(value)} characters long; at most {prop['maxLength']}")
        if "enum" in prop and value not in prop["enum"]:
            raise ToolError(f"argument '{key}' must be one of {', '.join(map(str, prop['enum']))}")
    return args


def short(text: str, limit: int = 100) -> str:
    """One line of at most ``limit`` characters, for the live view."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def call_line(name: str, arguments: str) -> str:
    return f"⚙ {name} {short(arguments, 80)}"


def result_line(name: str, text: str, error: bool, seconds: float) -> str:
    if error:
        return f"⚙ {name} failed: {short(text, 160)}"
    return f"⚙ {name} → {short(text)} ({seconds:.2f} s)"
