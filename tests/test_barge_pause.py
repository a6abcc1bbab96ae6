"""The listener's pause-then-decide on a loudspeaker, end to end in real time: frames paced like a microphone
through the voice detector, the listener's thread and the barge-in machine (voice.barge). The decisions
themselves, and every case that once went wrong, are tested event by event in test_barge.py; these two check
that the listener wires them up: echo that got past the canceller pauses the reply and lets it go on, even
when the listener runs behind the microphone, and a voice that goes on once the reply paused stops it."""

from __future__ import annotations

import threading
import time

import numpy as np

from tests.voice_fakes import buzz
from voicechat.config import resolve
from voicechat.voice import events as ev
from voicechat.voice.endpoint import SilencePolicy
from voicechat.voice.io import Frame
from voicechat.voice.listener import Listener

FRAME_N = 480  # 30 ms at 16 kHz


class RoomMic:
    """Frames as an echo-cancelled microphone gives them: what is kept (``read``), the canceller's view for voice
    detection (``detect_frame``) and the capture time (``captured_at``), here ``lag`` seconds behind the clock."""

    realtime, timed, frame_ms, hears_speaker = True, True, 30, True

    def __init__(self, kept: np.ndarray, detect: np.ndarray, lag: float, near: np.ndarray | None = None) -> None:
        self.kept, self.detect, self.lag = kept, detect, lag
        self.near = near  # per sample: a sound the speaker cannot explain (the canceller's Frame.near)
        self.i, self.t0 = 0, None

    @property
    def exhausted(self) -> bool:
        return self.i + FRAME_N > len(self.kept)

    def read(self, timeout: float) -> Frame | None:
        if self.exhausted:
            return None
        time.sleep(0.03)  # paced like a microphone
        now = time.perf_counter()
        self.t0 = now if self.t0 is None else self.t0
        part = slice(self.i, self.i + FRAME_N)
        captured_at = self.t0 - self.lag + self.i / 16000
        self.i += FRAME_N
        pcm, detect = (self.kept[part] * 32767).astype("<i2").tobytes(), (self.detect[part] * 32767).astype("<i2").tobytes()
        if self.near is None:
            return Frame(pcm, captured_at=captured_at, detect=detect)
        return Frame(pcm, captured_at=captured_at, detect=detect, near=bool(self.near[part].any()))


class Words:
    """A transcriber that hears the same words in whatever it is given (a garbled echo)."""

    busy = False

    def __init__(self, heard: str) -> None:
        self.heard = heard

    def transcribe(self, audio: np.ndarray) -> str:
        return self.heard

    def request(self, *a, **k) -> None:
        pass


def run_listener(
    kept: np.ndarray,
    detect: np.ndarray,
    lag: float,
    heard: str,
    words: type = Words,
    said: str = "The sky is blue because of Rayleigh scattering.",
    busy_after_stop: float = 0.0,
    near: np.ndarray | None = None,
):
    """The listener over this microphone; the session is answering until a barge-in (and busy_after_stop seconds
    more: still handling what cut the reply short)."""
    cfg = resolve(overrides={"listen.barge_in": True})
    events, turns, holds, barged, stopped = [], [], [], threading.Event(), []

    def on_barge_in() -> None:
        stopped.append(time.perf_counter())
        barged.set()

    listener = Listener(
        cfg,
        RoomMic(kept, detect, lag, near),
        SilencePolicy(300),
        words(heard),
        emit=events.append,
        deliver=turns.append,
        set_state=lambda s: None,
        answering=lambda: not stopped or time.perf_counter() - stopped[0] < busy_after_stop,
        on_barge_in=on_barge_in,
        echo=True,
        said=lambda: said,
        on_hold=lambda on: holds.append(on) or True,
    )
    stop = threading.Event()
    thread = threading.Thread(target=listener.run, args=(stop,))
    thread.start()
    thread.join(timeout=30)
    stop.set()
    return events, turns, holds, barged.is_set()


def test_echo_that_stopped_with_the_pause_lets_the_reply_go_on_even_when_the_listener_runs_behind():
    """The canceller leaked 0.3 s of echo to voice detection (the kept audio had none of it): the reply pauses, and
    goes on once the echo is known to be gone, though the listener reads the microphone 0.1 s late and 300 ms of
    silence would end a turn. Before, a turn ended first, its garbled transcript was taken for the user, and the
    reply was cut."""
    detect = np.concatenate([np.zeros(4800, np.float32), buzz(0.3), np.zeros(24000, np.float32)])
    kept = np.zeros_like(detect)
    for lag in (0.0, 0.1):
        events, turns, holds, barged = run_listener(kept, detect, lag, heard="Don't look.")
        assert holds[:2] == [True, False], (lag, holds)
        assert not barged and not turns, (lag, events)
        assert any(isinstance(e, ev.Notice) and e.message.startswith("went on with the reply") for e in events), events


def test_a_voice_that_goes_on_once_the_reply_paused_stops_it():
    """The same start, but the voice goes on in the quiet: someone is talking, and the reply stops."""
    detect = np.concatenate([np.zeros(4800, np.float32), buzz(1.2), np.zeros(24000, np.float32)])
    for lag in (0.0, 0.1):
        events, turns, holds, barged = run_listener(detect, detect, lag, heard="Wait, what time is it?")
        assert holds[0] is True and barged, (lag, events)
        assert any(isinstance(e, ev.Notice) and e.message.startswith("barge-in") for e in events), events
        assert turns, events


def test_the_cancellers_word_on_each_frame_reaches_the_barge_in_machine():
    """CI: leaked echo that stopped with the pause was heard as "No, wait." and stopped the reply. The canceller's
    frames say none of it was a sound the speaker cannot explain: the reply does not even pause (no gap heard). The
    same frames, said to hold such a sound, are the user's "No, wait." said alone: it stops."""
    detect = np.concatenate([np.zeros(4800, np.float32), buzz(0.3), np.zeros(24000, np.float32)])
    for near, stops in ((np.zeros(len(detect), bool), False), (detect != 0, True)):
        events, turns, holds, barged = run_listener(detect, detect, 0.0, heard="No, wait.", near=near)
        assert barged is stops, events
        went_on = [e.message for e in events if isinstance(e, ev.Notice) and e.message.startswith("went on")]
        assert went_on == [] and bool(turns) is stops, events
        assert (True in holds) is stops, holds
