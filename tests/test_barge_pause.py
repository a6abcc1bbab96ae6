"""The listener's pause-then-decide on a loudspeaker (voice.listener), driven frame by frame: echo that got past
the canceller pauses the reply, and the reply goes on once the echo is known to be gone, even when the listener
runs behind the microphone (a loaded machine) and a fast turn end would otherwise come first."""

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

    def __init__(self, kept: np.ndarray, detect: np.ndarray, lag: float) -> None:
        self.kept, self.detect, self.lag = kept, detect, lag
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
        return Frame((self.kept[part] * 32767).astype("<i2").tobytes(), captured_at=captured_at,
                     detect=(self.detect[part] * 32767).astype("<i2").tobytes())


class Words:
    """A transcriber that hears the same words in whatever it is given (a garbled echo)."""

    busy = False

    def __init__(self, heard: str) -> None:
        self.heard = heard

    def transcribe(self, audio: np.ndarray) -> str:
        return self.heard

    def request(self, *a, **k) -> None:
        pass


def run_listener(kept: np.ndarray, detect: np.ndarray, lag: float, heard: str, words: type = Words,
                 said: str = "The sky is blue because of Rayleigh scattering.", busy_after_stop: float = 0.0):
    """The listener over this microphone; the session is answering until a barge-in (and busy_after_stop seconds
    more: still handling what cut the reply short)."""
    cfg = resolve(overrides={"listen.barge_in": True})
    events, turns, holds, barged, stopped = [], [], [], threading.Event(), []

    def on_barge_in() -> None:
        stopped.append(time.perf_counter())
        barged.set()

    listener = Listener(cfg, RoomMic(kept, detect, lag), SilencePolicy(300), words(heard), emit=events.append,
                        deliver=turns.append, set_state=lambda s: None,
                        answering=lambda: not stopped or time.perf_counter() - stopped[0] < busy_after_stop,
                        on_barge_in=on_barge_in, echo=True, said=lambda: said,
                        on_hold=lambda on: holds.append(on) or True)
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


class SlowWords(Words):
    """Hears the same words, as slowly as Whisper on a loaded machine."""

    def transcribe(self, audio: np.ndarray) -> str:
        time.sleep(0.6)
        return self.heard


def test_speech_heard_while_a_late_check_ran_stops_the_reply():
    """The user said a word, paused as the reply paused, and went on ("Hold on, what is two plus two?"). The first
    word was no stop word, so the reply was to go on; but that check took 0.6 s, and meanwhile the user spoke on
    in the quiet. Those words were heard while the reply was paused: they stop it. Before, the new speech was timed
    from after the check, the user had finished by then, the reply went on, and the question was lost (the rig)."""
    detect = np.concatenate([np.zeros(4800, np.float32), buzz(0.3), np.zeros(7200, np.float32), buzz(0.9),
                             np.zeros(24000, np.float32)])
    events, turns, holds, barged = run_listener(detect, detect, 0.0, heard="What is two plus two?", words=SlowWords)
    notices = [e.message for e in events if isinstance(e, ev.Notice)]
    assert notices[0] == "went on with the reply (no voice once it paused)", notices
    assert barged and any(m.startswith("barge-in") for m in notices), notices
    assert turns, notices


class Heard(Words):
    """Hears each stretch as the next of its texts (the last one from then on)."""

    def __init__(self, heard: str) -> None:
        super().__init__(heard)
        self.texts = heard.split("|")

    def transcribe(self, audio: np.ndarray) -> str:
        return self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]


def test_after_a_stop_the_users_next_words_are_not_taken_for_the_reply():
    """"Stop." stopped a story; while the session was still busy with that interjection, the user asked "What time
    is it in Tokyo?", heard as "What time is it in time?": words of the story ("Once upon a time"). Nothing has played
    since the stop, so nothing can echo: it is the user's turn. Before, it was ignored as the assistant's own voice
    and the question was lost (the rig)."""
    detect = np.concatenate([np.zeros(4800, np.float32), buzz(1.2), np.zeros(12800, np.float32), buzz(1.2),
                             np.zeros(24000, np.float32)])
    story = "Once upon a time, a clock maker lived in a town where time stood still."
    events, turns, holds, barged = run_listener(detect, detect, 0.0, heard="Stop. Wait a second.|What time is it in time?",
                                                words=Heard, said=story, busy_after_stop=5.0)
    notices = [e.message for e in events if isinstance(e, ev.Notice)]
    assert barged and notices[0].startswith("barge-in"), notices
    assert not any(m.startswith("ignored the assistant's own voice") for m in notices), notices
    assert len(turns) == 2, notices
