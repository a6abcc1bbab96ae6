"""Tool definitions and results fitted to the model's context, with room left for the answer.

A round of a turn with tools sends the conversation, the tools' definitions and the calls and results
so far. On a small context (the bundled SmolLM2 has 2048 tokens) that overflows after a few calls, and
llama.cpp then answers nothing. Before each round the prompt is counted with the engine's own tokenizer
and, while it does not fit, cut in this order:

1. this turn's tool results, the longest first, down to MIN_RESULT_CHARS each;
2. the tool definitions, to their names, a short description and their arguments' names and types;
3. earlier rounds of the conversation, the oldest first (the system prompt and the question stay);
4. the tools themselves: the round is answered without them.

What is left over is the engine's to refuse (it says so in one line)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicechat.engines.base import Message, ToolSpec

PER_MESSAGE = 8  # a message's role tokens and voicechat's own head ("message:", "functions.NAME returned:")
MIN_RESULT_CHARS = 200
SHORT_DESCRIPTION = 80
CUT = " … [cut to fit the context]"


@dataclass(frozen=True)
class Fitted:
    messages: list[Message]
    tools: list[ToolSpec]  # empty: answer without tools
    tokens: int  # the prompt's estimated size
    cut: tuple[str, ...] = ()  # what was cut, for --debug and tests


def short_spec(spec: ToolSpec) -> ToolSpec:
    """A definition with a one-line description and its arguments' descriptions left out."""
    params: Any = spec.parameters
    if isinstance(params, dict) and isinstance(params.get("properties"), dict):
        props = {
            k: {x: y for x, y in v.items() if x != "description"} if isinstance(v, dict) else v for k, v in params["properties"].items()
        }
        params = {**params, "properties": props}
    text = spec.description.split(". ")[0].strip()
    if len(text) > SHORT_DESCRIPTION:
        text = text[: SHORT_DESCRIPTION - 1] + "…"
    return replace(spec, description=text, parameters=params)


def fit(
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    *,
    count: Callable[[str], int],
    describe: Callable[[Sequence[ToolSpec]], str],
    window: int,
    answer: int,
) -> Fitted:
    """``messages`` and ``tools`` cut until they and ``answer`` tokens fit ``window`` (see the module)."""
    msgs, specs = list(messages), list(tools)
    cut: list[str] = []
    cache: dict[str, int] = {}

    def cost(text: str) -> int:
        if text not in cache:
            cache[text] = count(text)
        return cache[text]

    def size() -> int:
        total = sum(cost(m.content) + sum(cost(c.arguments) + 4 for c in m.tool_calls) + PER_MESSAGE for m in msgs)
        return total + (cost(describe(specs)) if specs else 0)

    room = window - answer
    if size() <= room:
        return Fitted(msgs, specs, size())
    last_user = max((i for i, m in enumerate(msgs) if m.role == "user"), default=0)
    # 1. this turn's results, the longest first
    while size() > room:
        results = [
            i for i in range(last_user + 1, len(msgs)) if msgs[i].role == "tool" and len(msgs[i].content) > MIN_RESULT_CHARS + len(CUT)
        ]
        if not results:
            break
        i = max(results, key=lambda k: len(msgs[k].content))
        over = size() - room
        content = msgs[i].content
        keep = max(MIN_RESULT_CHARS, len(content) - len(CUT) - max(over * 4, len(content) // 2))
        msgs[i] = replace(msgs[i], content=content[:keep] + CUT)
        cut.append(f"result {msgs[i].name}")
    # 2. shorter definitions
    if size() > room and specs:
        specs = [short_spec(s) for s in specs]
        cut.append("definitions")
    # 3. earlier rounds, the oldest first (a user message and what follows it, up to the next user message)
    while size() > room:
        first = next((i for i, m in enumerate(msgs) if m.role != "system"), None)
        if first is None or first >= last_user:
            break
        end = next((i for i in range(first + 1, len(msgs)) if msgs[i].role == "user"), last_user)
        del msgs[first:end]
        last_user -= end - first
        cut.append("earlier round")
    # 4. no tools
    if size() > room and specs:
        specs = []
        cut.append("tools")
    return Fitted(msgs, specs, size(), tuple(cut))


def describe_for(engine: str) -> Callable[[Sequence[ToolSpec]], str]:
    """The text an engine sends for the tool definitions: voicechat's short form for llama.cpp, JSON schemas otherwise."""
    if engine == "llama-cpp":
        from voicechat.engines.llama_tools import describe

        return describe
    return lambda specs: json.dumps([s.to_openai() for s in specs])
