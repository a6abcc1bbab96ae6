"""Engines shared by every client of one server: one call at a time per engine.

A local engine is a single model (llama.cpp's context, Piper's phonemizer) that must not run two
calls at once; the lock also keeps two CPU-bound calls from splitting two cores four ways.
Generators take the lock for each step, not for their whole life, so a long transcription and a
voice session's short turn take turns instead of queueing one behind the other. The chat model
keeps its own lock for a whole reply (llama.cpp evaluates one sequence at a time).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator


class Shared:
    """A proxy to an engine that serializes its calls; everything else passes through."""

    _SERIALIZED = frozenset({"transcribe", "transcribe_window", "transcribe_turn", "synthesize", "warm_up"})

    def __init__(self, engine: Any) -> None:
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_lock", threading.Lock())

    @property
    def engine(self) -> Any:
        return self._engine

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._engine, name)
        if name in self._SERIALIZED and callable(value):
            return self._wrap(value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._engine, name, value)

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        lock = self._lock

        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                result = fn(*args, **kwargs)
            if isinstance(result, Iterator):
                return _stepwise(result, lock)
            return result

        return call


def _stepwise(gen: Iterator[Any], lock: threading.Lock) -> Iterator[Any]:
    """Run each step of a generator under the engine's lock; closing it closes the engine's generator."""
    try:
        while True:
            with lock:
                try:
                    item = next(gen)
                except StopIteration:
                    return
            yield item
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            with lock:
                close()


class Counted:
    """A chat model whose streamed reply pieces are counted (a server's metrics); everything else passes through."""

    def __init__(self, engine: Any, count: Callable[[], None]) -> None:
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_count", count)

    @property
    def engine(self) -> Any:
        return self._engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._engine, name, value)

    def stream(self, messages: Any, **options: Any) -> Iterator[Any]:
        from voicechat.engines.base import TextDelta

        gen = self._engine.stream(messages, **options)
        try:
            for item in gen:
                if isinstance(item, TextDelta):
                    self._count()
                yield item
        finally:
            gen.close()
