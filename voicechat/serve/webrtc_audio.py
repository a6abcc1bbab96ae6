"""Reply audio waiting to go out on a WebRTC call's track, and what each reply has played (no aiortc here).

The session's speaker thread puts each reply's audio in (:meth:`ReplyAudio.push`, bounded: past
``max_s`` seconds waiting it waits for room, with a way out); the track takes one 20 ms frame at a
time, paced in real time (:mod:`voicechat.serve.webrtc_track`). Because the server itself plays the
reply, it knows how much of each reply went out: :class:`Note` says when a reply started, stopped
(played to its end) or was cleared (cut by a barge-in or ``output_audio_buffer.clear``), and how many
seconds were played, which is what the history keeps (``ClientSink.confirm``).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np

RATE = 48000  # Opus's rate: what the track sends
FRAME = RATE * 20 // 1000  # samples in one 20 ms frame


@dataclass(frozen=True)
class Note:
    kind: str  # started, stopped (played to the end) or cleared (cut)
    reply: int
    seconds: float = 0.0  # stopped/cleared: how much of the reply was played


class ReplyAudio:
    def __init__(self, max_s: float = 30.0) -> None:
        self.max_samples = int(max_s * RATE)
        self._pieces: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._queued = 0  # samples waiting
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self.current: int | None = None  # the reply whose audio went out last
        self.played = 0  # samples of it sent
        self._ended = 0  # the latest reply whose audio is complete
        self._finished = 0  # the latest reply reported stopped or cleared
        self.closed = False

    def push(self, reply: int, samples: np.ndarray, stop: threading.Event | None = None) -> bool:
        """Queue int16 samples at 48 kHz; waits while more than ``max_s`` waits. False if closed or stopped meanwhile."""
        samples = np.asarray(samples, dtype=np.int16).reshape(-1)
        with self._room:
            while self._queued > 0 and self._queued + len(samples) > self.max_samples:
                if self.closed or (stop is not None and stop.is_set()) or reply <= self._finished:
                    return False
                self._room.wait(0.1)
            if self.closed or reply <= self._finished:
                return False
            self._pieces.append((reply, samples))
            self._queued += len(samples)
            return True

    def end(self, reply: int) -> list[Note]:
        """All of reply ``reply``'s audio is queued: it stops once played (at once if nothing of it waits)."""
        with self._lock:
            self._ended = max(self._ended, reply)
            if reply <= self._finished or any(r == reply for r, _ in self._pieces):
                return []
            self._finished = reply
            return [Note("stopped", reply, self.played / RATE if self.current == reply else 0.0)]

    def clear(self, reply: int) -> list[Note]:
        """Drop what waits of reply ``reply`` (it was cut); the note says how much of it was played."""
        with self._room:
            kept = collections.deque((r, p) for r, p in self._pieces if r != reply)
            self._queued = sum(len(p) for _, p in kept)
            self._pieces = kept
            self._room.notify_all()
            if reply <= self._finished:
                return []
            self._finished = reply
            return [Note("cleared", reply, self.played / RATE if self.current == reply else 0.0)]

    def take(self, n: int = FRAME) -> tuple[np.ndarray, list[Note]]:
        """The next ``n`` samples (silence where nothing waits) and what happened to the replies meanwhile."""
        out = np.zeros(n, dtype=np.int16)
        notes: list[Note] = []
        filled = 0
        with self._room:
            while filled < n and self._pieces:
                reply, piece = self._pieces[0]
                if reply != self.current:
                    if self.current is not None and self._finished < self.current:  # its audio is over: a new reply began
                        self._finished = self.current
                        notes.append(Note("stopped", self.current, self.played / RATE))
                    self.current, self.played = reply, 0
                    notes.append(Note("started", reply))
                k = min(n - filled, len(piece))
                out[filled : filled + k] = piece[:k]
                if k == len(piece):
                    self._pieces.popleft()
                else:
                    self._pieces[0] = (reply, piece[k:])
                self.played += k
                self._queued -= k
                filled += k
            current = self.current
            if current is not None and self._finished < current <= self._ended and not any(r == current for r, _ in self._pieces):
                self._finished = current
                notes.append(Note("stopped", current, self.played / RATE))
            if filled:
                self._room.notify_all()
        return out, notes

    def queued_s(self) -> float:
        """Seconds of audio waiting to go out."""
        with self._lock:
            return self._queued / RATE

    def close(self) -> None:
        with self._room:
            self.closed = True
            self._pieces.clear()
            self._queued = 0
            self._room.notify_all()
