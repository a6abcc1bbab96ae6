"""Engines shared by every client of one server: one call at a time per engine.

A local engine is a single model (llama.cpp's context, Piper's phonemizer) that must not run two
calls at once; the lock also keeps two CPU-bound calls from splitting two cores four ways.
Generators take the lock for each step, not for their whole life, so a long transcription and a
voice session's short turn take turns instead of queueing one behind the other. The chat model
keeps its own lock for a whole reply (llama.cpp evaluates one sequence at a time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from voicechat.engines.base import (
    AudioChunk,
    ChatModel,
    ChatStream,
    Message,
    SamplingOptions,
    Segment,
    SpeechToText,
    TextDelta,
    TextToSpeech,
    ToolSpec,
    Transcription,
)

if TYPE_CHECKING:
    import numpy as np

    from voicechat.stt_languages import TurnText

T = TypeVar("T")


class SharedSTT(SpeechToText):
    """A speech-to-text engine whose calls are serialized; generators take the lock step by step."""

    def __init__(self, engine: SpeechToText) -> None:  # (no super().__init__: info is the engine's)
        self.engine = engine
        self._lock = threading.Lock()
        self.name = engine.name
        self.incremental = engine.incremental
        self.times_words = engine.times_words
        self.takes_prompt = engine.takes_prompt
        self.sample_rate = engine.sample_rate
        self.declared: list[str] = list(getattr(engine, "declared", None) or [])  # listen.languages as the engine resolved them

    @property
    def info(self) -> Transcription:
        return self.engine.info

    @info.setter
    def info(self, value: Transcription) -> None:
        self.engine.info = value

    @property
    def model_name(self) -> str:
        return self.engine.model_name

    @property
    def languages(self) -> list[str]:
        return self.engine.languages

    def transcribe(self, audio: np.ndarray, *, language: str | None = None) -> Iterator[Segment]:
        return _stepwise(lambda: self.engine.transcribe(audio, language=language), self._lock)

    def transcribe_window(
        self, audio: np.ndarray, *, language: str | None = None, word_timestamps: bool | None = None, prompt: str | None = None
    ) -> Iterator[Segment]:
        return _stepwise(
            lambda: self.engine.transcribe_window(audio, language=language, word_timestamps=word_timestamps, prompt=prompt), self._lock
        )

    def transcribe_turn(
        self, audio: np.ndarray, *, prompt: str | None = None, beam_size: int = 1, silero_filter: bool = False, language: str | None = None
    ) -> str:
        with self._lock:
            return self.engine.transcribe_turn(audio, prompt=prompt, beam_size=beam_size, silero_filter=silero_filter, language=language)

    def transcribe_turn_in(
        self,
        audio: np.ndarray,
        *,
        languages: Sequence[str],
        prompt: str | None = None,
        beam_size: int = 1,
        silero_filter: bool = False,
        last_word: bool = False,
    ) -> TurnText:
        from voicechat.stt_languages import transcribe_turn_in

        with self._lock:
            return transcribe_turn_in(
                self.engine,
                audio,
                languages=languages,
                prompt=prompt,
                beam_size=beam_size,
                silero_filter=silero_filter,
                last_word=last_word,
            )

    def warm_up(self) -> None:
        with self._lock:
            self.engine.warm_up()

    def close(self) -> None:
        _close_when_free(self.engine, self._lock)


class SharedTTS(TextToSpeech):
    """A text-to-speech engine whose calls are serialized; generators take the lock step by step."""

    def __init__(self, engine: TextToSpeech) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self.name = engine.name
        self.changes_speed = engine.changes_speed
        self.sample_rate = engine.sample_rate  # (known once the engine is loaded)

    @property
    def model_name(self) -> str:
        return self.engine.model_name

    @property
    def speakers(self) -> list[str]:
        return self.engine.speakers

    @property
    def languages(self) -> list[str]:
        return self.engine.languages

    def voices(self) -> list[str]:
        return self.engine.voices()

    def installed_voices(self) -> dict[str, str]:
        return self.engine.installed_voices()

    def synthesize(self, text: str, *, speed: float | None = None) -> Iterator[AudioChunk]:
        if speed is None:  # (an engine without changes_speed may not take the argument at all)
            return _stepwise(lambda: self.engine.synthesize(text), self._lock)
        return _stepwise(lambda: self.engine.synthesize(text, speed=speed), self._lock)

    def warm_up(self) -> None:
        with self._lock:
            self.engine.warm_up()

    def close(self) -> None:
        _close_when_free(self.engine, self._lock)


def _close_when_free(engine: SpeechToText | TextToSpeech, lock: threading.Lock) -> None:
    """Close an engine once no request is inside it (bounded: a call stuck inside is left to the process exit)."""
    if not lock.acquire(timeout=5.0):
        return
    try:
        engine.close()
    finally:
        lock.release()


def _stepwise(start: Callable[[], Iterator[T]], lock: threading.Lock) -> Iterator[T]:
    """Run each step of a generator under the engine's lock; closing it closes the engine's generator."""
    with lock:
        gen = start()
    return _steps(gen, lock)


def _steps(gen: Iterator[T], lock: threading.Lock) -> Iterator[T]:
    try:
        while True:
            with lock:
                try:
                    item = next(gen)
                except StopIteration:
                    return
            yield item
    finally:
        with lock:
            _close(gen)


def _close(gen: Iterator[object]) -> None:
    if isinstance(gen, Generator):  # (a plain iterator has nothing to close)
        gen.close()


class CountedChat(ChatModel):
    """A chat model whose streamed reply pieces are counted (a server's metrics); the rest forwards."""

    def __init__(self, engine: ChatModel, count: Callable[[], None]) -> None:
        self.engine = engine
        self._count = count
        self.name = engine.name
        self.supports_tools = engine.supports_tools
        self.options_honoured = engine.options_honoured

    @property
    def model_name(self) -> str:
        return self.engine.model_name

    def stream(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] = (),
        tool_choice: str | None = None,
        options: SamplingOptions | None = None,
    ) -> ChatStream:
        """Tools and options are passed only when given (and options only to an engine that honours some):
        an engine that takes neither keeps the one-argument call."""
        if options is not None and self.options_honoured and options.asked():
            gen = self.engine.stream(messages, tools, tool_choice, options)
        else:
            gen = self.engine.stream(messages, tools, tool_choice) if tools else self.engine.stream(messages)
        try:
            for item in gen:
                if isinstance(item, TextDelta):
                    self._count()
                yield item
        finally:
            _close(gen)

    def prefill(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> None:
        self.engine.prefill(messages, tools) if tools else self.engine.prefill(messages)

    def end_of_turn_probability(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> float | None:
        return self.engine.end_of_turn_probability(messages, tools) if tools else self.engine.end_of_turn_probability(messages)

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    def warm_up(self) -> None:
        self.engine.warm_up()

    def close(self) -> None:
        self.engine.close()
