"""The server's tools: the built-ins and MCP servers of the config, started once and shared by every session.

A server session uses the same :class:`~voicechat.tools.box.ToolBox` as `talk --tools`, with two
differences: the calls of all sessions together are bounded (tools.server_concurrency; a call past the
bound waits tools.server_wait_s, then the model reads a refusal), and a tool that needs a person's yes
is refused, there being no terminal to ask, unless tools.server_allow names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.engines.base import ChatModel
    from voicechat.tools.box import ToolBox


def open_server_tools(cfg: Config, llm: ChatModel, notice: Callable[[str], None]) -> ToolBox | None:
    """The shared tools when tools.enabled (or `serve --tools`) and the chat engine can call them; None otherwise.
    MCP servers that cannot start cost their tools only (``notice`` says why); a wrong config raises ConfigError."""
    if not cfg.tools.enabled:
        return None
    if not llm.supports_tools:
        notice(f"the chat engine '{cfg.llm.engine}' cannot call tools; voice sessions have no tools")
        return None
    from voicechat.tools.box import build
    from voicechat.tools.confirm import ServerConfirmation, names
    from voicechat.tools.gate import Gate

    gate = Gate(cfg.tools.server_concurrency, cfg.tools.server_wait_s)
    box = build(cfg, notice, gate=gate)
    allowed = names(cfg.tools.server_allow)
    box.confirm = ServerConfirmation(allowed)
    unknown = sorted(allowed - set(box.tools))
    if unknown:
        notice(f"tools.server_allow names {', '.join(unknown)}, which no tool offered here is called")
    notice(describe(box, allowed))
    return box


def describe(box: ToolBox, allowed: set[str]) -> str:
    """One line for the operator: what sessions may call, and what is refused for want of a yes."""
    refused = [t.name for t in box.tools.values() if t.confirm and t.name not in allowed]
    slots = box.gate.slots if box.gate is not None else 1
    line = f"tools for voice sessions: {', '.join(box.tools) or 'none'} ({slots} call{'s' if slots != 1 else ''} at a time)"
    if refused:
        line += f"; refused, as they need a yes: {', '.join(refused)} (tools.server_allow)"
    return line
