"""What a voice session reads from and plays to, with the capabilities each states.

A session never probes its source or sink: what they can do is declared here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from voicechat.conversation.slash import Outcome
    from voicechat.engines.base import AudioChunk
    from voicechat.voice.echo import FarEnd
    from voicechat.voice.events import Event, Summary

RATE = 16000  # sources deliver 16 kHz mono int16 frames


@dataclass(frozen=True)
class Frame:
    """One frame from a source: 16 kHz mono int16 PCM, and what the source knows of it."""

    pcm: bytes  # what is kept: transcribed, and judged once speech is in progress
    captured_at: float | None = None  # perf_counter() when it was heard (a live microphone); None: when it is read
    detect: bytes | None = None  # while the speaker plays, what voice detection should judge for the start of speech
    # (an echo canceller's more suppressed output); None: judge ``pcm``
    near: bool | None = None  # it holds a sound the speaker cannot explain, someone in the room (an echo canceller's
    # voice.echo.EchoPath); None: not known (no canceller)


class Source(Protocol):
    """16 kHz mono int16 frames of ``frame_ms`` each."""

    frame_ms: int
    realtime: bool  # frames arrive as they are spoken (a microphone, a paced file); False: faster than that
    timed: bool  # frames carry their capture time (a live microphone): an echo canceller can line up the far end

    def read(self, timeout: float) -> Frame | None:
        """The next frame, or None when none came within timeout."""

    @property
    def exhausted(self) -> bool:
        """No frame will ever come again (the end of a file)."""

    @property
    def hears_speaker(self) -> bool:
        """False once this microphone is known not to hear the loudspeaker (headphones): speech over a reply is
        then the user's, with nothing to tell apart from the reply's echo."""

    def hold(self, held: bool) -> None:
        """The session is answering (True) or listening again (False). A live microphone ignores this;
        a file read faster than real time waits, so that its turns are taken one at a time."""


@dataclass
class Playback:
    """What a sink reports about the reply in progress."""

    text: str = ""  # the reply text that actually came out (whole chunks, plus the share of a cut one)
    first_sample_at: float | None = None  # perf_counter() when the first sample reached the device or file
    cut: bool = False  # the listener stopped it short (a remote player that stopped early), without an interrupt here
    seconds: float | None = None  # how long the sound played lasted (a sound card); None: the sink cannot tell


class Sink(Protocol):
    """Where reply audio goes."""

    speaks: bool  # False: no audio at all (text only); the session then skips synthesis
    audible: bool  # a real loudspeaker: its sound (and echo) reaches the microphone
    reports_far_end: bool  # it can report every block it plays, with the time it sounds (:meth:`feed`)

    def begin(self) -> None:
        """A new reply starts: accept audio again and report afresh."""

    def play(self, chunk: AudioChunk) -> None:
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

    def feed(self, far_end: FarEnd) -> None:
        """Report every block played, with the time it sounds, to an echo canceller's far end (only when
        ``reports_far_end``; other sinks ignore it)."""


class LiveSession(Protocol):
    """What a front end drives: the conversation in this process (:class:`voicechat.voice.session.VoiceSession`) or
    one on a server (:class:`voicechat.talk.remote.RemoteSession`). Both satisfy it, as the type checker checks."""

    modes: bool  # /mode is offered

    @property
    def mode(self) -> str:
        """vad | ptt | text"""

    @property
    def idle(self) -> bool:
        """No reply in progress."""

    @property
    def done(self) -> bool:
        """The session has ended (its input ran out, /quit, or the other side went away)."""

    @property
    def lost(self) -> str | None:
        """Why the session was cut off (a server that went away mid-session), said once it is over; None otherwise."""

    def subscribe(self, fn: Callable[[Event], None]) -> None: ...

    def warm_up(self) -> None: ...

    def start(self) -> None: ...

    def send_text(self, text: str) -> None: ...

    def command(self, line: str) -> Outcome: ...

    def toggle_recording(self) -> None: ...

    def interrupt(self) -> None: ...

    def close(self, timeout: float = ...) -> bool: ...

    def summary(self) -> Summary: ...
