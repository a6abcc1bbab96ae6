"""Barge-in's state machine (voice.barge), driven event by event with an injected clock: no threads, no real time.

Each test is a case the room rig or CI once found; the commit that fixed it is named in the docstring. Each runs
with backchannels (the default: speech over a reply may be "uh-huh", test_backchannel.py) and with
barge.backchannels_interrupt (any speech of the user's stops the reply), unless it names its design.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from voicechat.config import resolve
from voicechat.voice.backchannel import ENGLISH, Backchannels
from voicechat.voice.barge import BargeIn, BargeTiming
from voicechat.voice.listener import barge_timing

pytestmark = pytest.mark.fast
DESIGN = {"backchannels": True}  # (set by the design fixture for each test)


@pytest.fixture(autouse=True, params=["backchannels", "interrupt"])
def design(request, monkeypatch):
    monkeypatch.setitem(DESIGN, "backchannels", request.param == "backchannels")


FRAME_MS = 30
STORY = "The sky is blue because sunlight scatters off the air, and blue light scatters most of all."


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Port:
    """The world around the machine: a reply that plays until stopped, and a transcriber that hears ``texts`` in
    turn (the last one from then on), taking ``hear_s`` of the clock each time."""

    clock: Clock
    texts: list[str] = field(default_factory=lambda: ["Wait, what time is it?"])
    said_text: str = STORY
    playing: bool = True  # hold() pauses something (sound is coming out)
    busy_after_stop_s: float = 0.0  # still answering this long after a stop (handling what cut the reply short)
    hear_s: float = 0.0
    log: list[str] = field(default_factory=list)
    stopped_at: float | None = None

    def answering(self) -> bool:
        return self.stopped_at is None or self.clock() - self.stopped_at < self.busy_after_stop_s

    def said(self) -> str:
        return self.said_text

    def hear(self) -> str:
        self.clock.t += self.hear_s
        text = self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]
        self.log.append(f"hear {text!r}")
        return text

    def hold(self, on: bool) -> bool:
        self.log.append("pause" if on else "go on")
        return self.playing if on else True

    def stop_reply(self) -> None:
        self.log.append("stop")
        self.stopped_at = self.clock()

    def forget(self) -> None:
        self.log.append("forget")

    def notice(self, message: str) -> None:
        self.log.append(f"notice: {message}")


def machine(
    port: Port, *, barge_in: bool = True, echo: bool = True, checks_words: bool = True, backchannels: bool | None = None, **timing
) -> BargeIn:
    """``backchannels`` None: as the design fixture says."""
    on = DESIGN["backchannels"] if backchannels is None else backchannels
    return BargeIn(
        BargeTiming(**timing),
        port,
        barge_in=barge_in,
        echo=echo,
        checks_words=checks_words,
        backchannels=Backchannels(ENGLISH) if on else None,
        clock=port.clock,
    )


@dataclass
class Mic:
    """Frames of ``FRAME_MS`` as the listener's voice detector sees them: '#' voiced, '.' silent. Speech starts at the
    first voiced frame; ``end_ms`` of silence is when the turn policy would end the turn; ``lag``: the listener reads
    each frame that long after it was captured. ``cancels``: an echo canceller says of each frame whether it holds a
    sound the speaker cannot explain: '+' (voiced) and 'u' (silent to the voice detector) do, the others do not;
    without it, nothing is known of that."""

    m: BargeIn
    port: Port
    end_ms: int = 300
    lag: float = 0.0
    hears_speaker: bool = True
    cancels: bool = False
    active: bool = False
    voiced: int = 0
    silence: int = 0
    turns: list[bool] = field(default_factory=list)  # each delivered turn's cut_in

    def say(self, pattern: str) -> list[str]:
        for ch in pattern:
            self.frame(ch in "#+", ch in "+u")
        return self.port.log

    def frame(self, voiced: bool, near: bool = False) -> None:
        clock = self.port.clock
        clock.t += FRAME_MS / 1000
        now, answering = clock(), self.port.answering()
        at = now - self.lag
        self.m.frame(now, answering, near if self.cancels else None)
        if not self.m.listens(now, answering):
            self.active = False
            self.port.log.append("ignored")
            return
        if not self.active:
            if not voiced:
                return
            self.active, self.voiced, self.silence = True, 0, 0
            self.m.speech_started(now, at, answering, self.hears_speaker)
        self.voiced += voiced
        self.silence = 0 if voiced else self.silence + 1
        if not self.m.speech_frame(at, self.voiced * FRAME_MS, self.silence * FRAME_MS, FRAME_MS):
            self.active = False
            return
        if self.silence * FRAME_MS >= self.end_ms and self.m.may_end_turn:
            if self.m.turn_over():
                self.turns.append(self.m.cut_in())
                self.port.log.append("turn")
            self.active = False
            self.m.speech_gone()


def voiced(ms: int) -> str:
    return "#" * (ms // FRAME_MS)


def quiet(ms: int) -> str:
    return "." * (ms // FRAME_MS)


def notices(log: list[str]) -> list[str]:
    return [line[len("notice: ") :] for line in log if line.startswith("notice: ")]


# -- pause, then decide (febcb96) -----------------------------------------------------------------------------------
def test_echo_that_stops_with_the_pause_lets_the_reply_go_on():
    """Leaked echo pauses the reply; it stopped as the reply paused, so it was the reply's own: it goes on."""
    port = Port(Clock(), texts=["Don't look."])
    mic = Mic(machine(port), port)
    log = mic.say(voiced(300) + quiet(900))
    assert log[0] == "pause" and "stop" not in log and not mic.turns
    assert "went on with the reply (no voice once it paused)" in notices(log)
    assert log.index("forget") < log.index("go on")
    assert mic.m.state == "listening"


def test_a_voice_that_goes_on_once_the_reply_paused_stops_it_and_is_a_turn():
    port = Port(Clock(), texts=["Wait, what time is it?"])
    mic = Mic(machine(port), port)
    log = mic.say(voiced(1200) + quiet(600))
    assert log[0] == "pause" and "stop" in log
    assert notices(log)[0] == "barge-in: stopping the reply (heard 'Wait, what time is it?')"
    assert mic.turns == [True]  # it cut the reply short


def test_the_user_is_heard_only_after_the_echo_died():
    """The voice that counts is what goes on echo_gone_s after the pause, for after_ms (with backchannels interrupting,
    it then stops the reply at once; else it waits for backchannel_ms: test_backchannel.py)."""
    port = Port(Clock())
    m = machine(port, echo_gone_s=0.25, after_ms=150, backchannels=False)
    mic = Mic(m, port)
    mic.say(voiced(240))  # 0.24 s after the pause: the echo may still be ringing
    assert m.state == "paused" and "stop" not in port.log and not any(line.startswith("hear") for line in port.log)
    mic.say(voiced(150))  # the echo is gone by now; 120 ms of voice in the quiet is not yet enough
    assert m.state == "paused" and "stop" not in port.log
    mic.say(voiced(60))
    assert "stop" in port.log


def test_own_words_in_the_quiet_are_ignored_and_the_reply_goes_on():
    """f9bf621: a voice that goes on, but says the reply's own words, is the reply coming back."""
    port = Port(Clock(), texts=["sunlight scatters off the air"])
    mic = Mic(machine(port), port)
    log = mic.say(voiced(420) + quiet(600))  # paused at once; the echo dies at 0.25 s; 150 ms of voice after that
    assert log == [
        "pause",
        "hear 'sunlight scatters off the air'",
        "notice: ignored the assistant's own voice ('sunlight scatters off the air')",
        "forget",
        "go on",
        "notice: went on with the reply (its own words)",  # (a gap was heard: bench/echo_rig.py counts these)
    ]
    assert not mic.turns


# -- stop words (5a230fb, 3b2959c, acbcd1b) ----------------------------------------------------------------------------
@pytest.mark.parametrize("heard", ["Stop.", "Hold on.", "Stop. Wait a moment.", "Be quiet, please."])
def test_a_stop_word_said_alone_as_the_reply_paused_stops_it(heard):
    port = Port(Clock(), texts=[heard])
    mic = Mic(machine(port), port)
    log = mic.say(voiced(300) + quiet(600))
    assert "stop" in log, log
    assert notices(log)[0] == f"barge-in: stopping the reply (heard {heard!r} alone)"
    assert mic.turns == [True]  # a cut-in: the session does not send "Stop." to the model


@pytest.mark.parametrize("heard", ["I don't wait.", "Scott, wait a moment.", "Stop the car at the station."])
def test_words_that_are_not_an_interjection_alone_let_the_reply_go_on(heard):
    """A garbled echo ('I don't wait.') is not a stop word said alone; neither is a misheard one."""
    port = Port(Clock(), texts=[heard])
    mic = Mic(machine(port), port)
    log = mic.say(voiced(300) + quiet(600))
    assert "stop" not in log and "went on with the reply (no voice once it paused)" in notices(log)


# -- the echo canceller's evidence: a sound the speaker cannot explain (CI: the reply's echo heard as "No, wait.") ---
def test_an_echo_heard_as_a_stop_word_said_alone_lets_the_reply_go_on():
    """CI: the reply's echo leaked through the canceller as it re-converged, paused the reply and died with the pause;
    Whisper heard the fragment as "No, wait." and the reply was stopped. The canceller found nothing in it the speaker
    did not play: it is the echo, whatever its words, and is not even transcribed. (Paused at speech start, as
    barge.pause_at_start does; otherwise it is not even paused: test_barge_echo_pauses.py.)"""
    port = Port(Clock(), texts=["No, wait."])
    mic = Mic(machine(port, pause_at_start=True), port, cancels=True)
    log = mic.say(voiced(300) + quiet(600))
    assert "stop" not in log and not any(line.startswith("hear") for line in log) and not mic.turns, log
    assert notices(log) == ["went on with the reply (nothing but its own echo)"]
    assert log.index("forget") < log.index("go on")


@pytest.mark.parametrize(
    "pattern",
    [
        "uuu" + "#" * 10,  # the word began in a gap of the reply, before voice detection caught it
        "#" * 8 + "++",  # it went on a little after the pause's echo had died
        "+" * 10,  # louder than the reply's echo
    ],
)
def test_a_stop_word_said_alone_with_a_voice_the_speaker_cannot_explain_stops_it(pattern):
    port = Port(Clock(), texts=["Stop."])
    mic = Mic(machine(port, near_ms=60), port, cancels=True)
    log = mic.say(pattern + quiet(600))
    assert "stop" in log and notices(log)[0] == "barge-in: stopping the reply (heard 'Stop.' alone)", log
    assert mic.turns == [True]


def test_less_than_near_ms_of_a_voice_the_speaker_cannot_explain_is_its_echo():
    port = Port(Clock(), texts=["Stop."])
    mic = Mic(machine(port, near_ms=60, pause_at_start=True), port, cancels=True)
    log = mic.say("u" + "#" * 9 + quiet(600))
    assert "stop" not in log and notices(log) == ["went on with the reply (nothing but its own echo)"]


def test_a_voice_heard_before_the_speech_began_does_not_vouch_for_it():
    """Only the speech's own frames count, from preroll_s before it was detected."""
    port = Port(Clock(), texts=["Stop."])
    mic = Mic(machine(port, near_ms=60, preroll_s=0.3, pause_at_start=True), port, cancels=True)
    log = mic.say("uuuuu" + quiet(300) + "#" * 10 + quiet(600))
    assert "stop" not in log and notices(log) == ["went on with the reply (nothing but its own echo)"]


def test_near_ms_zero_lets_the_words_alone_decide():
    """(as before the canceller said what it heard; the late pause's echo below, too)"""
    port = Port(Clock(), texts=["Stop."])
    mic = Mic(machine(port, near_ms=0), port, cancels=True)
    assert "stop" in mic.say(voiced(300) + quiet(600))


def test_a_late_pauses_echo_in_the_quiet_is_not_a_voice():
    """A loaded machine pauses the reply late: its echo goes on past echo_gone_s. Frames the speaker explains do not
    count as a voice in the quiet, so the echo's words ("Hold the line", not the reply's) do not stop it; without a
    canceller's word on it, they did."""
    for cancels, near_ms, stopped in ((True, 60, False), (False, 60, True), (True, 0, True)):
        port = Port(Clock(), texts=["Hold the line."])
        mic = Mic(machine(port, near_ms=near_ms), port, cancels=cancels)
        log = mic.say(voiced(600) + quiet(600))
        assert ("stop" in log) is stopped, (cancels, near_ms, log)


def test_the_user_going_on_in_the_quiet_stops_the_reply():
    port = Port(Clock(), texts=["Wait, what time is it?"])
    mic = Mic(machine(port, pause_at_start=True), port, cancels=True)
    log = mic.say("#" * 8 + "+" * 10 + quiet(600))
    assert "stop" in log and notices(log)[0] == "barge-in: stopping the reply (heard 'Wait, what time is it?')"


def test_over_an_idle_speaker_words_the_speaker_explains_are_never_the_users():
    """Nothing was paused (the speaker between two sentences): other words than the reply's, but all of the sound
    explained by the speaker, are not the user's: checked again, and at the turn's end forgotten."""
    port = Port(Clock(), texts=["Wait, what time is it?"], playing=False)
    mic = Mic(machine(port, check_ms=300), port, cancels=True)
    log = mic.say(voiced(900) + quiet(600))
    assert "stop" not in log and not mic.turns and log[-1] == "forget", log
    port.log.clear()
    log = mic.say("+" * 10 + quiet(600))
    assert "stop" in log, log


# -- the pause decides, not the turn policy (4981160), even behind the microphone --------------------------------------
@pytest.mark.parametrize("lag", [0.0, 0.1, 0.2])
def test_while_paused_the_pause_decides_even_when_the_listener_runs_behind(lag):
    """A listener reading the microphone late would end a turn of leaked echo first (300 ms of silence) and take its
    garbled words for the user; while the reply is paused for speech not yet told apart, no turn ends."""
    port = Port(Clock(), texts=["Don't look."])
    m = machine(port)
    mic = Mic(m, port, end_ms=300, lag=lag)
    mic.say(voiced(300))
    for _ in range(9):  # 270 ms of silence: past the policy's 300 ms counting from the voice's end, for a late reader
        mic.say(".")
        assert m.state == "paused" and not m.may_end_turn
    log = mic.say(quiet(600))
    assert not mic.turns and "stop" not in log and "went on with the reply (no voice once it paused)" in notices(log)


# -- a late check (20dd8e4) -------------------------------------------------------------------------------------------
def test_speech_heard_while_a_late_check_ran_counts_from_the_pause():
    """'Hold on, what is two plus two?': the first words were no stop word said alone, so the reply was to go on,
    but that check took 0.6 s; meanwhile the user spoke on, in the quiet. Those words, captured while the reply was
    still paused, stop it. Before, they were timed from after the check and the question was lost."""
    clock = Clock()
    port = Port(clock, texts=["Whole.", "What is two plus two?"], hear_s=0.6)  # 'Hold on,' misheard
    m = machine(port)
    mic = Mic(m, port)
    mic.say(voiced(300) + quiet(300))  # the check runs here, and takes 0.6 s
    assert "went on with the reply (no voice once it paused)" in notices(port.log)
    mic.lag = 0.6  # the listener now reads frames captured during the check
    log = mic.say(voiced(900) + quiet(600))
    assert "stop" in log and mic.turns == [True], log


def test_without_the_late_check_new_speech_after_the_reply_went_on_is_checked_afresh():
    """The counterpart: speech that starts after the reply went on (not in the quiet) pauses it again and waits for
    the echo to die before it counts."""
    port = Port(Clock(), texts=["Whole.", "What is two plus two?"])
    m = machine(port)
    mic = Mic(m, port)
    mic.say(voiced(300) + quiet(300) + quiet(300))
    before = len(port.log)
    mic.say(voiced(120))
    assert port.log[before] == "pause" and m.state == "paused" and "stop" not in port.log


# -- after a stop (66d18ac) ---------------------------------------------------------------------------------------------
def test_after_a_stop_the_users_next_words_are_theirs_until_the_assistant_says_something_new():
    """After 'Stop.' the session is still busy; 'What time is it in Tokyo?', heard as 'What time is it in time?', has
    words of the story. Nothing has played since the stop: it is the user's turn, not the story's echo."""
    story = "Once upon a time, a clock maker lived in a town where time stood still."
    port = Port(Clock(), texts=["Stop. Wait a second.", "What time is it in time?"], said_text=story, busy_after_stop_s=5.0)
    mic = Mic(machine(port), port)
    log = mic.say(voiced(1200) + quiet(600) + quiet(400) + voiced(1200) + quiet(600))
    assert not any(n.startswith("ignored the assistant's own voice") for n in notices(log)), log
    assert mic.turns == [True, True]  # both cut the reply short (the second began within after_stop_s)


def test_after_a_stop_new_words_from_the_assistant_are_checked_again():
    story = "Once upon a time, a clock maker lived in a town where time stood still."
    port = Port(Clock(), texts=["Stop.", "a clock maker lived in a town"], said_text=story, busy_after_stop_s=5.0)
    m = machine(port)
    mic = Mic(m, port)
    mic.say(voiced(300) + quiet(600) + quiet(300))
    port.said_text = story + " Sorry. What would you like?"  # the assistant has said something new since
    log = mic.say(voiced(900) + quiet(600))
    assert "ignored the assistant's own voice ('a clock maker lived in a town')" in notices(log)


# -- cut-ins (3b2959c) ----------------------------------------------------------------------------------------------------
def test_a_turn_is_a_cut_in_only_near_a_stop():
    port = Port(Clock(), texts=["Please tell me more about that."], playing=False)
    m = machine(port, after_stop_s=2.0)
    mic = Mic(m, port)
    port.stopped_at = port.clock()  # nothing is playing: an ordinary turn
    mic.say(quiet(2400) + voiced(600) + quiet(600))
    assert mic.turns == [False]
    m.stopped_at = port.clock()  # a reply was just stopped
    mic.say(quiet(600) + voiced(600) + quiet(600))
    assert mic.turns == [False, True]


# -- capabilities -----------------------------------------------------------------------------------------------------
def test_an_idle_speaker_holds_nothing_and_the_speech_is_checked_as_it_goes():
    """c2de94c/5a230fb: hold() when no sound is playing pauses nothing; the speech is then checked after check_ms of
    voice, without waiting for an echo to die."""
    port = Port(Clock(), texts=["Wait, what time is it?"], playing=False)
    m = machine(port, check_ms=300, backchannels=False)  # (it stops at once once told apart)
    mic = Mic(m, port)
    mic.say(voiced(270))
    assert m.state == "suspect" and not any(line.startswith("hear") for line in port.log)
    mic.say(voiced(30))
    assert "hear 'Wait, what time is it?'" in port.log and "stop" in port.log


def test_a_microphone_that_does_not_hear_the_speaker_skips_the_check():
    """Headphones: speech over the reply is simply the user's; it stops the reply after barge_in_ms of voice."""
    port = Port(Clock())
    m = machine(port, barge_in_ms=300, backchannels=False)  # (with backchannels: paused at once, test_backchannel.py)
    mic = Mic(m, port, hears_speaker=False)
    mic.say(voiced(270))
    assert m.state == "barging" and port.log == []
    mic.say(voiced(60))
    assert port.log == ["notice: barge-in: stopping the reply", "stop"]  # no pause, no transcription


def test_speech_with_no_words_yet_is_checked_again_as_it_goes_on():
    """6083f6a: an unsure verdict (no telling words yet) is asked again check_ms of voice later."""
    port = Port(Clock(), texts=["", "the", "Wait, what time is it?"], playing=False)
    mic = Mic(machine(port, check_ms=300), port)
    mic.say(voiced(900))
    hears = [line for line in port.log if line.startswith("hear")]
    assert hears == ["hear ''", "hear 'the'", "hear 'Wait, what time is it?'"] and port.log[-1] == "stop"


def test_speech_just_after_a_reply_ended_is_checked_for_its_tail():
    """Speech within suspect_s of the reply's end may be the room's tail: the reply's own words are forgotten."""
    port = Port(Clock(), texts=["scatters most of all"], playing=False)
    m = machine(port, suspect_s=0.5)
    mic = Mic(m, port)
    mic.say(quiet(30))  # the last frame heard while answering
    port.stopped_at = port.clock()  # the reply has ended
    log = mic.say(voiced(300) + quiet(600))
    assert log == [
        "hear 'scatters most of all'",
        "notice: ignored the assistant's own voice ('scatters most of all')",
        "forget",
    ]  # nothing was playing: nothing paused
    assert not mic.turns
    port.log.clear()
    mic.say(voiced(600) + quiet(600))  # long after the reply: the user's, unchecked
    assert port.log == ["turn"] and mic.turns == [False]


def test_without_barge_in_the_reply_and_its_echo_tail_are_not_heard():
    port = Port(Clock(), busy_after_stop_s=0.0)
    m = machine(port, barge_in=False, echo_tail_s=0.31)
    mic = Mic(m, port)
    mic.say(voiced(300))
    assert port.log == ["ignored"] * 10
    port.stopped_at = port.clock()  # the reply ends
    port.log.clear()
    mic.say(voiced(300) + voiced(300) + quiet(600))
    assert port.log.count("ignored") == 10 and mic.turns == [False]  # the tail (0.31 s), then the user


def test_the_cancellers_view_detects_speech_until_the_paused_replys_echo_is_gone():
    """c2de94c: a voice's start is judged on the canceller's view; once the reply is paused and its echo gone, what is
    heard is someone else and is judged on the kept audio."""
    port = Port(Clock())
    m = machine(port, echo_gone_s=0.25)
    mic = Mic(m, port)
    assert m.detect_view(port.clock())
    mic.say(voiced(90))
    assert m.state == "paused" and m.detect_view(port.clock())
    assert not m.detect_view(port.clock() + 0.25)


def test_closing_lets_a_paused_reply_go_on():
    port = Port(Clock())
    m = machine(port)
    Mic(m, port).say(voiced(90))
    assert m.state == "paused"
    m.close()
    assert port.log == ["pause", "go on"] and not m.held


# -- the config feeds it ----------------------------------------------------------------------------------------------
def test_the_timing_comes_from_the_barge_section_with_ranges(tmp_path):
    cfg = resolve(
        overrides={
            "barge.echo_gone_s": 0.4,
            "barge.after_ms": 210,
            "listen.barge_in_ms": 120,
            "barge.near_ms": 90,
            "listen.preroll_ms": 240,
        }
    )
    t = barge_timing(cfg)
    assert (t.echo_gone_s, t.after_ms, t.barge_in_ms, t.near_ms, t.preroll_s) == (0.4, 210, 120, 90, 0.24)
    assert BargeTiming() == barge_timing(resolve())
    from voicechat.errors import ConfigError

    with pytest.raises(ConfigError, match="barge.check_ms"):
        resolve(overrides={"barge.check_ms": 0})
