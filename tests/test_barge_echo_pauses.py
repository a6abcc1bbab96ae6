"""No stutter on loudspeakers (issue 22): with an echo canceller, speech over a reply that the speaker's echo explains
does not pause it. The reply plays on until ``near_ms`` of a sound the speaker cannot explain is heard, then pauses
and is decided as before (voice.barge). Event by event with an injected clock; the frames come from test_barge.Mic:
'#' voiced and explained by the speaker's echo, '+' voiced with a sound it cannot explain, '.' silence.
barge.pause_at_start is the design before (a pause at every speech start: an audible gap for each echo)."""

from __future__ import annotations

import pytest

from tests.test_barge import Clock, Mic, Port, machine, notices, quiet, voiced
from voicechat.config import resolve
from voicechat.voice.listener import barge_timing

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("backchannels", [True, False])
def test_echo_the_speaker_explains_never_pauses_the_reply_and_is_not_transcribed(backchannels):
    """The canceller's leak (heard by voice detection, nothing the speaker did not play): no pause, no gap, no
    Whisper pass, no turn, no notice. The design before paused for it and went on: a gap each time."""
    port = Port(Clock(), texts=["No, wait."])
    mic = Mic(machine(port, backchannels=backchannels), port, cancels=True)
    log = mic.say(voiced(600) + quiet(400) + voiced(300) + quiet(600))
    assert log == ["forget", "forget"] and not mic.turns, log
    assert mic.m.state == "listening"
    before = Port(Clock(), texts=["No, wait."])
    mic = Mic(machine(before, backchannels=backchannels, pause_at_start=True), before, cancels=True)
    log = mic.say(voiced(600) + quiet(400) + voiced(300) + quiet(600))
    assert log.count("pause") == 2 and notices(log) == ["went on with the reply (nothing but its own echo)"] * 2, log


def test_the_reply_plays_on_until_near_ms_of_a_sound_the_speaker_cannot_explain():
    """The pause comes with the frame that brings near_ms (two 30 ms frames of 60): about 60 ms of stop time."""
    port = Port(Clock())
    m = machine(port, near_ms=60)
    mic = Mic(m, port, cancels=True)
    mic.say(voiced(300) + "+")
    assert "pause" not in port.log and m.state == "suspect" and not m.may_end_turn
    mic.say("+")
    assert port.log == ["pause"] and m.state == "paused"


@pytest.mark.parametrize("backchannels", [True, False])
def test_a_user_speaking_over_the_reply_pauses_it_then_stops_it_and_is_the_turn(backchannels):
    """The same voice as before, once it stands out of the echo: pause, the echo dies, the voice goes on in the quiet:
    the reply stops and the speech is the (cut-in) turn."""
    port = Port(Clock(), texts=["Wait, what time is it?"])
    mic = Mic(machine(port, backchannels=backchannels), port, cancels=True)
    log = mic.say("##" + "+" * 40 + quiet(900))
    assert log[0] == "pause" and "stop" in log, log
    assert notices(log)[0] == "barge-in: stopping the reply (heard 'Wait, what time is it?')"
    assert mic.turns == [True]


def test_a_stop_word_said_alone_over_the_echo_stops_the_reply():
    port = Port(Clock(), texts=["Stop."])
    mic = Mic(machine(port), port, cancels=True)
    log = mic.say("###" + "+" * 6 + quiet(900))
    assert "stop" in log and notices(log)[0] == "barge-in: stopping the reply (heard 'Stop.' alone)", log
    assert mic.turns == [True]


@pytest.mark.parametrize("backchannels", [True, False])
def test_a_voice_that_stops_as_the_reply_pauses_stops_it_when_its_words_are_the_users(backchannels):
    """Rig: "Wait, how tall is Mount Everest?" paused the reply, then stopped at the comma, and was taken for the
    reply's echo ("no voice once it paused"): the reply played on until "how tall". The canceller heard a voice the
    speaker did not make, and its words are neither the reply's nor a backchannel: the user's. Its next words are the
    same turn."""
    port = Port(Clock(), texts=["Have always."])  # (Whisper's "Wait, how" over the echo)
    mic = Mic(machine(port, backchannels=backchannels), port, cancels=True, end_ms=800)  # (a comma: the turn waits)
    log = mic.say("##" + "+" * 8 + quiet(400))
    assert log[0] == "pause" and "stop" in log and "forget" not in log, log
    assert notices(log)[-1] == "barge-in: stopping the reply (heard 'Have always.')"
    mic.say("+" * 20 + quiet(900))
    assert mic.turns == [True]


@pytest.mark.parametrize("heard", ["Once upon a time there was a dragon", ""])
def test_the_replys_own_words_or_no_words_that_stop_with_the_pause_still_let_it_go_on(heard):
    port = Port(Clock(), texts=[heard], said_text="Once upon a time there was a dragon who lived by the sea.")
    mic = Mic(machine(port), port, cancels=True)
    log = mic.say("##" + "+" * 8 + quiet(900))
    assert "stop" not in log and "go on" in log and not mic.turns, log


def test_a_backchannel_over_the_echo_pauses_the_reply_only_until_heard():
    """'Uh-huh' stands out of the echo: the reply pauses, then goes on where it paused, and it is no turn."""
    port = Port(Clock(), texts=["Uh-huh."])
    mic = Mic(machine(port, backchannels=True), port, cancels=True)
    log = mic.say("#" + "+" * 14 + quiet(900))
    assert log[0] == "pause" and "stop" not in log and not mic.turns, log
    assert notices(log) == ["went on with the reply (backchannel 'Uh-huh.')"]


def test_a_voice_that_begins_in_the_echo_counts_from_before_it_was_detected():
    """Unexplained sound in the preroll (the word began in a gap of the reply) counts: it pauses at the start."""
    port = Port(Clock())
    mic = Mic(machine(port, near_ms=60, preroll_s=0.3), port, cancels=True)
    mic.say("uu" + "#")
    assert port.log == ["pause"]


def test_without_a_canceller_speech_over_the_reply_pauses_it_at_once_and_the_words_decide():
    """No canceller's word on the frames (or near_ms 0): the words check is the fallback, as before."""
    for cancels, near_ms in ((False, 60), (True, 0)):
        port = Port(Clock(), texts=["Don't look."])
        mic = Mic(machine(port, near_ms=near_ms), port, cancels=cancels)
        log = mic.say(voiced(300) + quiet(900))
        assert log[0] == "pause" and notices(log) == ["went on with the reply (no voice once it paused)"], (cancels, log)


def test_speech_still_going_when_the_reply_ends_is_checked_by_its_words():
    """Waiting speech outlives the reply: from then on it is suspect speech after a reply (checked by its words)."""
    port = Port(Clock(), texts=["sunlight scatters off the air"])
    m = machine(port)
    mic = Mic(m, port, cancels=True)
    mic.say(voiced(150))
    port.stopped_at = port.clock()  # (the reply ends: nothing is being answered any more)
    log = mic.say(voiced(300) + quiet(600))
    assert "pause" not in log and "hear 'sunlight scatters off the air'" in log and not mic.turns, log


def test_the_design_before_is_a_setting():
    assert barge_timing(resolve()).pause_at_start is False
    assert barge_timing(resolve(overrides={"barge.pause_at_start": True})).pause_at_start is True


def test_with_onset_ms_a_sound_the_speaker_cannot_explain_pauses_the_reply_before_speech_starts():
    """barge.onset_ms: the reply goes quiet at the voice's first frames, before the voice detector calls it speech;
    the speech that follows counts from that pause (the user going on stops the reply)."""
    port = Port(Clock(), texts=["Wait, what time is it?"])
    m = machine(port, onset_ms=60)
    mic = Mic(m, port, cancels=True)
    mic.say("uu")
    assert port.log == ["pause"] and m.state == "paused"
    log = mic.say("+" * 30 + quiet(900))
    assert log.count("pause") == 1 and "stop" in log and mic.turns == [True], log


def test_with_onset_ms_a_sound_no_speech_follows_lets_the_reply_go_on():
    port = Port(Clock())
    mic = Mic(machine(port, onset_ms=60), port, cancels=True)
    log = mic.say("uu" + quiet(600))
    assert log[:2] == ["pause", "go on"] and notices(log) == ["went on with the reply (no speech)"] and not mic.turns, log


def test_without_onset_ms_nothing_pauses_before_speech_starts():
    port = Port(Clock())
    mic = Mic(machine(port, onset_ms=0), port, cancels=True)
    assert mic.say("uu" + quiet(600)) == []


def test_with_near_window_ms_stray_frames_over_a_long_echo_do_not_pause_the_reply():
    """Leak that goes on for a while, with a frame now and then the speaker seems not to explain: near_ms counted
    over the whole speech pauses the reply; within near_window_ms only a voice (frames close together) does."""
    stray = ("#" * 12 + "+") * 4 + quiet(600)
    for window, paused in ((0, True), (300, False)):
        port = Port(Clock())
        mic = Mic(machine(port, near_window_ms=window), port, cancels=True)
        log = mic.say(stray)
        assert ("pause" in log) is paused, (window, log)
    port = Port(Clock(), texts=["Wait, what time is it?"])
    mic = Mic(machine(port, near_window_ms=300), port, cancels=True)
    log = mic.say("#" * 12 + "++" + "+" * 30 + quiet(900))
    assert log[0] == "pause" and "stop" in log and mic.turns == [True], log
