"""The listener says the user's speech started exactly once per turn, whoever says it.

Speech over a reply a client plays is checked against the reply's words before it stops the reply (voice.barge). If
the reply is all written while that check runs, nothing is left to stop, and the speech is a turn like any other.
The Realtime API's clients must still be told that speech started: in CI, a turn came with
``input_audio_buffer.speech_stopped`` and no ``speech_started`` before it. Event by event: the check is where the
reply ends, so nothing depends on timing."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.voice_fakes import buzz, silence
from voicechat.config import resolve
from voicechat.voice import events as ev
from voicechat.voice.endpoint import SilencePolicy
from voicechat.voice.io import Frame
from voicechat.voice.listener import Listener

pytestmark = pytest.mark.fast


class ClientMic:
    """A client's microphone, read as fast as it comes (no pacing): it may hear the client's own speaker."""

    realtime, timed, frame_ms, hears_speaker = False, False, 30, True

    def __init__(self, audio: np.ndarray) -> None:
        self.pcm, self.i = (audio * 32767).astype("<i2").tobytes(), 0

    @property
    def exhausted(self) -> bool:
        return self.i + 960 > len(self.pcm)

    def read(self, timeout: float) -> Frame | None:
        if self.exhausted:
            return None
        frame = self.pcm[self.i : self.i + 960]
        self.i += 960
        return Frame(frame)


class Check:
    """The transcriber: the barge-in check hears the user's words, and the reply ends while it listens (or not)."""

    busy = False

    def __init__(self, reply: dict, ends_during_check: bool, heard: str) -> None:
        self.reply, self.ends, self.heard = reply, ends_during_check, heard

    def transcribe(self, audio: np.ndarray) -> str:
        if self.ends:
            self.reply["playing"] = False  # the last of the reply was written meanwhile
        return self.heard

    def request(self, *a, **k) -> None:
        pass


SAID = "Once upon a time a dragon lived in a cave above the sea."


def run(ends_during_check: bool, heard: str = "What is the capital of France?", ends_before_check: bool = False) -> tuple[list, list, list]:
    reply = {"playing": True}
    events: list = []
    turns: list = []
    stopped: list = []

    def on_barge_in() -> None:  # as the session does: it announces the speech, and stops the reply
        stopped.append(True)
        events.append(ev.Speech("started"))
        reply["playing"] = False

    listener = Listener(
        resolve(overrides={"listen.barge_in": True}, environ={}),
        ClientMic(np.concatenate([silence(0.3), buzz(1.2), silence(1.0)])),
        SilencePolicy(300),
        Check(reply, ends_during_check, heard),
        emit=events.append,
        deliver=turns.append,
        set_state=lambda s: None,
        answering=lambda: reply["playing"] and not (ends_before_check and listener.barge.speaking),
        on_barge_in=on_barge_in,
        echo=False,
        said=lambda: SAID,
        on_hold=lambda on: False,  # the client plays: nothing to pause here
        pausable=False,
    )
    listener.run(threading.Event())
    return [e for e in events if isinstance(e, ev.Speech)], turns, stopped


def test_speech_over_a_reply_that_ends_before_it_is_told_apart_is_announced_once():
    speech, turns, stopped = run(ends_during_check=True)
    assert not stopped  # nothing was left to stop
    assert speech == [ev.Speech("started")] and len(turns) == 1


def test_speech_that_stops_the_reply_is_announced_once_by_the_barge_in():
    speech, turns, stopped = run(ends_during_check=False)
    assert stopped == [True]
    assert speech == [ev.Speech("started")] and len(turns) == 1 and turns[0].cut_in


def test_the_replys_own_echo_over_it_is_never_announced_even_once_the_reply_has_ended():
    """The reply's words leak back while it is being written, and it ends before they are checked: they are its
    echo, forgotten; a client told "speech started" would have cut its playback for nothing."""
    speech, turns, stopped = run(ends_during_check=False, heard=SAID, ends_before_check=True)
    assert speech == [] and turns == [] and stopped == []
