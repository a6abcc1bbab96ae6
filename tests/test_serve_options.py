"""Per-request options on the OpenAI routes: a chat request's temperature, top_p, max_tokens, stop and seed
apply to that call alone; a speech request's voice is used when it is installed (loaded on demand, a few
kept), and the server says which voice it used otherwise.

Fast tests check the option checks, the voice cache and the chat wrapper; one server on loopback (the
bundled SmolLM2 and Piper voice, the `openai` SDK) shows it end to end."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from tests.serveproc import ServeProcess
from tests.voice_fakes import ScriptedLLM
from voicechat.engines.base import AudioChunk, ChatModel, ChatStream, Message, SamplingOptions, TextDelta, TextToSpeech, Usage

# --- fast: the option checks ----------------------------------------------------------------------


@pytest.mark.fast
def test_options_are_read_as_openai_names_them():
    from voicechat.serve.sampling import sampling_options

    assert sampling_options({}, 100) == SamplingOptions()
    assert sampling_options({"temperature": 0, "top_p": 1, "max_tokens": 100, "stop": "x", "seed": -3}, 100) == SamplingOptions(
        temperature=0.0, top_p=1.0, max_tokens=100, stop=("x",), seed=-3
    )
    both = sampling_options({"max_tokens": 9, "max_completion_tokens": 4, "stop": ["a", "", "b"], "temperature": None}, 100)
    assert both.max_tokens == 4 and both.stop == ("a", "b") and both.temperature is None  # the newer name wins; "" stops nothing
    assert both.asked() == {"max_tokens", "stop"}


@pytest.mark.fast
@pytest.mark.parametrize(
    "body, field",
    [
        ({"temperature": 5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": True}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 101}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"max_completion_tokens": -1}, "max_completion_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"stop": {"a": 1}}, "stop"),
        ({"seed": 1 << 70}, "seed"),
        ({"seed": "1"}, "seed"),
    ],
)
def test_an_option_out_of_range_is_a_400_naming_it(body, field):
    from voicechat.serve.errors import ApiError
    from voicechat.serve.sampling import sampling_options

    with pytest.raises(ApiError) as e:
        sampling_options(body, 100)
    assert e.value.status == 400 and e.value.param == field
    error = e.value.body()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith(field) and "\n" not in error["message"]


class _OptionsLLM(ChatModel):
    """Records the options each call got."""

    name = "options"
    options_honoured = frozenset({"temperature", "stop"})

    def __init__(self) -> None:
        self.calls: list[SamplingOptions | None] = []

    def stream(self, messages, tools=(), tool_choice=None, options=None) -> ChatStream:
        self.calls.append(options)
        yield TextDelta("ok")
        yield Usage(1, 1, finish_reason="stop")


@pytest.mark.fast
def test_the_servers_chat_wrapper_passes_options_only_to_an_engine_that_takes_them():
    from voicechat.serve.shared import CountedChat

    engine = _OptionsLLM()
    chat = CountedChat(engine, lambda: None)
    assert chat.options_honoured == {"temperature", "stop"}
    hot = SamplingOptions(temperature=1.5, seed=3)
    list(chat.stream([Message("user", "hi")], options=hot))
    list(chat.stream([Message("user", "hi")], options=SamplingOptions()))  # nothing asked: the plain call
    assert engine.calls == [hot, None]
    scripted = CountedChat(ScriptedLLM(["fine"]), lambda: None)  # takes no options= at all
    assert [e.text for e in scripted.stream([Message("user", "hi")], options=hot) if isinstance(e, TextDelta)] == ["fine"]


@pytest.mark.fast
def test_every_chat_engine_takes_options_per_call_and_langchain_says_what_it_can_apply():
    import inspect

    from voicechat.engines import llm_langchain, llm_llama_cpp, llm_openai

    for cls in (llm_llama_cpp.LlamaCpp, llm_openai.OpenAIChat, llm_langchain.LangChainChat):
        param = inspect.signature(cls.stream).parameters["options"]
        assert param.default is None, cls
    assert llm_llama_cpp.LlamaCpp.options_honoured == set(SamplingOptions.NAMES) == llm_openai.OpenAIChat.options_honoured
    assert ChatModel.options_honoured == frozenset()

    class Plain:  # a LangChain model with only a temperature
        model_fields = {"temperature": None, "num_predict": None}

    assert llm_langchain.option_fields(Plain()) == {"temperature": "temperature", "max_tokens": "num_predict"}


# --- fast: the voice cache ------------------------------------------------------------------------


class _Voice(TextToSpeech):
    def __init__(self, label: str, installed: dict[str, str] | None = None) -> None:
        self.label, self._installed = label, installed or {}

    @property
    def model_name(self) -> str:
        return self.label

    def installed_voices(self) -> dict[str, str]:
        return self._installed

    def synthesize(self, text: str, *, speed: float | None = None) -> Iterator[AudioChunk]:
        yield AudioChunk(np.zeros(4, np.float32), 16000, text)


def _cache(size: int, gate: threading.Event | None = None, fail: set[str] | None = None):
    from voicechat.errors import VoicechatError
    from voicechat.serve.voices import VoiceCache

    installed = {"own": "/v/own.onnx", "amy": "/v/amy.onnx", "bob": "/v/bob.onnx", "cid": "/v/cid.onnx"}
    own = _Voice("own (configured)", installed)
    loaded: list[str] = []

    def load(value: str) -> TextToSpeech:
        if gate is not None:
            assert gate.wait(30)
        if fail and value in fail:
            raise VoicechatError("the file is damaged")
        loaded.append(value)
        return _Voice(value)

    return VoiceCache(lambda: own, load, size, wait_s=30), loaded


@pytest.mark.fast
def test_voices_load_on_demand_and_the_least_recently_used_goes_first():
    cache, loaded = _cache(size=2)
    assert cache.choose(None).name == "own (configured)" and cache.choose("own").notice is None and loaded == []
    amy = cache.choose("amy")
    assert amy.name == "amy" and amy.notice is None and amy.engine.model_name == "/v/amy.onnx"
    cache.choose("bob")
    cache.choose("amy")  # amy is now the most recently used
    cache.choose("cid")  # bob goes
    assert cache.kept == ["amy", "cid"] and loaded == ["/v/amy.onnx", "/v/bob.onnx", "/v/cid.onnx"]
    assert cache.choose("amy").engine is amy.engine and cache.choose("bob").name == "bob"
    assert loaded[-1] == "/v/bob.onnx" and cache.kept == ["amy", "bob"]


@pytest.mark.fast
def test_a_voice_not_installed_or_not_loadable_falls_back_and_says_so():
    cache, loaded = _cache(size=2, fail={"/v/bob.onnx"})
    unknown = cache.choose("alloy\r\nX-Evil: 1")
    assert unknown.name == "own (configured)" and unknown.engine.model_name == "own (configured)"
    assert unknown.notice == "voice 'alloyX-Evil: 1' is not installed here; spoke with own (configured) (installed: own, amy, bob, cid)"
    broken = cache.choose("bob")
    assert broken.name == "own (configured)" and "could not be loaded (the file is damaged)" in broken.notice
    assert cache.kept == [] and loaded == []
    off, _ = _cache(size=0)
    assert "serve.voices_cached is 0" in off.choose("amy").notice


@pytest.mark.fast
def test_one_load_per_voice_while_several_requests_ask_for_it():
    gate = threading.Event()
    cache, loaded = _cache(size=2, gate=gate)
    chosen: list = []
    threads = [threading.Thread(target=lambda: chosen.append(cache.choose("amy"))) for _ in range(4)]
    threads[0].start()
    for _ in range(3000):  # the first request is loading the voice (held at the gate) ...
        if "amy" in cache._loading:
            break
        threads[0].join(0.01)
    for t in threads[1:]:  # ... when the others ask for it
        t.start()
    gate.set()
    for t in threads:
        t.join(30)
    assert loaded == ["/v/amy.onnx"] and len(chosen) == 4 and len({id(c.engine) for c in chosen}) == 1


# --- end to end: one server on loopback ----------------------------------------------------------

STORY = [{"role": "user", "content": "Tell me a short story about a cat."}]
OTHER = [{"role": "user", "content": "What is the capital of France?"}]
COPY = "en_GB-copy-medium"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from voicechat import models

    voices = tmp_path_factory.mktemp("voices")
    bundled = models.piper_voice()
    for suffix in (".onnx", ".onnx.json"):  # a second voice on this machine: the bundled one under another name
        os.symlink(bundled[: -len(".onnx")] + suffix, voices / (COPY + suffix))
    config = f"llm:\n  max_tokens: 40\ntts:\n  voices_dir: {voices}\nserve:\n  max_tokens: 200\n  voices_cached: 1\n"
    with ServeProcess(tmp_path_factory.mktemp("serve"), config=config) as server:
        yield server


@pytest.fixture(scope="module")
def client(served):
    import openai

    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def _ask(client, messages, **options) -> str:
    return client.chat.completions.create(model="any", messages=messages, **options).choices[0].message.content


def _streamed(client, messages) -> str:
    return "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(model="any", messages=messages, stream=True) if c.choices
    )


def test_temperature_and_seed_apply_to_one_call_while_another_client_streams(client):
    alone = _streamed(client, OTHER)  # the server's own settings (temperature 0)
    done = threading.Event()
    others: list[str] = []

    def other_client() -> None:
        for _ in range(6):  # streams again and again while the calls below run (bounded)
            others.append(_streamed(client, OTHER))
            if done.is_set():
                return

    thread = threading.Thread(target=other_client)
    thread.start()
    try:
        cold = [_ask(client, STORY, temperature=0, seed=seed, max_tokens=20) for seed in (7, 7)]
        hot = [_ask(client, STORY, temperature=1, seed=seed, max_tokens=20) for seed in (1, 2, 1)]
    finally:
        done.set()
        thread.join(300)
    assert cold[0] == cold[1] and cold[0].strip()
    assert hot[0] != hot[1] and hot[0] == hot[2]  # the seed decides the draw, and only for its own call
    assert others and all(answer == alone for answer in others)
    assert _streamed(client, OTHER) == alone  # nothing was left behind in the engine


def test_max_tokens_and_stop_are_honoured(client):
    short = client.chat.completions.create(model="any", messages=STORY, max_tokens=5)
    assert short.usage.completion_tokens <= 5 and short.choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(model="any", messages=STORY, max_completion_tokens=3, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    full = _ask(client, STORY, max_tokens=60)
    word = full.split()[4]
    cut = client.chat.completions.create(model="any", messages=STORY, max_tokens=60, stop=[word, "\n\n\n"])
    assert cut.choices[0].message.content == full[: full.index(word)] and cut.choices[0].finish_reason == "stop"


def test_an_option_out_of_range_is_refused_in_openais_shape(client):
    import openai

    for options, field in (({"temperature": 5}, "temperature"), ({"max_tokens": 201}, "max_tokens")):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="any", messages=STORY, **options)
        assert e.value.status_code == 400 and e.value.body["param"] == field and field in e.value.body["message"]


def test_speech_uses_the_requested_voice_and_says_which_it_used_otherwise(client):
    def speak(voice: str) -> tuple[dict, bytes]:
        r = client.audio.speech.with_raw_response.create(model="tts-1", voice=voice, input="Hello there.", response_format="pcm")
        return dict(r.headers), r.parse().read()

    headers, chosen = speak(COPY)
    assert headers["x-voicechat-voice"] == COPY and "x-voicechat-voice-notice" not in headers
    headers, own = speak("en_US-joe-medium")
    assert headers["x-voicechat-voice"] == "en_US-joe-medium (bundled)" and "x-voicechat-voice-notice" not in headers
    assert len(chosen) > 0 and len(own) > 0
    headers, fallback = speak("alloy")
    assert headers["x-voicechat-voice"] == "en_US-joe-medium (bundled)" and len(fallback) > 0
    notice = headers["x-voicechat-voice-notice"]
    assert "'alloy' is not installed" in notice and COPY in notice and "en_US-joe-medium" in notice
