"""What the local chat model can tell about a user's turn: the prompt up to the user's words, the
tokens that end a sentence, and the logits after the last token (llama-cpp-python internals, kept here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from voicechat.engines.base import Message, ToolSpec

_MARK = "\u2063voicechat-user-text\u2063"
_stop_ids: dict[int, np.ndarray] = {}


def prompt_until_user_text(llm: Any, history: Sequence[Message], text: str, tools: Sequence[ToolSpec] = ()) -> str | None:
    """The model's own chat template rendered for history + a user message, cut right after ``text``;
    None when the model carries no template. With tools, the history is written as the reply will be
    (voicechat's tool format), so the evaluated prefix is the reply's."""
    from llama_cpp import llama_chat_format

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    eos = llm._model.token_get_text(llm.token_eos()) if llm.token_eos() != -1 else ""
    bos = llm._model.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else ""
    formatter = llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    from voicechat.engines.llama_tools import chat_message, template_messages

    if tools:
        written = template_messages(history, tools, "tool" if "tool" in template else "user")
    else:
        written = [chat_message(m.role, m.content) for m in history]
    messages = written + [chat_message("user", _MARK)]
    prompt = formatter(messages=messages).prompt
    if _MARK not in prompt:
        return None
    return prompt[: prompt.index(_MARK)] + text


def stop_token_ids(llm: Any) -> np.ndarray:
    """Tokens that end a sentence or a message: '.', '?', '!' (alone or with a closing quote) and end-of-turn."""
    key = id(llm)
    if key not in _stop_ids:
        ids = [i for i in range(llm.n_vocab()) if llm.detokenize([i]).strip() in (b".", b"?", b"!", b'."', b'?"', b'!"')]
        ids += [t for t in (llm.token_eos(),) if t >= 0]
        ids += (
            llm.tokenize(b"<|im_end|>", add_bos=False, special=True)[:1]
            if b"<|im_end|>" in llm.detokenize(llm.tokenize(b"<|im_end|>", add_bos=False, special=True), special=True)
            else []
        )
        _stop_ids[key] = np.array(sorted(set(ids)), dtype=np.int64)
    return _stop_ids[key]


def last_logits(llm: Any) -> np.ndarray:
    import llama_cpp

    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)
