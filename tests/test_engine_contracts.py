"""The engine contracts in code: what the base classes declare, what every built-in engine honours, and
what the server's wrappers (serve/shared.py) forward. Fast: no model is loaded (the last two tests load
the bundled ones and are not marked fast)."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from tests.voice_fakes import RATE, ScriptedLLM, ScriptedSTT, ScriptedTTS
from voicechat.engines import registry
from voicechat.engines.base import AudioChunk, ChatModel, Message, SpeechToText, TextDelta, TextToSpeech, Usage

CHAT_ENGINES = (
    "voicechat.engines.llm_openai:OpenAIChat",
    "voicechat.engines.llm_langchain:LangChainChat",
    "voicechat.engines.llm_llama_cpp:LlamaCpp",
)
TTS_ENGINES = (
    "voicechat.engines.tts_piper:Piper",
    "voicechat.engines.tts_espeak:Espeak",
    "voicechat.engines.tts_coqui:Coqui",
    "voicechat.engines.tts_openai:OpenAITTS",
)


def _cls(path: str) -> type:
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.fast
def test_the_chat_models_signature_takes_tools_and_every_engine_keeps_it():
    base = inspect.signature(ChatModel.stream).parameters
    assert base["tools"].default == () and base["tool_choice"].default is None
    for path in CHAT_ENGINES:
        params = inspect.signature(_cls(path).stream).parameters
        assert list(params)[:4] == ["self", "messages", "tools", "tool_choice"], path
        assert params["tools"].default == () and params["tool_choice"].default is None, path
        assert _cls(path).supports_tools, path


@pytest.mark.fast
def test_every_speech_engine_takes_speed_and_says_whether_it_honours_it():
    for path in TTS_ENGINES:
        params = inspect.signature(_cls(path).synthesize).parameters
        assert params["speed"].kind is inspect.Parameter.KEYWORD_ONLY and params["speed"].default is None, path
    honours = {path.rpartition(":")[2]: _cls(path).changes_speed for path in TTS_ENGINES}
    assert honours == {"Piper": True, "Espeak": True, "Coqui": False, "OpenAITTS": False}


@pytest.mark.fast
def test_base_classes_declare_what_others_read():
    assert ScriptedSTT("a b").languages == ["en"] and ScriptedSTT("a b").model_name == ""
    tts = ScriptedTTS()
    assert tts.sample_rate == RATE and tts.speakers == [] and tts.languages == ["en"] and tts.voices() == []
    assert not SpeechToText.times_words and not SpeechToText.takes_prompt and not TextToSpeech.changes_speed
    stt = ScriptedSTT("one two")  # the default window is the whole-audio transcription
    assert list(stt.transcribe_window(np.zeros(RATE, np.float32), word_timestamps=True, prompt="x")) == []


class _CountingTTS(TextToSpeech):
    """Records the keyword arguments each synthesize() got."""

    name = "counting"
    sample_rate = 24000

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def synthesize(self, text: str, **kwargs) -> Iterator[AudioChunk]:
        self.calls.append(kwargs)
        yield AudioChunk(np.zeros(10, np.float32), 24000, text)

    @property
    def speakers(self) -> list[str]:
        return ["amy", "bob"]


@pytest.mark.fast
def test_shared_speech_forwards_the_declared_properties_and_passes_speed_only_when_asked():
    from voicechat.serve.shared import SharedTTS

    engine = _CountingTTS()
    shared = SharedTTS(engine)
    assert shared.sample_rate == 24000 and shared.speakers == ["amy", "bob"] and shared.name == "counting"
    assert not shared.changes_speed
    list(shared.synthesize("hi"))
    list(shared.synthesize("hi", speed=1.5))
    assert engine.calls == [{}, {"speed": 1.5}]


@pytest.mark.fast
def test_shared_transcription_forwards_info_and_capabilities():
    from voicechat.serve.shared import SharedSTT

    engine = ScriptedSTT("hello there")
    shared = SharedSTT(engine)
    assert shared.incremental and shared.info is engine.info and shared.languages == ["en"]
    assert not shared.times_words and not shared.takes_prompt
    assert shared.transcribe_turn(np.zeros(RATE, np.float32)) == ""


@pytest.mark.fast
def test_shared_generators_hold_the_lock_per_step_and_close_the_engines_generator():
    from voicechat.serve.shared import SharedTTS

    closed = threading.Event()

    class Slow(TextToSpeech):
        def synthesize(self, text: str, *, speed: float | None = None) -> Iterator[AudioChunk]:
            try:
                for _ in range(3):
                    yield AudioChunk(np.zeros(4, np.float32), 16000, text)
            finally:
                closed.set()

    shared = SharedTTS(Slow())
    gen = shared.synthesize("x")
    next(gen)
    assert not shared._lock.locked()  # between steps another caller gets the engine
    gen.close()
    assert closed.is_set() and not shared._lock.locked()


@pytest.mark.fast
def test_counted_chat_counts_text_passes_tools_only_when_offered_and_closes_the_reply():
    from voicechat.serve.shared import CountedChat

    llm = ScriptedLLM(["one two three", "four"])
    count = []
    chat = CountedChat(llm, lambda: count.append(1))
    assert chat.model_name == "scripted" and not chat.supports_tools and chat.count_tokens("a b") == 2
    events = list(chat.stream([Message("user", "hi")]))  # ScriptedLLM.stream takes no tools: none are passed
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one", " two", " three"]
    assert isinstance(events[-1], Usage) and len(count) == 3
    reply = chat.stream([Message("user", "again")])
    next(reply)
    reply.close()
    assert llm.closed == 2


class _Wrong:
    def __init__(self, config) -> None:
        pass


@pytest.mark.fast
def test_registry_refuses_a_factory_that_makes_no_engine_of_its_kind(monkeypatch):
    from voicechat.config import Config
    from voicechat.errors import VoicechatError

    spec = registry.EngineSpec("wrong", "tts", f"{__name__}:_Wrong", "makes the wrong thing")
    monkeypatch.setattr(registry, "get", lambda kind, name: spec)
    with pytest.raises(VoicechatError, match="made a _Wrong, not a TextToSpeech"):
        registry.create("tts", Config())


def test_piper_reports_its_rate_language_and_speakers():
    from voicechat.config import Config
    from voicechat.engines.tts_piper import Piper

    piper = Piper(Config())
    assert piper.sample_rate == 22050 and piper.changes_speed
    assert piper.languages == ["en-us"] and piper.speakers == []  # joe-medium: one speaker
    chunk = next(piper.synthesize("Hello.", speed=2.0))
    assert chunk.sample_rate == piper.sample_rate


def test_faster_whisper_reports_english_only_and_word_times():
    from voicechat.config import Config
    from voicechat.engines.stt_faster_whisper import FasterWhisper

    whisper = FasterWhisper(Config().stt)
    assert whisper.languages == ["en"] and whisper.times_words and whisper.takes_prompt and whisper.incremental
