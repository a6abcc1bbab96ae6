"""Chat through any OpenAI-compatible chat-completions server (OpenAI, Ollama, vLLM, llama.cpp server)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from voicechat.engines.base import ALL_OPTIONS, REQUIRED, ChatModel, ChatStream, Message, SamplingOptions, TextDelta, ToolSpec, Usage
from voicechat.engines.openai_client import ToolCallAssembler, make_client, to_openai_messages, translate
from voicechat.errors import StreamCut

if TYPE_CHECKING:
    from voicechat.config import Config

DEFAULT_MODEL = "gpt-4o-mini"


class OpenAIChat(ChatModel):
    name = "openai"
    supports_tools = True
    options_honoured = ALL_OPTIONS  # passed on to the server, which applies them (or refuses them itself)

    def __init__(self, config: Config) -> None:
        cfg = config.llm
        self.base_url = config.openai_base_url(cfg)
        self.client = make_client(self.base_url, config.openai_api_key(cfg), timeout=cfg.timeout, retries=cfg.retries)
        self.model = cfg.model or DEFAULT_MODEL
        self.temperature = cfg.temperature
        self.max_tokens = cfg.max_tokens
        self._usage_option = True  # some servers reject stream_options; we then count locally

    @property
    def model_name(self) -> str:
        return self.model

    def stream(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] = (),
        tool_choice: str | None = None,
        options: SamplingOptions | None = None,
    ) -> ChatStream:
        import openai

        o = options or SamplingOptions()
        kwargs: dict[str, Any] = dict(
            model=self.model,
            messages=to_openai_messages(messages),
            stream=True,
            temperature=self.temperature if o.temperature is None else o.temperature,
            max_tokens=self.max_tokens if o.max_tokens is None else o.max_tokens,
        )
        if o.top_p is not None:
            kwargs["top_p"] = o.top_p
        if o.stop:
            kwargs["stop"] = list(o.stop)
        if o.seed is not None:
            kwargs["seed"] = o.seed
        if tools:
            kwargs["tools"] = [t.to_openai() for t in tools]
            named = {"type": "function", "function": {"name": tool_choice}}
            kwargs["tool_choice"] = "auto" if not tool_choice else "required" if tool_choice == REQUIRED else named
        what = f"chat with '{self.model}'"
        try:
            try:
                response = self.client.chat.completions.create(
                    **kwargs, **({"stream_options": {"include_usage": True}} if self._usage_option else {})
                )
            except openai.BadRequestError as e:
                if not self._usage_option or "stream_options" not in str(e):
                    raise
                self._usage_option = False
                response = self.client.chat.completions.create(**kwargs)
        except openai.OpenAIError as e:
            raise translate(e, what, self.base_url) from e
        text: list[str] = []
        usage = None
        finish: str | None = None
        calls = ToolCallAssembler()
        try:
            for chunk in response:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices or ():
                    finish = choice.finish_reason or finish
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        text.append(delta)
                        yield TextDelta(delta)
                    if choice.delta is not None and choice.delta.tool_calls:
                        calls.feed(choice.delta.tool_calls)
        except openai.OpenAIError as e:
            raise StreamCut(
                f"{what}: the reply stream from {self.base_url or 'OpenAI'} broke after {len(''.join(text))} characters ({type(e).__name__}); the partial reply was kept",
                "".join(text),
            ) from e
        except Exception as e:  # httpx errors surface raw from an iterating stream
            if type(e).__module__.startswith(("httpx", "httpcore")):
                raise StreamCut(
                    f"{what}: the reply stream broke after {len(''.join(text))} characters ({type(e).__name__}); the partial reply was kept",
                    "".join(text),
                ) from e
            raise
        finally:
            response.close()
        made = calls.finish()
        yield from made
        if usage is not None:
            yield Usage(usage.prompt_tokens, usage.completion_tokens, estimated=False, finish_reason=finish)
        else:
            from voicechat import tokens

            enc, _ = tokens.encoding_for_model(self.model)
            prompt = sum(tokens.count(m.content, enc) + 4 for m in messages) + 3
            prompt += sum(tokens.count(c.arguments, enc) for m in messages for c in m.tool_calls)
            prompt += tokens.count(json.dumps([t.to_openai() for t in tools]), enc) if tools else 0
            written = "".join(text) + "".join(c.name + c.arguments for c in made)
            yield Usage(prompt, tokens.count(written, enc), estimated=True, finish_reason=finish)


def create(config: Config) -> OpenAIChat:
    return OpenAIChat(config)
