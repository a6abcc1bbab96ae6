"""Backchannels and false interruptions (issue 22, item 4): "uh-huh", "yeah" or a cough over a reply pause it only
until they are heard for what they are; the reply then goes on where it paused and nothing is sent to the model.
Longer speech, or words that are not a backchannel, stop it.

The rules are driven event by event with an injected clock (the machine of voice.barge, the world of
test_barge.py); one test runs the real listener with the real Whisper on recorded speech.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.test_barge import FRAME_MS, STORY, Clock, Mic, Port, notices, quiet, voiced
from voicechat.config import resolve
from voicechat.voice.backchannel import ENGLISH, Backchannels
from voicechat.voice.barge import BargeIn, BargeTiming
from voicechat.voice.listener import backchannels

fast = pytest.mark.fast


def machine(port: Port, *, hears_speaker: bool = True, interrupt: bool = False, pause_for_echo: bool = True, **timing) -> Mic:
    m = BargeIn(
        BargeTiming(**timing),
        port,
        barge_in=True,
        echo=True,
        checks_words=True,
        backchannels=None if interrupt else Backchannels(ENGLISH),
        pause_for_echo=pause_for_echo,
        clock=port.clock,
    )
    return Mic(m, port, end_ms=300, hears_speaker=hears_speaker)  # (a turn policy that would end any turn at 300 ms)


# -- what counts as one ------------------------------------------------------------------------------------------------
@fast
@pytest.mark.parametrize(
    "heard",
    [
        "Uh-huh.",
        "uh huh",
        "Mm-hmm.",
        "Mhm.",
        "Mmm.",
        "Hmm.",
        "Mm mm",
        "Yeah.",
        "Yeah, yeah.",
        "Right.",
        "Okay.",
        "OK",
        "I see.",
        "Oh, I see.",
    ],
)
def test_backchannels_as_whisper_spells_them(heard):
    assert Backchannels(ENGLISH).match(heard)


@fast
@pytest.mark.parametrize(
    "heard", ["Okay, stop.", "Wait.", "Right, what time is it?", "Yes, tell me more about that.", "No.", "Thank you.", "", "[coughs]"]
)
def test_other_words_are_not_backchannels(heard):
    assert not Backchannels(ENGLISH).match(heard)


SAID = STORY  # what the reply said lately; over its echo, Whisper hears words of it around a backchannel


@fast
@pytest.mark.parametrize("heard", ["of. Yeah.", "The air. Uh-huh.", "Uh-huh, blue.", "Blue. Okay, most.", "Yeah, scattering."])
def test_words_of_the_reply_heard_around_a_backchannel_are_its_echo(heard):
    assert Backchannels(ENGLISH).match(heard, SAID)
    assert not Backchannels(ENGLISH).match(heard)  # (with nothing said, they are words of the user's)


@fast
@pytest.mark.parametrize(
    "heard, said",
    [
        ("The sky is. Yeah.", SAID),  # three of the reply's words before it: more than an echo's edge
        ("Yeah, Paris.", SAID),  # a word the reply did not say
        ("Blue.", SAID),  # the reply's words alone: its echo, not a backchannel
        ("Stop. Okay.", "Never stop believing, okay."),  # a stop word is never the echo's
        ("Yeah, tell me more about the sky.", SAID),
    ],
)
def test_other_words_around_a_backchannel_still_make_it_speech(heard, said):
    assert not Backchannels(ENGLISH).match(heard, said)


@fast
def test_a_cough_has_no_words_and_each_declared_language_adds_its_own():
    assert Backchannels(ENGLISH).no_words("[coughs]") and Backchannels(ENGLISH).no_words(" ... ")
    german = Backchannels.for_languages(ENGLISH, ["de"])
    assert german.match("Ja, genau.") and not Backchannels(ENGLISH).match("Ja, genau.")
    assert Backchannels.for_languages(ENGLISH, ["fr"]).match("D'accord.")


@fast
def test_the_list_and_the_switch_come_from_the_config():
    assert backchannels(resolve(overrides={"barge.backchannels_interrupt": True})) is None
    mine = backchannels(resolve(environ={"VOICECHAT_BARGE_BACKCHANNELS": "aye, go on"}))
    assert mine is not None and mine.match("Aye.") and mine.match("Go on.") and not mine.match("Yeah.")
    assert BargeTiming(backchannel_ms=650).backchannel_ms == 650
    from voicechat.voice.listener import barge_timing

    assert barge_timing(resolve(overrides={"barge.backchannel_ms": 650})).backchannel_ms == 650


# -- false interruptions: the reply goes on where it paused -----------------------------------------------------------
@fast
@pytest.mark.parametrize("hears_speaker", [True, False])  # a loudspeaker (its echo is checked first), headphones
def test_a_backchannel_over_the_reply_pauses_it_then_lets_it_go_on_and_is_no_turn(hears_speaker):
    port = Port(Clock(), texts=["Uh-huh."])
    mic = machine(port, hears_speaker=hears_speaker)
    log = mic.say(voiced(450))
    assert log[0] == "pause" and mic.m.state in ("paused", "barging") and not mic.m.may_end_turn
    log = mic.say(quiet(600))
    assert "stop" not in log and not mic.turns, log  # not stopped, not sent to the model
    assert log.count("pause") == 1 and log.count("go on") == 1 and log.index("forget") < log.index("go on")
    assert notices(log) == ["went on with the reply (backchannel 'Uh-huh.')"]
    assert mic.m.state == "listening"


@fast
@pytest.mark.parametrize("ms", [300, 600])  # one that died with the pause, one that went on in the quiet
def test_a_cough_over_the_reply_lets_it_go_on(ms):
    port = Port(Clock(), texts=[""])  # Whisper hears no words in it
    mic = machine(port)
    log = mic.say(voiced(ms) + quiet(600))
    assert "stop" not in log and not mic.turns and notices(log) == ["went on with the reply (no words)"], log


@fast
def test_a_backchannel_said_as_the_reply_paused_is_named_as_one():
    """Short enough to stop as the reply paused (it looks like the reply's echo): it goes on, saying what it was."""
    port = Port(Clock(), texts=["Yeah."])
    log = machine(port).say(voiced(300) + quiet(600))
    assert "stop" not in log and notices(log) == ["went on with the reply (backchannel 'Yeah.')"]


@fast
def test_a_backchannel_heard_with_the_replys_echo_lets_it_go_on():
    port = Port(Clock(), texts=["of all. Uh-huh."])  # (the reply, tests.test_barge.STORY, ends "... most of all.")
    log = machine(port).say(voiced(450) + quiet(600))
    assert "stop" not in log and notices(log) == ["went on with the reply (backchannel 'of all. Uh-huh.')"], log


# -- real interruptions stop it -------------------------------------------------------------------------------------
@fast
def test_speech_longer_than_a_backchannel_stops_the_reply_and_is_the_turn():
    port = Port(Clock(), texts=["Wait, what time is it in Tokyo?"])
    mic = machine(port, backchannel_ms=900)
    log = mic.say(voiced(900 - FRAME_MS))
    assert log[0] == "pause" and "stop" not in log  # silent at once, not yet stopped
    log = mic.say(voiced(FRAME_MS))
    assert log[-1] == "stop" and notices(log) == ["barge-in: stopping the reply (heard 'Wait, what time is it in Tokyo?')"]
    mic.say(voiced(600) + quiet(600))
    assert mic.turns == [True]  # delivered, as a cut-in


@fast
@pytest.mark.parametrize("heard", ["Stop.", "Wait.", "Okay, stop.", "No, the other one."])
def test_a_short_word_that_is_no_backchannel_stops_the_reply(heard):
    for hears_speaker in (True, False):
        port = Port(Clock(), texts=[heard])
        mic = machine(port, hears_speaker=hears_speaker)
        log = mic.say(voiced(450) + quiet(600))
        assert "stop" in log and "go on" not in log and mic.turns == [True], (hears_speaker, log)


@fast
def test_with_backchannels_interrupting_a_backchannel_stops_the_reply():
    port = Port(Clock(), texts=["Uh-huh."])
    mic = machine(port, interrupt=True)
    log = mic.say(voiced(450) + quiet(600))
    assert "stop" in log and mic.turns == [True]


# -- a sink that cannot pause (a file, a WebSocket client) ------------------------------------------------------------
@fast
def test_a_sink_that_cannot_pause_plays_on_until_the_speech_is_decided():
    port = Port(Clock(), texts=["Yeah."], playing=False)
    mic = machine(port, hears_speaker=False)
    log = mic.say(voiced(450) + quiet(600))
    assert "stop" not in log and not mic.turns and notices(log) == ["went on with the reply (backchannel 'Yeah.')"], log
    port.log.clear()
    port.texts = ["Wait, what time is it in Tokyo?"]
    log = mic.say(voiced(870))
    assert "stop" not in log  # it plays on meanwhile
    log = mic.say(voiced(30) + quiet(600))
    assert "stop" in log and mic.turns == [True]


# -- a client that plays the reply and cancels its own echo (the page, talk --server: ?hold=1) --------------------------
@fast
def test_a_client_reply_plays_on_while_words_tell_its_echo_and_pauses_for_a_backchannel():
    """Its echo is the client's to cancel: speech that may be it does not pause the reply (a pause would be a gap
    each time the canceller leaks). Once the words say it is not the reply's, a backchannel pauses it until it is
    heard out, and it goes on; the reply's own words are forgotten with no pause at all."""
    port = Port(Clock(), texts=["Okay, I see."])
    mic = machine(port, pause_for_echo=False)
    log = mic.say(voiced(270))
    assert "pause" not in log, log  # plays on: not yet told apart
    log = mic.say(voiced(180) + quiet(600))
    assert log.count("pause") == 1 and log.count("go on") == 1 and "stop" not in log and not mic.turns, log
    assert notices(log) == ["went on with the reply (backchannel 'Okay, I see.')"]
    port.log.clear()
    port.texts = [port.said_text]  # the reply's own words, leaking through the client's canceller
    log = mic.say(voiced(450) + quiet(600))
    assert "pause" not in log and "stop" not in log and not mic.turns, log


@fast
def test_a_reply_that_begins_to_sound_during_the_speech_is_paused_then():
    port = Port(Clock(), texts=["Mm-hmm."], playing=False)  # still being written: nothing to pause
    mic = machine(port, hears_speaker=False)
    mic.say(voiced(150))
    assert not mic.m.held
    port.playing = True
    log = mic.say(voiced(90) + quiet(600))
    assert mic.m.state == "listening" and log[-2:] == ["go on", "notice: went on with the reply (backchannel 'Mm-hmm.')"], log


# -- on real parts: recorded speech through the listener and the real Whisper ----------------------------------------
class Mic16k:
    """A microphone that hears the user (and no echo: the canceller took it), paced in real time."""

    realtime, timed, frame_ms, hears_speaker = True, True, 30, True

    def __init__(self, audio: np.ndarray) -> None:
        self.audio, self.i, self.t0 = audio, 0, None

    @property
    def exhausted(self) -> bool:
        return self.i + 480 > len(self.audio)

    def read(self, timeout: float):
        from voicechat.voice.io import Frame

        if self.exhausted:
            return None
        time.sleep(0.03)
        now = time.perf_counter()
        self.t0 = now if self.t0 is None else self.t0
        part = self.audio[self.i : self.i + 480]
        at = self.t0 + self.i / 16000
        self.i += 480
        pcm = (part * 32767).astype("<i2").tobytes()
        return Frame(pcm, captured_at=at, detect=pcm)


def test_a_recorded_backchannel_lets_the_reply_go_on_and_a_real_interruption_stops_it():
    """Piper's "Yeah." over a reply, then "Stop, what time is it?": the real listener, voice detection and Whisper.
    The first pauses the reply and lets it go on, and is no turn; the second stops it and is the turn."""
    from tests.helpers import speak
    from voicechat.engines import registry
    from voicechat.voice import events as ev
    from voicechat.voice.endpoint import SilencePolicy
    from voicechat.voice.listener import Listener
    from voicechat.voice.transcriber import Transcriber

    cfg = resolve(overrides={"listen.barge_in": True}, environ={})
    stt = registry.create("stt", cfg)
    transcriber = Transcriber(stt, cfg.turn, "en", incremental=False)

    def gap(s: float) -> np.ndarray:
        return np.zeros(int(16000 * s), np.float32)

    audio = np.concatenate([gap(0.5), speak("Yeah.", steady=True), gap(2.0), speak("Stop, what time is it?", steady=True), gap(1.5)])
    events, turns, holds, stopped = [], [], [], []
    listener = Listener(
        cfg,
        Mic16k(audio),
        SilencePolicy(800),  # (the comma in "Stop, what time" must not end the turn: this tests barge-in, not the end)
        transcriber,
        emit=events.append,
        deliver=turns.append,
        set_state=lambda s: None,
        answering=lambda: not stopped,
        on_barge_in=lambda: stopped.append(len(holds)),
        echo=True,
        said=lambda: "Once upon a time a dragon lived in a cave above the sea, and every night it counted the stars.",
        on_hold=lambda on: holds.append(on) or True,
    )
    stop = threading.Event()
    thread = threading.Thread(target=listener.run, args=(stop,))
    thread.start()
    thread.join(timeout=120)
    stop.set()
    said = [e.message for e in events if isinstance(e, ev.Notice)]
    went_on = [m for m in said if m.startswith("went on with the reply")]
    assert went_on and "backchannel" in went_on[0] and "yeah" in went_on[0].lower(), said
    assert holds[:3] == [True, False, True], (holds, said)  # paused for "Yeah.", went on, paused for "Stop, ..."
    assert stopped == [3], (stopped, said)  # the reply stopped once, on the second speech
    assert len(turns) == 1 and turns[0].cut_in, said  # "Yeah." was sent nowhere
    try:
        heard = transcriber.transcribe(turns[0].audio).lower()
    finally:
        stt.close()
    assert "what time" in heard, heard
