"""Wake words over Wyoming, for Home Assistant and its satellites: the ``wake`` program of ``info``, and one
connection's wake word streams.

- ``detect`` (optional ``names``: only those words; names that are no built-in word get an ``error`` naming
  them, and the rest are listened for) makes the connection a wake word connection until it sends ``transcribe``;
- ``audio-start``, ``audio-chunk``... (any rate, width and channels; a satellite that sends chunks without
  ``audio-start`` starts the stream with its first chunk's format) -> ``detection`` (the word, and the position
  in the stream in ms) each time a word is heard: listening goes on after it (one utterance, one detection);
- ``audio-stop`` -> ``not-detected`` if no word was heard in the stream; ``detect`` then ``audio-stop`` with no
  audio -> ``not-detected`` at once.
A wake word stream holds one of serve.max_sessions while it lasts and has no length limit: its memory is
bounded (fixed model buffers, less than one 80 ms frame waiting). The decision itself is
``voicechat.voice.wake_words.WakeDetector``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from voicechat.voice.wake_words import BUILTIN, OPENWAKEWORD, PRETRAINED, Scorer, WakeDetector, WordScorer, resolve

Send = Callable[[Any], Awaitable[None]]
Fail = Callable[[str, str], Awaitable[None]]


def wake_program(version: str, me: Any) -> Any:
    """The ``wake`` entry of ``info``: the built-in words. Home Assistant shows a word's description as its name,
    so that is the phrase; the model's licence goes with its attribution (Wyoming has no licence field)."""
    from wyoming.info import Attribution, WakeModel, WakeProgram

    return WakeProgram(
        name="voicechat",
        attribution=me,
        installed=True,
        description=f"voicechat wake words, offline (openWakeWord models: {PRETRAINED})",
        version=version,
        models=[
            WakeModel(
                name=w.name,
                attribution=Attribution(name=f"{OPENWAKEWORD[0]}; licence: {w.licence}", url=OPENWAKEWORD[1]),
                installed=True,
                description=w.phrase,
                version=None,
                languages=list(w.languages),
                phrase=w.phrase,
            )
            for w in BUILTIN.values()
        ],
    )


class WakeListener:
    """The wake word side of one Wyoming connection. ``take_slot`` registers a stream (False: refused, and it
    has said why), ``release_slot`` ends it; ``convert`` makes a converter to 16 kHz mono int16 for a format."""

    def __init__(
        self,
        send: Send,
        fail: Fail,
        *,
        threshold: float,
        take_slot: Callable[[], Awaitable[bool]],
        release_slot: Callable[[], None],
        convert: Callable[[int, int, int], Any],
        scorer: Callable[[list[str]], Scorer] = WordScorer,
    ) -> None:
        self.send, self.fail = send, fail
        self.threshold = threshold
        self.take_slot, self.release_slot, self.convert, self.make_scorer = take_slot, release_slot, convert, scorer
        self.requested = False  # a detect was received: audio on this connection is for wake words
        self.words: dict[str, str] = {}  # model -> the name to answer with
        self.context: dict[str, Any] | None = None
        self.detector: WakeDetector | None = None  # the stream in progress
        self.converter: Any = None
        self.detected = False  # in the stream in progress
        self._lock = threading.Lock()  # held while the models work on a thread: closing waits for it

    @property
    def streaming(self) -> bool:
        return self.detector is not None

    async def detect(self, event: Any) -> None:
        from wyoming.wake import Detect

        request = Detect.from_event(event)
        names = request.names
        if names is not None and not isinstance(names, list):
            raise TypeError("names is not a list")
        self.words, unknown = resolve(names)
        self.context = request.context if isinstance(request.context, dict) else None
        self.requested = True
        if self.detector is not None:  # a satellite asks again while it streams: listen for these from now on
            scorer, words = self.detector.scorer, list(self.words)
            await asyncio.get_running_loop().run_in_executor(None, self._locked, lambda: scorer.use(words))
        if unknown:
            listening = f"listening for {', '.join(self.words)}" if self.words else "nothing to listen for"
            await self.fail(
                f"no wake word {', '.join(repr(n) for n in unknown)} here ({listening}); choose from {', '.join(BUILTIN)}",
                "unknown-wake-word",
            )

    def stop_requests(self) -> None:
        """transcribe: the next audio is for speech to text."""
        self.requested = False

    async def start(self, rate: int, width: int, channels: int) -> bool:
        """Open a stream (the caller has checked the format and closed any stream before); False: close the connection."""
        if not await self.take_slot():
            return False
        words = list(self.words)
        make = self.make_scorer
        try:
            scorer = await asyncio.get_running_loop().run_in_executor(None, lambda: make(words))
        except BaseException:
            self.release_slot()
            raise
        self.detector = WakeDetector(scorer, self.threshold)
        self.converter = self.convert(rate, width, channels)
        self.detected = False
        return True

    async def chunk(self, pcm_in: bytes) -> None:
        from wyoming.wake import Detection

        assert self.detector is not None
        detector, pcm = self.detector, self.converter.convert(pcm_in)
        hits = await asyncio.get_running_loop().run_in_executor(None, self._locked, lambda: detector.feed(pcm))
        for hit in hits:
            self.detected = True
            name = self.words.get(hit.word, hit.word)
            await self.send(Detection(name=name, timestamp=hit.timestamp_ms, context=self.context).event())

    async def stop(self) -> None:
        """audio-stop: not-detected if no word was heard (also for a detect with no audio at all)."""
        from wyoming.wake import NotDetected

        detected = self.detected
        self.close()
        if not detected:
            await self.send(NotDetected(context=self.context).event())

    def close(self) -> None:
        """End the stream in progress, if any (its slot freed). Models still working on a thread (the connection
        was cancelled while it waited for them) are closed by that thread's successor once they are done."""
        detector, self.detector, self.detected = self.detector, None, False
        self.converter = None
        if detector is None:
            return
        self.release_slot()
        if self._lock.acquire(blocking=False):
            try:
                detector.scorer.close()
            finally:
                self._lock.release()
        else:
            try:
                asyncio.get_running_loop().run_in_executor(None, self._locked, detector.scorer.close)
            except RuntimeError:  # the loop is shutting down: the models close themselves when collected
                pass

    def _locked(self, work: Callable[[], Any]) -> Any:
        with self._lock:
            return work()
