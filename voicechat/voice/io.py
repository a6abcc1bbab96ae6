"""What a voice session reads from and plays to, with the capabilities each states.

A session never probes its source or sink: what they can do is declared here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from voicechat.engines.base import AudioChunk

RATE = 16000  # sources deliver 16 kHz mono int16 frames


class Source(Protocol):
    """16 kHz mono int16 frames of ``frame_ms`` each."""

    frame_ms: int
    realtime: bool  # frames arrive as they are spoken (a microphone, a paced file); False: faster than that

    def read(self, timeout: float) -> bytes | None:
        """The next frame, or None when none came within timeout."""

    @property
    def exhausted(self) -> bool:
        """No frame will ever come again (the end of a file)."""

    def hold(self, held: bool) -> None:
        """The session is answering (True) or listening again (False). A live microphone ignores this;
        a file read faster than real time waits, so that its turns are taken one at a time."""


@dataclass
class Playback:
    """What a sink reports about the reply in progress."""

    text: str = ""  # the reply text that actually came out (whole chunks, plus the share of a cut one)
    first_sample_at: float | None = None  # perf_counter() when the first sample reached the device or file
    cut: bool = False  # the listener stopped it short (a remote player that stopped early), without an interrupt here


class Sink(Protocol):
    """Where reply audio goes."""

    speaks: bool  # False: no audio at all (text only); the session then skips synthesis
    audible: bool  # a real loudspeaker: its sound (and echo) reaches the microphone

    def begin(self) -> None:
        """A new reply starts: accept audio again and report afresh."""

    def play(self, chunk: "AudioChunk") -> None:
        """Queue a chunk (it may block while the device catches up)."""

    def drain(self) -> None:
        """Wait until everything queued has sounded."""

    def stop(self) -> None:
        """Silence now: drop whatever is queued."""

    def hold(self, on: bool) -> bool:
        """Pause now (speech over the reply, not yet known to be the user's), or go on where it paused. True
        when sound was playing and is now paused."""

    def playback(self) -> Playback:
        """The report on the current reply."""
