"""The voices a server speaks with besides its own (tts.voice): loaded by name when a request asks for one,
a bounded number kept loaded (the least recently used goes first), one load per voice at a time.

The engine says which voices are installed (``TextToSpeech.installed_voices``); a voice that is not, or
that fails to load, is answered with the server's own voice and a notice saying so.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as LoadTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicechat.engines.base import TextToSpeech
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.serve.state import ServerState

NAME_CHARS = 64  # a requested name as a notice repeats it


@dataclass(frozen=True)
class Choice:
    """What speaks a request: the engine, the voice's name (the X-Voicechat-Voice header) and, when it is not
    the voice asked for, why (the X-Voicechat-Voice-Notice header)."""

    engine: TextToSpeech
    name: str
    notice: str | None = None


def printable(text: str, limit: int = NAME_CHARS) -> str:
    """Text as a header may carry it: printable ASCII, cut short."""
    return "".join(ch for ch in text if " " <= ch <= "~")[:limit]


class VoiceCache:
    """Voices by name: ``default()`` is the server's own engine, ``load(value)`` makes an engine for a tts.voice
    value (it runs on the calling thread: call :meth:`choose` from a worker, never the event loop)."""

    def __init__(self, default: Callable[[], TextToSpeech], load: Callable[[str], TextToSpeech], size: int, wait_s: float) -> None:
        self.default, self.load, self.size, self.wait_s = default, load, size, wait_s
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, TextToSpeech] = OrderedDict()  # name -> engine, least recently used first
        self._loading: dict[str, Future[TextToSpeech]] = {}
        self.loads = 0  # voices loaded so far (each name once while it stays kept)

    @property
    def kept(self) -> list[str]:
        with self._lock:
            return list(self._kept)

    def choose(self, requested: str | None) -> Choice:
        own = self.default()
        own_name = own.model_name or own.name
        if not requested:
            return Choice(own, own_name)
        installed = own.installed_voices()
        own_value = next(iter(installed.values()), None)  # (the engine lists its own voice first)
        value = installed.get(requested)
        asked = printable(requested)
        if value is None:
            others = ", ".join(installed) or "none besides this one"
            return Choice(own, own_name, f"voice '{asked}' is not installed here; spoke with {own_name} (installed: {others})")
        if value == own_value:
            return Choice(own, own_name)
        if self.size <= 0:
            return Choice(own, own_name, f"voice '{asked}' is installed but serve.voices_cached is 0; spoke with {own_name}")
        try:
            return Choice(self._get(requested, value), requested)
        except VoicechatError as e:
            return Choice(own, own_name, f"voice '{asked}' could not be loaded ({e.message}); spoke with {own_name}")

    def _get(self, name: str, value: str) -> TextToSpeech:
        with self._lock:
            engine = self._kept.get(name)
            if engine is not None:
                self._kept.move_to_end(name)
                return engine
            pending = self._loading.get(name)
            mine = pending is None
            if pending is None:
                pending = self._loading[name] = Future()
        if not mine:  # another request is loading this voice: wait for its result
            try:
                return pending.result(timeout=self.wait_s)
            except LoadTimeout:
                raise VoicechatError(f"still loading after {self.wait_s:g} s") from None
        try:
            engine = self.load(value)
        except Exception as e:
            error = e if isinstance(e, VoicechatError) else VoicechatError(f"{type(e).__name__}: {e}")
            with self._lock:
                del self._loading[name]
            pending.set_exception(error)  # (not kept: the next request tries again)
            raise error from None
        with self._lock:
            del self._loading[name]
            self._kept[name] = engine
            self.loads += 1
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)  # dropped, not closed: a request still speaking with it keeps it until done
        pending.set_result(engine)
        return engine


def for_server(state: ServerState) -> VoiceCache:
    """The server's voice cache: voices load as the configured engine would with tts.voice set to them,
    each behind its own lock (serve.shared.SharedTTS)."""

    def load(value: str) -> TextToSpeech:
        import dataclasses

        from voicechat.engines import registry
        from voicechat.serve.shared import SharedTTS

        cfg = dataclasses.replace(state.cfg, tts=dataclasses.replace(state.cfg.tts, voice=value))
        return SharedTTS(registry.create("tts", cfg))

    return VoiceCache(lambda: state.tts, load, state.cfg.serve.voices_cached, state.cfg.serve.request_timeout_s)
