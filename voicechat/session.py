"""A conversation: memory, the chat engine, token totals and the history log. Shared by `chat` and `talk`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from voicechat.engines.base import TextDelta, Usage
from voicechat.errors import StreamCut, VoicechatError
from voicechat.history import History, Turn
from voicechat.memory import Conversation

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.engines.base import ChatModel


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


class ChatSession:
    def __init__(self, config: "Config", llm: "ChatModel", *, kind: str, log: bool, resume: int | None = None,
                 engines: dict[str, str | None] | None = None, history: History | None = None) -> None:
        self.config = config
        self.llm = llm
        self.kind = kind
        self.engines = engines or {}
        self.history = history
        self.log = log and history is not None
        self.session_id: int | None = None
        self.on_recorded: Callable[[int | None], None] | None = None  # after each turn is committed (a server tells its client the id)
        self.totals = Totals()
        self._clear_pending = False
        from voicechat.turnlog import TurnLog  # a failing history never costs the conversation

        self.turnlog = TurnLog(history, kind, system_prompt=config.llm.system_prompt, engines=self.engines)
        self.memory = Conversation(
            system_prompt=config.llm.system_prompt,
            max_rounds=config.memory.max_rounds,
            max_context_tokens=config.memory.max_context_tokens,
            count_tokens=llm.count_tokens,
        )
        if resume is not None and history is not None:
            past = history.turns(resume)
            self.session_id = resume
            start = max((i for i, t in enumerate(past) if t.cleared_before), default=0)
            for t in past[start:]:
                self.memory.add(t.user_text, t.assistant_text)
            self.resumed_turns = len(past)
        else:
            self.resumed_turns = 0

    def ask(self, user_text: str) -> Iterator[TextDelta | Usage]:
        """Stream the reply to user_text. The caller records the turn with :meth:`record`."""
        return self.llm.stream(self.memory.messages_for(user_text))

    def stream_reply(self, user_text: str, on_delta: Callable[[str], None],
                     cancelled: Callable[[], bool] = lambda: False) -> Reply:
        """Stream the reply to user_text, handing each piece of text to on_delta (which may block).

        The one loop that consumes a chat stream, for every front end. It does not record the turn:
        the caller knows what was finally heard (:meth:`record`).
        """
        reply = Reply()
        parts: list[str] = []
        started = time.perf_counter()
        stream = self.ask(user_text)
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
                else:
                    reply.usage = event
        except KeyboardInterrupt:
            reply.interrupted = reply.keyboard = True
        except StreamCut as e:
            reply.interrupted = True
            reply.error, reply.exception = str(e), e
            if e.partial and not parts:
                parts.append(e.partial)
        except VoicechatError as e:
            reply.failed = True
            reply.error, reply.exception = str(e), e
        finally:
            stream.close()
        reply.text = "".join(parts).strip()
        return reply

    def prefill(self, user_text: str) -> None:
        """Let a local model read the prompt for user_text before it is asked (see ChatModel.prefill)."""
        self.llm.prefill(self.memory.messages_for(user_text))

    def end_of_turn_probability(self, user_text: str) -> float | None:
        """The chat model's reading of whether user_text is a finished message (see ChatModel)."""
        return self.llm.end_of_turn_probability(self.memory.messages_for(user_text))

    def empty_reply_note(self, user_text: str, usage: Usage | None) -> str:
        """An empty reply is kept as a turn, but never silently: the usual cause is a prompt too long."""
        prompt = f"{usage.prompt_tokens} prompt tokens" if usage is not None else f"{len(user_text.split())} words in the message"
        return (f"the model returned an empty reply ({prompt}); the message probably does not fit the model's context "
                f"window (llm.context_size {self.config.llm.context_size} for llama-cpp, or the server's limit); "
                "send a shorter message")

    def tokens_line(self, label: str) -> str:
        return summary_line(self.totals, label)

    def record(self, user_text: str, reply: str, usage: Usage | None, *, interrupted: bool = False,
               latency: dict[str, float] | None = None, user_audio: str | None = None, reply_audio: str | None = None) -> None:
        """Remember and log one completed turn (committed to the history at once)."""
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
                user_text=user_text, assistant_text=reply, interrupted=interrupted, llm_model=self.llm.model_name,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                tokens_estimated=bool(usage and usage.estimated), latency=latency or {},
                user_audio=user_audio, reply_audio=reply_audio, cleared_before=self._clear_pending,
            ),
        )
        self._clear_pending = False
        if self.on_recorded is not None:
            self.on_recorded(self.session_id)

    def clear(self) -> None:
        """Forget the conversation (the history keeps it, marked, so a resume starts after it)."""
        self.memory.clear()
        self._clear_pending = True


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


def engines_info(config: "Config", stt: Any = None, llm: Any = None, tts: Any = None) -> dict[str, str | None]:
    return {
        "stt_engine": config.stt.engine if stt else None, "stt_model": getattr(stt, "model_name", None),
        "llm_engine": config.llm.engine, "llm_model": getattr(llm, "model_name", None),
        "tts_engine": config.tts.engine if tts else None, "tts_model": getattr(tts, "model_name", None),
    }

