"""Chat through any OpenAI-compatible chat-completions server (OpenAI, Ollama, vLLM, llama.cpp server)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

from voicechat.engines.base import ChatModel, Message, TextDelta, Usage
from voicechat.engines.openai_client import make_client, translate
from voicechat.errors import StreamCut

if TYPE_CHECKING:
    from voicechat.config import Config

DEFAULT_MODEL = "gpt-4o-mini"


class OpenAIChat(ChatModel):
    name = "openai"

    def __init__(self, config: "Config") -> None:
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

    def stream(self, messages: Sequence[Message]) -> Iterator[TextDelta | Usage]:
        import openai

        msgs = [{"role": m.role, "content": m.content} for m in messages]
        kwargs = dict(model=self.model, messages=msgs, stream=True, temperature=self.temperature, max_tokens=self.max_tokens)
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
        try:
            for chunk in response:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices or ():
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        text.append(delta)
                        yield TextDelta(delta)
        except openai.OpenAIError as e:
            raise StreamCut(f"{what}: the reply stream from {self.base_url or 'OpenAI'} broke after {len(''.join(text))} characters ({type(e).__name__}); the partial reply was kept", "".join(text)) from e
        except Exception as e:  # httpx errors surface raw from an iterating stream
            if type(e).__module__.startswith(("httpx", "httpcore")):
                raise StreamCut(f"{what}: the reply stream broke after {len(''.join(text))} characters ({type(e).__name__}); the partial reply was kept", "".join(text)) from e
            raise
        finally:
            response.close()
        if usage is not None:
            yield Usage(usage.prompt_tokens, usage.completion_tokens, estimated=False)
        else:
            from voicechat import tokens

            enc, _ = tokens.encoding_for_model(self.model)
            prompt = sum(tokens.count(m.content, enc) + 4 for m in messages) + 3
            yield Usage(prompt, tokens.count("".join(text), enc), estimated=True)


def create(config: "Config") -> OpenAIChat:
    return OpenAIChat(config)
