"""Chat engines: llama.cpp in-process, OpenAI-compatible and LangChain against llama.cpp's real server, error paths."""

from __future__ import annotations

import pytest

from tests.servers import OpenAILikeServer
from voicechat.config import resolve
from voicechat.engines import registry
from voicechat.engines.base import Message, TextDelta, Usage
from voicechat.errors import StreamCut, VoicechatError

QUESTION = [Message("system", "You are a helpful assistant."), Message("user", "Name a colour of the sky.")]


def drain(stream):
    text, usage = [], None
    for ev in stream:
        if isinstance(ev, TextDelta):
            text.append(ev.text)
        else:
            usage = ev
    return "".join(text), usage


@pytest.fixture(scope="module")
def llama():
    engine = registry.create("llm", resolve(environ={}, overrides={"llm.max_tokens": 40, "llm.temperature": 0}))
    yield engine
    engine.close()


def test_llama_cpp_streams_then_usage(llama):
    events = list(llama.stream(QUESTION))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3, "the reply arrives in many pieces"
    assert isinstance(events[-1], Usage) and events[-1].estimated
    assert events[-1].completion_tokens == len(deltas)
    assert events[-1].prompt_tokens > 10
    assert "".join(d.text for d in deltas).strip()


def test_llama_cpp_cancel_stops_generation(llama):
    stream = llama.stream(QUESTION)
    first = next(stream)
    assert isinstance(first, TextDelta)
    stream.close()  # the generator's finally closes llama.cpp's stream
    text, usage = drain(llama.stream(QUESTION))  # the model is usable again right after
    assert text and usage


def test_llama_cpp_uses_its_own_tokenizer(llama):
    n = llama.count_tokens("Hello world, how are you?")
    assert 4 <= n <= 10
    assert n == len(llama.llm.tokenize(b"Hello world, how are you?", add_bos=False))


def test_missing_gguf_is_clear():
    with pytest.raises(VoicechatError, match="not found; give the path of a .gguf"):
        registry.create("llm", resolve(environ={}, overrides={"llm.model": "/nope/model.gguf"}))


def test_openai_engine_against_llama_cpp_server(llama_server):
    cfg = resolve(
        environ={}, overrides={"llm.engine": "openai", "llm.base_url": llama_server, "llm.model": "smollm2", "llm.max_tokens": 30}
    )
    engine = registry.create("llm", cfg)
    events = list(engine.stream(QUESTION))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1 and "".join(d.text for d in deltas).strip()
    usage = events[-1]
    assert isinstance(usage, Usage) and usage.completion_tokens > 0 and usage.prompt_tokens > 0


def test_langchain_engine_against_llama_cpp_server(llama_server):
    cfg = resolve(
        environ={}, overrides={"llm.engine": "langchain", "llm.base_url": llama_server, "llm.model": "openai:smollm2", "llm.max_tokens": 30}
    )
    engine = registry.create("llm", cfg)
    text, usage = drain(engine.stream(QUESTION))
    assert text.strip() and usage is not None and usage.completion_tokens > 0


def _engine(server, **extra):
    over = {
        "llm.engine": "openai",
        "llm.base_url": server.base_url,
        "llm.api_key": "sk-test-secret-0123456789",
        "llm.retries": 0,
        "llm.timeout": 2,
    }
    over.update(extra)
    return registry.create("llm", resolve(environ={}, overrides=over))


def test_usage_reported_by_server_is_not_estimated():
    with OpenAILikeServer() as server:
        text, usage = drain(_engine(server).stream(QUESTION))
        assert text == server.reply
        assert usage == Usage(10, len(server.reply.split()), estimated=False)


@pytest.mark.parametrize(
    "mode,needle",
    [("401", "rejected the API key"), ("404", "unknown model"), ("500", "server error 500"), ("stall", "did not answer in time")],
)
def test_server_errors_are_one_clear_line(mode, needle):
    with OpenAILikeServer() as server:
        server.mode = mode
        with pytest.raises(VoicechatError) as info:
            drain(_engine(server).stream(QUESTION))
        assert needle in str(info.value) and "\n" not in str(info.value)
        assert "sk-test-secret-0123456789" not in str(info.value)


def test_rate_limit_is_retried_then_succeeds():
    with OpenAILikeServer() as server:
        server.mode, server.calls_before_ok = "429", 2
        text, _ = drain(_engine(server, **{"llm.retries": 3}).stream(QUESTION))
        assert text == server.reply
        assert len([r for r in server.requests if r["path"] == "/v1/chat/completions"]) == 3


def test_rate_limit_after_retries_is_clear():
    with OpenAILikeServer() as server:
        server.mode, server.calls_before_ok = "429", 10
        with pytest.raises(VoicechatError, match=r"rate limited .*\(429\) even after retries"):
            drain(_engine(server, **{"llm.retries": 1}).stream(QUESTION))


def test_stream_cut_midway_keeps_what_arrived():
    with OpenAILikeServer() as server:
        server.mode = "cut"
        got = []
        with pytest.raises(StreamCut) as info:
            for ev in _engine(server).stream(QUESTION):
                got.append(ev.text)
        assert info.value.partial == "".join(got) == "Hello from the test"
        assert "broke" in str(info.value)


def test_connection_refused():
    cfg = resolve(environ={}, overrides={"llm.engine": "openai", "llm.base_url": "http://127.0.0.1:9/v1", "llm.retries": 0})
    with pytest.raises(VoicechatError, match="cannot connect to http://127.0.0.1:9/v1"):
        drain(registry.create("llm", cfg).stream(QUESTION))


def test_no_key_for_openai_is_clear():
    with pytest.raises(VoicechatError, match="no OpenAI API key"):
        registry.create("llm", resolve(environ={}, overrides={"llm.engine": "openai"}))


def test_a_prompt_past_the_context_is_one_line_not_a_crash():
    """llama.cpp checks the prompt against the context only when the stream is first read: that ValueError is said
    as the user's error (it was 'unexpected ValueError' in chat and a dead voice session)."""
    from tests.helpers import run_cli

    result = run_cli("chat", "--no-log", input=("word " * 300 + "\n").encode(), env={"VOICECHAT_LLM_CONTEXT_SIZE": "64"})
    err = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and len(err) == 1, err
    assert err[0].startswith("voicechat: error: the model refused the prompt") and "llm.context_size" in err[0]
