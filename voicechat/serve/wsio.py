"""A voice session's source and sink when the microphone and the speaker are on the client's side.

:class:`PushSource` takes the PCM the client streams up and hands the session fixed frames.
:class:`ClientSink` sends each synthesized chunk down as it is ready and learns from the client what
was actually played: the history of an interrupted reply keeps only what the client confirms.
:class:`Outbox` holds what waits to be sent to the client, bounded: a client that does not read
fills it, and is then closed, instead of the server's memory.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from voicechat.voice.io import RATE, Frame, Playback

if TYPE_CHECKING:
    from voicechat.engines.base import AudioChunk

CONFIRM_WAIT_S = 1.0  # an interrupted reply: how long to wait for the client to say how far it played
DRAIN_SLACK_S = 2.0  # a finished reply: how long past its audio to wait for the client's "played"
CUT_SLACK_S = 0.3  # a client that reports this much less than it was sent stopped the reply short


class PushSource:
    """16 kHz mono int16 PCM pushed by a client in any block size, read back in ``frame_ms`` frames.

    At most ``max_buffer_s`` of audio waits; a client that sends faster than the session reads
    (faster than real time) loses the oldest frames, counted in ``dropped``, never memory.
    """

    realtime = True
    timed = False  # frames come over the network: when they were heard is the client's business
    hears_speaker = True

    def __init__(self, frame_ms: int, max_buffer_s: float = 10.0) -> None:
        self.frame_ms = frame_ms
        self.frame_bytes = RATE * frame_ms // 1000 * 2
        self._frames: queue.Queue[bytes] = queue.Queue(maxsize=max(1, int(max_buffer_s * 1000 / frame_ms)))
        self._rest = b""
        self._ended = threading.Event()
        self.received = 0  # bytes
        self.dropped = 0  # frames

    def push(self, data: bytes) -> None:
        if self._ended.is_set():
            return
        self.received += len(data)
        buf = self._rest + data
        whole = len(buf) - len(buf) % self.frame_bytes
        for start in range(0, whole, self.frame_bytes):
            frame = buf[start : start + self.frame_bytes]
            while True:
                try:
                    self._frames.put_nowait(frame)
                    break
                except queue.Full:
                    try:
                        self._frames.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        self._rest = buf[whole:]

    def end(self) -> None:
        """No more audio will come."""
        self._ended.set()

    def read(self, timeout: float) -> Frame | None:
        try:
            return Frame(self._frames.get(timeout=timeout))
        except queue.Empty:
            return None

    @property
    def exhausted(self) -> bool:
        return self._ended.is_set() and self._frames.empty()

    def hold(self, held: bool) -> None:
        pass  # a live microphone does not wait: the listener decides what to ignore


class Outbox:
    """Messages (text or bytes) waiting for one client, in order, put from any thread, taken on the event loop.

    At most ``max_items`` messages and ``max_bytes`` bytes wait; a put past that sets ``overflowed`` (the
    client is not reading what it is sent) and is dropped, as is everything after it: the connection is to
    be closed. Errors about what the client sent are coalesced: while one is waiting, the same message
    again only counts (``repeats`` in the one that is sent), so a client flooding bad input and not reading
    costs one message, not one per input.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_items: int, max_bytes: int) -> None:
        self.loop = loop
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: collections.deque[Any] = collections.deque()
        self._bytes = 0
        self._errors: dict[str, int] = {}  # error message waiting -> how many more times it was said meanwhile
        self._lock = threading.Lock()
        self._ready = asyncio.Event()  # set on the loop's thread only
        self.overflowed = False
        self.ended = False

    def put(self, item: str | bytes) -> bool:
        with self._lock:
            if self.overflowed or self.ended:
                return False
            if len(self._items) >= self.max_items or self._bytes + len(item) > self.max_bytes:
                self.overflowed = True
                was_empty = True  # wake the taker: it ends
            else:
                was_empty = not self._items
                self._items.append(item)
                self._bytes += len(item)
        if was_empty:
            self._wake()
        return not self.overflowed

    def error(self, message: str) -> None:
        """An error event about the client's input, coalesced with the same one still waiting."""
        with self._lock:
            if message in self._errors:
                self._errors[message] += 1
                return
            if self.overflowed or self.ended:
                return
            self._errors[message] = 0
        if not self.put(_ErrorItem(message)):
            with self._lock:
                self._errors.pop(message, None)

    def end(self) -> None:
        """Nothing more will be put; the taker gets None once the rest is taken."""
        with self._lock:
            self.ended = True
        self._wake()

    def _wake(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._ready.set()
        else:
            try:
                self.loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop is closed: nobody takes any more
                pass

    async def take(self) -> str | bytes | None:
        """The next message; None once ended (or overflowed) and nothing more is to be sent."""
        import json

        while True:
            with self._lock:
                if self.overflowed:
                    self._items.clear()
                    self._errors.clear()
                    self._bytes = 0
                    return None
                if self._items:
                    item = self._items.popleft()
                    self._bytes -= len(item)
                    if isinstance(item, _ErrorItem):
                        repeats = self._errors.pop(item, 0)
                        doc: dict[str, Any] = {"type": "error", "message": str(item)}
                        if repeats:
                            doc["repeats"] = repeats
                        return json.dumps(doc, ensure_ascii=False)
                    return item
                if self.ended:
                    return None
                self._ready.clear()
            await self._ready.wait()

    @property
    def waiting(self) -> tuple[int, int]:
        with self._lock:
            return len(self._items), self._bytes


class _ErrorItem(str):
    """An error message in the outbox (sent as an error event when its turn comes)."""


@dataclass
class _Sent:
    text: str
    seconds: float


class ClientSink:
    """Reply audio to a client (``send(header, pcm)``), with the client's word on what it played."""

    speaks = True
    audible = True  # the client plays it aloud: its echo may reach the client's microphone
    reports_far_end = False  # (the client cancels its own echo: browsers do)
    confirm_wait_s = CONFIRM_WAIT_S  # a stopped reply waits this long for the client to say how far it played
    pause_for_echo = False  # paused only for speech known to be the user's: the client cancels its own echo (no gaps for it)

    def __init__(self, send: Callable[[dict[str, Any], bytes | None], None], closed: threading.Event, *, pausable: bool = False) -> None:
        """``pausable``: the client said it pauses its playback on ``audio_hold`` (``?hold=1``): speech over a reply
        pauses it there as on a sound card, so a backchannel lets it go on where it paused (voice.barge)."""
        self.send = send
        self.closed = closed
        self.pausable = pausable
        self.reply = 0
        self._held_at: float | None = None  # the reply is paused at the client since then
        self._held_s = 0.0  # how long the current reply was paused at the client, in all
        self._sent: list[_Sent] = []
        self._first: float | None = None
        self._stopped = False
        self._played: float | None = None  # seconds the client confirmed for the current reply
        self._waited = False
        self._done = threading.Event()
        self._lock = threading.Lock()

    def begin(self) -> None:
        with self._lock:
            self.reply += 1
            self._sent, self._first, self._stopped, self._played, self._waited = [], None, False, None, False
            self._held_at, self._held_s = None, 0.0
            self._done.clear()

    def play(self, chunk: AudioChunk) -> None:
        if self._stopped or self.closed.is_set():
            return
        samples = np.clip(np.asarray(chunk.samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
        pcm = (samples * 32767.0).astype("<i2").tobytes()
        with self._lock:
            if self._first is None:
                self._first = time.perf_counter()
            self._sent.append(_Sent(chunk.text, len(samples) / chunk.sample_rate))
        self.send(
            {
                "type": "audio",
                "reply": self.reply,
                "text": chunk.text,
                "sample_rate": chunk.sample_rate,
                "samples": len(samples),
                "format": "s16le",
            },
            pcm,
        )

    def drain(self) -> None:
        """Wait until the client says it has played the whole reply (bounded by the reply's length)."""
        self.send({"type": "audio_end", "reply": self.reply}, None)
        with self._lock:
            total = sum(s.seconds for s in self._sent)
            started = self._first or time.perf_counter()
        while not self._done.wait(0.05):
            if self._stopped or self.closed.is_set() or time.perf_counter() > started + total + self._paused_s() + DRAIN_SLACK_S:
                return

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._sent:
            self.send({"type": "audio_stop", "reply": self.reply}, None)

    def hold(self, on: bool) -> bool:
        """Pause the client's playback of the reply (``audio_hold``), or let it go on; True: it is now as asked.
        A client that did not say it can pause is never paused (it plays on, and does its own echo handling)."""
        if not self.pausable:
            return False
        with self._lock:
            if on == (self._held_at is not None):
                return True
            if on and (self._stopped or not self._sent or self._done.is_set()):
                return False  # nothing is playing there
            if on:
                self._held_at = time.perf_counter()
            elif self._held_at is not None:
                self._held_s += time.perf_counter() - self._held_at
                self._held_at = None
            reply = self.reply
        self.send({"type": "audio_hold", "reply": reply, "on": on}, None)
        return True

    def _paused_s(self) -> float:
        """How long the current reply has been paused at the client (its real-time playback is that much later)."""
        with self._lock:
            return self._held_s + (time.perf_counter() - self._held_at if self._held_at is not None else 0.0)

    def confirm(self, reply: int, seconds: float, done: bool) -> None:
        """The client's report: ``seconds`` of reply ``reply`` have been played (``done``: it has stopped)."""
        with self._lock:
            if reply != self.reply:
                return
            self._played = max(0.0, float(seconds))
            if done:
                self._done.set()

    def playback(self) -> Playback:
        if self._stopped and self._sent and not self._done.is_set() and not self._waited and self.confirm_wait_s:
            self._done.wait(self.confirm_wait_s)  # the client answers an audio_stop with how far it got
            self._waited = True
        with self._lock:
            total = sum(s.seconds for s in self._sent)
            if self._played is not None:
                played = self._played
            elif not self._stopped:
                played = total  # a client that never reports: a finished reply counts as played
            else:  # stopped, and the client said nothing: what real-time playback reached
                paused = self._held_s + (time.perf_counter() - self._held_at if self._held_at is not None else 0.0)
                played = max(0.0, time.perf_counter() - self._first - paused) if self._first is not None else 0.0
            cut = self._played is not None and played < total - CUT_SLACK_S
            return Playback(_heard(self._sent, played), self._first, cut=cut)

    def feed(self, far_end: object) -> None:
        pass  # the client hears its own speaker; this side has no far end


def _heard(sent: list[_Sent], played: float) -> str:
    """The text of the chunks played to the end, plus the spoken share of the one cut short."""
    out: list[str] = []
    at = 0.0
    for s in sent:
        if played >= at + s.seconds - 1e-3:
            if not out or out[-1] != s.text:
                out.append(s.text)
        elif played > at:
            words = s.text.split()
            share = " ".join(words[: int(len(words) * (played - at) / s.seconds)])
            if share:
                out.append(share)
            break
        else:
            break
        at += s.seconds
    return " ".join(t for t in out if t).strip()
