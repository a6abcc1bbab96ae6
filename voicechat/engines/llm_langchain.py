"""Chat through any LangChain chat model, chosen by ``provider:model`` (langchain's init_chat_model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from voicechat.engines.base import ChatModel, ChatStream, Message, SamplingOptions, TextDelta, ToolCall, ToolSpec, Usage
from voicechat.errors import VoicechatError, scrub

if TYPE_CHECKING:
    from voicechat.config import Config

# A call's option -> the names LangChain's chat models give it (the first the model has is set on a per-call copy).
# stop is every chat model's own argument to stream().
OPTION_FIELDS = {
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "max_tokens": ("max_tokens", "num_predict", "max_output_tokens"),
    "seed": ("seed", "random_seed"),
}


def option_fields(model: Any) -> dict[str, str]:
    """The options this LangChain model can take per call: option -> the model's field for it."""
    fields = getattr(type(model), "model_fields", None) or {}
    found = {option: next((n for n in names if n in fields), "") for option, names in OPTION_FIELDS.items()}
    return {option: name for option, name in found.items() if name}


class LangChainChat(ChatModel):
    name = "langchain"
    supports_tools = True

    def __init__(self, config: Config) -> None:
        from langchain.chat_models import init_chat_model

        cfg = config.llm
        spec = cfg.model or "openai:gpt-4o-mini"
        provider, _, model = spec.partition(":")
        if not model:
            raise VoicechatError(f"langchain model '{spec}' must be provider:model, e.g. openai:gpt-4o-mini or ollama:llama3.2")
        kwargs: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        if provider == "openai":
            base_url, key = config.openai_base_url(cfg), config.openai_api_key(cfg)
            if base_url:
                kwargs["base_url"] = base_url
            kwargs["api_key"] = key or ("not-needed" if base_url else None)
            if kwargs["api_key"] is None:
                raise VoicechatError(
                    "no OpenAI API key: set OPENAI_API_KEY (or openai.api_key), or point openai.base_url at a local server"
                )
            kwargs.update(timeout=cfg.timeout, max_retries=cfg.retries, stream_usage=True)
        try:
            self.model = init_chat_model(model, model_provider=provider, **kwargs)
        except ImportError as e:
            raise VoicechatError(f"langchain provider '{provider}' needs its package: {e}") from e
        except ValueError as e:
            raise VoicechatError(f"langchain cannot make '{spec}': {scrub(str(e))}") from e
        self.spec = spec
        self._fields = option_fields(self.model)
        self.options_honoured = frozenset({"stop", *self._fields})  # the rest of a call's options are ignored

    @property
    def model_name(self) -> str:
        return self.spec

    def stream(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] = (),
        tool_choice: str | None = None,
        options: SamplingOptions | None = None,
    ) -> ChatStream:
        lc_messages = _to_langchain(messages)
        model: Any = self.model
        o = options or SamplingOptions()
        update = {field: getattr(o, option) for option, field in self._fields.items() if getattr(o, option) is not None}
        if update:  # a copy for this call: the shared model (and other clients' replies) keep the configured values
            model = model.model_copy(update=update)
        if tools:
            try:
                model = model.bind_tools([t.to_openai() for t in tools], tool_choice=tool_choice)
            except NotImplementedError:
                raise VoicechatError(f"the langchain model '{self.spec}' cannot call tools; turn tools off or use another model") from None
        usage = None
        finish: str | None = None
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}  # tool-call pieces by index (not chunk + chunk: that would
        try:  # repeat a name some servers send with every piece)
            for chunk in model.stream(lc_messages, stop=list(o.stop) or None):
                for piece in getattr(chunk, "tool_call_chunks", None) or ():
                    index = piece.get("index")
                    slot = calls.setdefault(index if index is not None else len(calls), {"id": "", "name": "", "args": ""})
                    slot["id"] = slot["id"] or piece.get("id") or ""
                    slot["name"] = slot["name"] or piece.get("name") or ""
                    slot["args"] += piece.get("args") or ""
                if chunk.content:
                    piece = (
                        chunk.content
                        if isinstance(chunk.content, str)
                        else "".join(p.get("text", "") for p in chunk.content if isinstance(p, dict))
                    )
                    if piece:
                        text.append(piece)
                        yield TextDelta(piece)
                if getattr(chunk, "usage_metadata", None):
                    usage = chunk.usage_metadata
                reason = (getattr(chunk, "response_metadata", None) or {}).get("finish_reason")
                finish = reason if isinstance(reason, str) else finish
        except Exception as e:
            from voicechat.engines.openai_client import translate

            try:
                import openai

                if isinstance(e, openai.OpenAIError):
                    raise translate(e, f"chat with '{self.spec}'", None) from e
            except ImportError:
                pass
            raise VoicechatError(f"chat with '{self.spec}' failed: {scrub(str(e))[:200]}") from e
        for i, slot in sorted(calls.items()):
            yield ToolCall(slot["id"] or f"call_{i}", slot["name"], slot["args"] or "{}")
        if usage:
            yield Usage(int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)), estimated=False, finish_reason=finish)
        else:
            import json

            from voicechat import tokens

            enc, _ = tokens.encoding_for_model(self.spec.partition(":")[2])
            prompt = sum(tokens.count(m.content, enc) + 4 for m in messages)
            prompt += tokens.count(json.dumps([t.to_openai() for t in tools]), enc) if tools else 0
            written = "".join(text) + "".join(c["name"] + c["args"] for c in calls.values())
            yield Usage(prompt, tokens.count(written, enc), estimated=True, finish_reason=finish)


def _to_langchain(messages: Sequence[Message]) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    out: list[Any] = []
    for m in messages:
        if m.role == "tool":
            out.append(ToolMessage(content=m.content, tool_call_id=m.tool_call_id or ""))
        elif m.role == "assistant" and m.tool_calls:
            import json

            calls = []
            for c in m.tool_calls:
                try:
                    args = json.loads(c.arguments)
                except ValueError:
                    args = {}
                calls.append({"name": c.name, "args": args if isinstance(args, dict) else {}, "id": c.id, "type": "tool_call"})
            out.append(AIMessage(content=m.content, tool_calls=calls))
        else:
            out.append({"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}[m.role](content=m.content))
    return out


def create(config: Config) -> LangChainChat:
    return LangChainChat(config)
