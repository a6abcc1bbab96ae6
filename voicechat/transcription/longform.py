"""Transcribe recordings of any length in bounded memory, decoding ahead of the model.

A decoder thread reads the files one after the other and cuts each into
windows of at most a few minutes, at the quietest moment near the window's
end so no word is split. The model transcribes one window while the thread
decodes the next (and, at the end of a file, the start of the next file). At
most ``QUEUE_WINDOWS`` windows wait in the queue, so memory is bounded by the
window length, not by the recording.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from voicechat.decode import AudioStream
    from voicechat.engines.base import Segment, SpeechToText

SAMPLE_RATE = 16000
WINDOW_SECONDS = 600.0  # longest window handed to the model at once (about 38 MB of float32)
CUT_SEARCH_SECONDS = 20.0  # the cut is at the quietest 100 ms in this last stretch of a window
QUEUE_WINDOWS = 1  # windows decoded ahead and waiting


@dataclass
class Window:
    offset: float  # seconds from the start of the recording
    audio: np.ndarray


def quietest_cut(audio: np.ndarray, search: int, frame: int = SAMPLE_RATE // 10) -> int:
    """Sample index in the last ``search`` samples where a 100 ms frame is quietest."""
    start = max(0, len(audio) - search)
    tail = audio[start:]
    n = len(tail) // frame
    if n < 2:
        return len(audio)
    energy = np.square(tail[: n * frame].reshape(n, frame), dtype=np.float32).mean(axis=1)
    rest = energy[1:][::-1]  # never cut at the very start of the stretch; of equal lows, take the latest
    best = len(energy) - 1 - int(np.argmin(rest))
    return start + best * frame + frame // 2


def windows(blocks: Iterable[np.ndarray], window_seconds: float = WINDOW_SECONDS, sample_rate: int = SAMPLE_RATE) -> Iterator[Window]:
    """Cut a stream of sample blocks into windows of at most window_seconds, each cut at a quiet moment."""
    limit = int(window_seconds * sample_rate)
    search = min(int(CUT_SEARCH_SECONDS * sample_rate), limit // 4)
    parts: list[np.ndarray] = []
    held = 0
    offset = 0
    for block in blocks:
        parts.append(block)
        held += len(block)
        while held >= limit:
            audio = np.concatenate(parts)
            cut = quietest_cut(audio[:limit], search)
            yield Window(offset / sample_rate, audio[:cut].copy())
            offset += cut
            rest = audio[cut:].copy()
            parts, held = [rest], len(rest)
    if held:
        yield Window(offset / sample_rate, np.concatenate(parts))


def transcribe_windows(
    stt: SpeechToText,
    wins: Iterable[Window],
    *,
    no_speech_threshold: float,
    language: str | None = None,
    word_timestamps: bool | None = None,
    prompt: str | None = None,
) -> Iterator[Segment]:
    """Segments of every window, with times from the start of the recording; silent windows are skipped.
    ``word_timestamps`` and ``prompt`` count where the engine honours them (``times_words``, ``takes_prompt``).
    With no ``language`` (or "auto"), the first window with speech finds it and the others are decoded in it,
    so a recording has one language (``stt.info.language`` after the last window)."""
    from voicechat.engines import guard
    from voicechat.stt_languages import fixed

    language = fixed(language)

    last = 0.0  # word times never go back across windows either (the last word of one may overlap the next)
    for win in wins:
        if guard.is_silence(win.audio):
            continue
        found = stt.transcribe_window(win.audio, language=language, word_timestamps=word_timestamps, prompt=prompt)
        for seg in guard.filter_segments(found, win.audio, SAMPLE_RATE, no_speech_threshold):
            seg = shift(seg, win.offset)
            if seg.words and seg.words[0].start < last:
                words = []
                for w in seg.words:
                    start = max(w.start, last)
                    words.append(replace(w, start=start, end=max(w.end, start)))
                    last = start
                seg = replace(seg, words=tuple(words), end=max(seg.end, words[-1].end))
            elif seg.words:
                last = seg.words[-1].start
            language = language or stt.info.language  # (set once the window's first segment is decoded)
            yield seg


def shift(seg: Segment, offset: float) -> Segment:
    if not offset:
        return seg
    words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in seg.words)
    return replace(seg, start=seg.start + offset, end=seg.end + offset, words=words)


# --- decoding ahead, across files ---------------------------------------------------------


@dataclass
class Opened:
    """A file was opened: its display name and declared duration (None when unknown)."""

    index: int
    name: str
    duration: float | None


@dataclass
class Failed:
    index: int
    error: BaseException


@dataclass
class Done:
    index: int
    duration: float  # seconds actually decoded


_WINDOW = "window"
_Queued = tuple[str, int, Window] | Opened | Done | Failed  # what the decoding thread hands over
FileEvent = Window | Opened | Done | Failed  # what a file's events are


class Prefetcher:
    """Decodes files in order on one thread and hands out their windows through a bounded queue.

    ``for index, events in prefetcher.files():`` yields, per file, an iterator of
    ``Opened``, then ``Window``s, then ``Done`` or ``Failed``. Leaving a file's
    iterator early tells the thread to stop decoding that file. ``close()`` stops
    and joins the thread.
    """

    def __init__(
        self,
        sources: list[str],
        open_audio: Callable[[str], AudioStream],
        window_seconds: float | None = None,
        queue_windows: int | None = None,
    ) -> None:
        self._sources = sources
        self._open = open_audio
        self._window_seconds = window_seconds or WINDOW_SECONDS
        self._queue: queue.Queue[_Queued] = queue.Queue(maxsize=max(1, queue_windows or QUEUE_WINDOWS))
        self._stop = threading.Event()
        self._skip = -1  # index of a file the consumer gave up on
        self._thread = threading.Thread(target=self._run, name="voicechat-decode", daemon=True)

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        while True:  # unblock a put() waiting for room
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)

    def _put(self, item: _Queued) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        for index, source in enumerate(self._sources):
            if self._stop.is_set():
                return
            try:
                stream = self._open(source)
            except BaseException as e:  # reported by the consumer, in order
                if not self._put(Failed(index, e)):
                    return
                continue
            try:
                with stream:
                    if not self._put(Opened(index, stream.name, stream.duration)):
                        return
                    for win in windows(stream, self._window_seconds, stream.sample_rate):
                        if self._skip == index:
                            break
                        if not self._put((_WINDOW, index, win)):
                            return
                    else:
                        if not self._put(Done(index, stream.samples / stream.sample_rate)):
                            return
            except BaseException as e:
                if not self._put(Failed(index, e)):
                    return

    def files(self) -> Iterator[tuple[int, Generator[FileEvent, None, None]]]:
        for index in range(len(self._sources)):
            events = self._events(index)
            yield index, events
            events.close()  # if the consumer stopped early, the thread skips the rest of this file

    def _events(self, index: int) -> Generator[FileEvent, None, None]:
        try:
            while True:
                item = self._next()
                if isinstance(item, tuple):
                    _, i, win = item
                    if i == index:
                        yield win
                    continue
                if item.index != index:
                    continue  # left over from a file given up on
                yield item
                if isinstance(item, (Done, Failed)):
                    return
        finally:
            self._skip = index  # harmless once the file is finished: the thread has moved on

    def _next(self) -> _Queued:
        while True:
            try:
                return self._queue.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the decoder thread ended unexpectedly") from None
