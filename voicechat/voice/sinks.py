"""Sinks for reply audio: the sound card, a file, or nothing (text only)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from voicechat.voice.io import Playback

if TYPE_CHECKING:
    from voicechat.audio import Speaker
    from voicechat.engines.base import AudioChunk


class SpeakerSink:
    """A loudspeaker (:class:`voicechat.audio.Speaker`): reports exactly what came out, and when."""

    speaks = True
    audible = True
    pausable = True  # hold() pauses the sound where it plays (voice.barge: a backchannel lets it go on)
    reports_far_end = True

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker

    def begin(self) -> None:
        self.speaker.reset()

    def play(self, chunk: AudioChunk) -> None:
        self.speaker.play(chunk)

    def drain(self) -> None:
        self.speaker.drain()

    def stop(self) -> None:
        self.speaker.stop()

    def hold(self, on: bool) -> bool:
        return self.speaker.hold(on)

    def playback(self) -> Playback:
        return Playback(self.speaker.played.text(), self.speaker.first_audio_at, seconds=self.speaker.played.seconds(self.speaker.rate))

    def feed(self, far_end: object) -> None:
        """Report every block written, with the time it sounds, to an echo canceller's far end."""
        self.speaker.tap = far_end


REPLY_GAP_S = 1.0  # a file of replies: this much silence between one reply and the next, as between turns


class FileSink:
    """Replies written to an audio file (:class:`voicechat.audiofile.AudioFileWriter`), each after a second of
    silence (the first excepted); all of a chunk counts as played once written, and a stopped reply writes
    nothing more."""

    speaks = True
    audible = False
    reports_far_end = False

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self._texts: list[str] = []
        self._first: float | None = None
        self._stopped = False
        self._wrote = False  # a reply before this one wrote audio

    def begin(self) -> None:
        self._texts, self._first, self._stopped = [], None, False
        self.writer.reset()  # a WAV is published under its final name from the first reply on

    def play(self, chunk: AudioChunk) -> None:
        if self._stopped:
            return
        if self._wrote and self._first is None:  # the first audio of a reply after another: a pause between them
            import numpy as np

            from voicechat.engines.base import AudioChunk

            self.writer.play(AudioChunk(np.zeros(int(chunk.sample_rate * REPLY_GAP_S), dtype=np.float32), chunk.sample_rate, ""))
        self._wrote = True
        self.writer.play(chunk)
        if self._first is None:
            self._first = time.perf_counter()
        if not self._texts or self._texts[-1] != chunk.text:  # one text may come as several chunks
            self._texts.append(chunk.text)

    def drain(self) -> None:
        pass

    def stop(self) -> None:
        self._stopped = True

    def hold(self, on: bool) -> bool:
        return False  # a file is not heard while it is written

    def playback(self) -> Playback:
        return Playback(" ".join(t for t in self._texts if t).strip(), self._first)

    def feed(self, far_end: object) -> None:
        pass  # nothing is heard


class TextSink:
    """No audio device and no file: replies are shown, never spoken."""

    speaks = False
    audible = False
    reports_far_end = False

    def begin(self) -> None:
        pass

    def play(self, chunk: AudioChunk) -> None:
        pass

    def drain(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def hold(self, on: bool) -> bool:
        return False

    def playback(self) -> Playback:
        return Playback()

    def feed(self, far_end: object) -> None:
        pass  # nothing is heard
