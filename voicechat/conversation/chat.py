"""A conversation: memory, the chat engine, token totals and the history log. Shared by `chat` and `talk`."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from voicechat.conversation.history import History, Turn, UnavailableHistory
from voicechat.conversation.memory import Memory
from voicechat.conversation.tool_attempts import Attempts, poor_tools_notice
from voicechat.engines.base import Message, TextDelta, ToolCall, Usage
from voicechat.errors import StreamCut, VoicechatError

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.engines.base import ChatModel, ChatStream, SpeechToText, TextToSpeech, ToolSpec
    from voicechat.tools.base import ToolEvent, ToolResult
    from voicechat.tools.box import ToolBox


MAX_REFUSED_ROUNDS = 3  # rounds of calls to tools not offered that get a refusal to read; after that the turn ends


@dataclass
class Totals:
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    estimated: bool = False
    latencies: list[float] = field(default_factory=list)  # voice-to-voice (talk) or to first token (chat)

    def add(self, usage: Usage | None, cost: float | None) -> None:
        self.turns += 1
        if usage:
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens
            self.estimated = self.estimated or usage.estimated
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost


@dataclass
class Reply:
    """How one streamed reply went."""

    text: str = ""
    usage: Usage | None = None
    first_token: float | None = None  # seconds from the request to the first token
    interrupted: bool = False  # cut short (cancelled, Ctrl-C, or the stream broke): the text is what arrived
    error: str | None = None  # what went wrong, for the user
    failed: bool = False  # no usable reply at all: nothing to remember or log
    keyboard: bool = False  # the cut came from Ctrl-C
    exception: BaseException | None = None  # what went wrong, for --debug
    tools: list[ToolResult] = field(default_factory=list)  # the tool calls made for this reply, in order


class Conversation:
    def __init__(
        self,
        config: Config,
        llm: ChatModel,
        *,
        kind: str,
        log: bool,
        resume: int | None = None,
        engines: dict[str, str | None] | None = None,
        history: History | UnavailableHistory | None = None,
        tools: ToolBox | None = None,
    ) -> None:
        self.config = config
        self.llm = llm
        self.tools = tools if tools is not None and llm.supports_tools else None
        self.kind = kind
        self.engines = engines or {}
        self.history = history
        self.log = log and history is not None
        self.session_id: int | None = None
        self.on_recorded: Callable[[int | None], None] | None = None  # after each turn is committed (a server tells its client the id)
        self.on_notice: Callable[[str], None] | None = None  # what the front end shows as a notice (once-per-session advice)
        self._told_poor_tools = False
        self.totals = Totals()
        self._clear_pending = False
        from voicechat.conversation.turnlog import TurnLog  # a failing history never costs the conversation

        system_prompt = config.llm.system_prompt
        if self.tools is not None:
            from voicechat.tools.box import INSTRUCTION

            system_prompt = f"{system_prompt}\n\n{INSTRUCTION}".strip()
        self.turnlog = TurnLog(history, kind, system_prompt=system_prompt, engines=self.engines)
        self.memory = Memory(
            system_prompt=system_prompt,
            max_rounds=config.memory.max_rounds,
            max_context_tokens=config.memory.max_context_tokens,
            count_tokens=llm.count_tokens,
        )
        if self.tools is not None:  # the tool definitions and a result share the context with the conversation
            import json

            reserved = llm.count_tokens(json.dumps([t.to_openai() for t in self.tools.specs()])) + config.tools.result_chars // 4
            self.memory.max_context_tokens = max(64, self.memory.max_context_tokens - reserved)
        if resume is not None and isinstance(history, History):  # (an unavailable history is never resumed from)
            past = history.turns(resume)
            self.session_id = resume
            start = max((i for i, t in enumerate(past) if t.cleared_before), default=0)
            for t in past[start:]:
                self.memory.add(t.user_text, t.assistant_text)
            self.resumed_turns = len(past)
        else:
            self.resumed_turns = 0

    def ask(self, user_text: str) -> ChatStream:
        """Stream the reply to user_text. The caller records the turn with :meth:`record`."""
        return self.llm.stream(self.memory.messages_for(user_text))

    def stream_reply(
        self,
        user_text: str,
        on_delta: Callable[[str], None],
        cancelled: Callable[[], bool] = lambda: False,
        on_tool: Callable[[ToolEvent], None] | None = None,
    ) -> Reply:
        """Stream the reply to user_text, handing each piece of text to on_delta (which may block).

        The one loop that consumes a chat stream, for every front end. With tools on, each call the
        model makes is run (on_tool hears of it), its result goes back to the model, and the model is
        asked again, until it answers in words or tools.max_calls is reached. It does not record the
        turn: the caller knows what was finally heard (:meth:`record`).
        """
        reply = Reply()
        parts: list[str] = []
        started = time.perf_counter()
        messages = self.memory.messages_for(user_text)
        force = self.config.tools.force if self.tools is not None else None
        refused_rounds = 0  # rounds in which the model called tools it was not offered
        attempts = Attempts()  # the calls that failed this turn (see tool_attempts)
        while True:
            calls: list[ToolCall] = []
            round_start = len(parts)
            offer = self.tools is not None and len(reply.tools) < self.config.tools.max_calls and not attempts.give_up
            specs = self.tools.specs() if offer and self.tools is not None else []
            if attempts.give_up:  # answered without tools, and without the calls that failed (they confuse a small model)
                messages = _without_failed_calls(messages)
            sent, specs = self._fit(messages, specs)
            offer = bool(specs)
            stream = self.llm.stream(sent, tools=specs, tool_choice=force) if offer else self.llm.stream(sent)
            try:
                for event in stream:
                    if cancelled():
                        reply.interrupted = True
                        break
                    if isinstance(event, TextDelta):
                        if reply.first_token is None:
                            reply.first_token = time.perf_counter() - started
                        parts.append(event.text)
                        on_delta(event.text)
                    elif isinstance(event, ToolCall):
                        calls.append(event)
                    else:
                        reply.usage = _add_usage(reply.usage, event)
            except KeyboardInterrupt:
                reply.interrupted = reply.keyboard = True
            except StreamCut as e:
                reply.interrupted = True
                reply.error, reply.exception = str(e), e
                if e.partial and len(parts) == round_start:
                    parts.append(e.partial)
            except VoicechatError as e:
                # after tool calls the turn is kept (what ran is recorded), as a reply cut short
                reply.failed = not reply.tools
                reply.interrupted = bool(reply.tools)
                reply.error, reply.exception = str(e), e
            finally:
                stream.close()
            if not calls or reply.interrupted or reply.failed or reply.error:
                break
            if not offer:  # a call the model was not offered: refused, and the model asked once more for words
                refused_rounds += 1
                if refused_rounds > MAX_REFUSED_ROUNDS:
                    if len(parts) == round_start and not "".join(parts).strip():
                        reply.error = (
                            "the model kept asking for tools it was not offered and gave no answer; "
                            "ask again, or turn tools on with --tools (tools.enabled)"
                        )
                        reply.failed = not reply.tools
                    break
            if offer and attempts.repeats(calls):  # asked again for results it has: it answers now, without tools
                continue
            messages = messages + [Message("assistant", "".join(parts[round_start:]).strip(), tool_calls=tuple(calls))]
            ran = len(reply.tools)
            messages += self._run_tools(calls, reply, on_tool, cancelled, attempts) if offer else self._refuse(calls, on_tool)
            if offer:
                attempts.round_done(calls, reply.tools[ran:])
                if attempts.exhausted and attempts.model_fault and not self._told_poor_tools:
                    self._told_poor_tools = True  # once per session
                    if self.on_notice is not None:
                        self.on_notice(poor_tools_notice(self.llm.model_name or self.config.llm.engine))
            force = None
            if any(r.handed_off for r in reply.tools):  # a call the client runs (a realtime session): its result is a later turn
                break
            if cancelled():
                reply.interrupted = True
                break
            if parts and not parts[-1][-1:].isspace():  # the next round's words do not run into this one's
                parts.append(" ")
                on_delta(" ")
        reply.text = "".join(parts).strip()
        return reply

    def _fit(self, messages: list[Message], specs: list[ToolSpec]) -> tuple[list[Message], list[ToolSpec]]:
        """The round's messages and tools cut to the model's context where voicechat knows its size (a local
        model's llm.context_size), with room for the answer or a call (see tool_budget)."""
        if self.llm.name != "llama-cpp" or (not specs and not any(m.role == "tool" for m in messages)):
            return messages, specs
        from voicechat.conversation import tool_budget
        from voicechat.engines.llama_tools import ARGUMENT_TOKENS

        answer = max(self.config.llm.max_tokens, ARGUMENT_TOKENS + 32) if specs else self.config.llm.max_tokens
        fitted = tool_budget.fit(
            messages,
            specs,
            count=self.llm.count_tokens,
            describe=tool_budget.describe_for(self.llm.name),
            window=self.config.llm.context_size,
            answer=answer,
        )
        return fitted.messages, fitted.tools

    def _run_tools(
        self,
        calls: list[ToolCall],
        reply: Reply,
        on_tool: Callable[[ToolEvent], None] | None,
        cancelled: Callable[[], bool],
        attempts: Attempts | None = None,
    ) -> list[Message]:
        """Run the model's calls in order; every call gets a result message (an error one when refused).
        A call that already failed this turn with the same arguments is not run again: it gets that error."""
        from voicechat.tools.base import ToolEvent, ToolResult
        from voicechat.tools.box import clean

        if self.tools is None:  # never offered: see _refuse
            return self._refuse(calls, on_tool)
        tell = on_tool or (lambda event: None)
        out = []
        for call in calls:
            if cancelled() or len(reply.tools) >= self.config.tools.max_calls:
                out.append(Message("tool", "not run: the turn ended or too many tool calls", tool_call_id=call.id, name=call.name))
                continue
            tell(ToolEvent("call", clean(call.name)[:64], clean(call.arguments[:500])))
            earlier = attempts.earlier_error(call) if attempts is not None else None
            if earlier is not None:
                text = f"not run again: this call failed already ({earlier}); call it differently, or answer in words"
                result = ToolResult(clean(call.name)[:64] or "?", clean(call.arguments[:500]), text, error=True, refused=True)
            else:
                result = self.tools.run(
                    call,
                    on_slow=functools.partial(tell, ToolEvent("slow", clean(call.name)[:64])),
                    slow_after=self.config.tools.filler_after_s,
                    cancelled=cancelled,
                )
            reply.tools.append(result)
            tell(ToolEvent("result", result.name, result.arguments[:500], result))
            text = f"error: {result.text}" if result.error else result.text
            out.append(Message("tool", text, tool_call_id=call.id, name=call.name))
        return out

    def _refuse(self, calls: list[ToolCall], on_tool: Callable[[ToolEvent], None] | None) -> list[Message]:
        """Calls made when no tools were offered (tools off, or tools.max_calls reached): none runs; each
        gets an error result the model reads, and the front end hears of it as a failed call (one line)."""
        from voicechat.tools.base import ToolEvent, ToolResult
        from voicechat.tools.box import clean

        if self.tools is None:
            said = "not run: tools are off in this conversation (turn them on with --tools or tools.enabled)"
            why = "no tools are available in this conversation; answer in words"
        else:
            said = f"not run: this turn has made its {self.config.tools.max_calls} tool calls (tools.max_calls)"
            why = f"not run: this turn has made its {self.config.tools.max_calls} tool calls; answer in words"
        tell = on_tool or (lambda event: None)
        out = []
        for call in calls:
            name, arguments = clean(call.name)[:64] or "?", clean(call.arguments[:500])
            tell(ToolEvent("call", name, arguments))
            tell(ToolEvent("result", name, arguments, ToolResult(name, arguments, said, error=True)))
            out.append(Message("tool", f"error: {why}", tool_call_id=call.id, name=call.name))
        return out

    def prefill(self, user_text: str) -> None:
        """Let a local model read the prompt for user_text before it is asked (see ChatModel.prefill)."""
        if self.tools is not None:  # the prompt the reply will have: with the tools described
            self.llm.prefill(self.memory.messages_for(user_text), tools=self.tools.specs())
        else:
            self.llm.prefill(self.memory.messages_for(user_text))

    def end_of_turn_probability(self, user_text: str) -> float | None:
        """The chat model's reading of whether user_text is a finished message (see ChatModel)."""
        if self.tools is not None:
            return self.llm.end_of_turn_probability(self.memory.messages_for(user_text), tools=self.tools.specs())
        return self.llm.end_of_turn_probability(self.memory.messages_for(user_text))

    def empty_reply_note(self, user_text: str, usage: Usage | None) -> str:
        """An empty reply is kept as a turn, but never silently: the usual cause is a prompt too long."""
        prompt = f"{usage.prompt_tokens} prompt tokens" if usage is not None else f"{len(user_text.split())} words in the message"
        return (
            f"the model returned an empty reply ({prompt}); the message probably does not fit the model's context "
            f"window (llm.context_size {self.config.llm.context_size} for llama-cpp, or the server's limit); "
            "send a shorter message"
        )

    def tokens_line(self, label: str) -> str:
        return summary_line(self.totals, label)

    def record(
        self,
        user_text: str,
        reply: str,
        usage: Usage | None,
        *,
        interrupted: bool = False,
        latency: dict[str, float] | None = None,
        user_audio: str | None = None,
        reply_audio: str | None = None,
        tools: list[ToolResult] | None = None,
        language: str | None = None,
    ) -> None:
        """Remember and log one completed turn (committed to the history at once); ``language``: the turn's."""
        self.memory.add(user_text, reply)
        cost = None
        if usage is not None:
            from voicechat import tokens

            cost = tokens.cost(self.llm.model_name, usage.prompt_tokens, usage.completion_tokens, self.config.prices)
        self.totals.add(usage, cost)
        if not self.log:
            return
        self.session_id = self.turnlog.add(
            self.session_id,
            Turn(
                user_text=user_text,
                assistant_text=reply,
                interrupted=interrupted,
                llm_model=self.llm.model_name,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                tokens_estimated=bool(usage and usage.estimated),
                latency=latency or {},
                user_audio=user_audio,
                reply_audio=reply_audio,
                cleared_before=self._clear_pending,
                tools=[t.to_dict() for t in tools or ()],
                language=language,
            ),
        )
        self._clear_pending = False
        if self.on_recorded is not None:
            self.on_recorded(self.session_id)

    def clear(self) -> None:
        """Forget the conversation (the history keeps it, marked, so a resume starts after it)."""
        self.memory.clear()
        self._clear_pending = True


def _without_failed_calls(messages: list[Message]) -> list[Message]:
    """The messages without the tool calls whose results were all errors (and without those results)."""
    failed = {m.tool_call_id for m in messages if m.role == "tool" and m.content.startswith("error: ")}
    out = []
    for m in messages:
        if m.role == "tool" and m.tool_call_id in failed:
            continue
        if m.role == "assistant" and m.tool_calls and all(c.id in failed for c in m.tool_calls):
            if m.content:
                out.append(Message("assistant", m.content))
            continue
        out.append(m)
    return out


def _add_usage(total: Usage | None, more: Usage) -> Usage:
    """Tokens of every model call in a turn (a tool call costs a round: its result is read as prompt)."""
    if total is None:
        return more
    return Usage(
        total.prompt_tokens + more.prompt_tokens,
        total.completion_tokens + more.completion_tokens,
        estimated=total.estimated or more.estimated,
    )


def open_tools(config: Config, llm: ChatModel, notice: Callable[[str], None]) -> ToolBox | None:
    """The session's tools when tools.enabled (or --tools), if the chat engine can call them."""
    if not config.tools.enabled:
        return None
    if not llm.supports_tools:
        notice(f"the chat engine '{config.llm.engine}' cannot call tools; tools are off for this session")
        return None
    from voicechat.tools.box import build

    return build(config, notice)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def summary_line(totals: Totals, label: str = "latency") -> str:
    parts = [f"{totals.turns} turn{'s' if totals.turns != 1 else ''}"]
    if totals.latencies:
        parts.append(f"{label} p50 {percentile(totals.latencies, 0.5):.2f} s, p95 {percentile(totals.latencies, 0.95):.2f} s")
    est = " (estimated)" if totals.estimated else ""
    parts.append(f"tokens {totals.prompt_tokens} in + {totals.completion_tokens} out{est}")
    parts.append(f"cost ${totals.cost:.4f}" if totals.cost is not None else "cost n/a (local or unknown model)")
    return " · ".join(parts)


def engines_info(
    config: Config, stt: SpeechToText | None = None, llm: ChatModel | None = None, tts: TextToSpeech | None = None
) -> dict[str, str | None]:
    return {
        "stt_engine": config.stt.engine if stt else None,
        "stt_model": stt.model_name if stt else None,
        "llm_engine": config.llm.engine,
        "llm_model": llm.model_name if llm else None,
        "tts_engine": config.tts.engine if tts else None,
        "tts_model": tts.model_name if tts else None,
    }
