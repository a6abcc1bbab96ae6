"""The voice-session core in process: segmenter, turn policies, and VoiceSession driven with synthetic
frames and scripted engines (fast, deterministic: the file source is read faster than real time)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.voice_fakes import (
    RecordingSink,
    ScriptedLLM,
    ScriptedSTT,
    ScriptedTTS,
    WholeTurnSTT,
    buzz,
    count_words,
    phrase,
    silence,
)
from voicechat.config import resolve
from voicechat.conversation import slash
from voicechat.conversation.chat import Conversation
from voicechat.engines.base import Segment
from voicechat.voice import events as ev
from voicechat.voice.endpoint import Hypothesis, MeaningPolicy, SilencePolicy, text_verdict
from voicechat.voice.session import VoiceSession, turn_policy
from voicechat.voice.sources import FileSource
from voicechat.voice.timing import TurnTiming
from voicechat.voice.vad import Pause, Segmenter, SpeechStarted, Utterance, UtteranceDropped

FRAME = 30


def frames(audio: np.ndarray) -> list[bytes]:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    n = 16000 * FRAME // 1000 * 2
    return [pcm[i : i + n] for i in range(0, len(pcm) - n + 1, n)]


# segmenter ------------------------------------------------------------------------------
@pytest.mark.fast
def test_segmenter_reports_start_pauses_and_leaves_the_end_to_its_driver():
    cfg = resolve().listen
    seg = Segmenter(cfg, pause_ms=150)
    events = []
    for f in frames(np.concatenate([silence(0.5), phrase(3), silence(0.5), phrase(2), silence(1.0)])):
        events += [(seg.index + 1, e) for e in seg.push(f)]
    kinds = [type(e).__name__ for _, e in events]
    assert kinds == ["SpeechStarted", "Pause", "Pause"], kinds  # no end: the policy decides
    assert seg.active and seg.silence_ms >= 900
    utt = seg.finish()
    assert isinstance(utt, Utterance) and not seg.active
    seconds = len(utt.audio) / 16000
    assert 2.0 < seconds < 2.6  # pre-roll + 3 words + pause + 2 words + a short tail, not the trailing silence


@pytest.mark.fast
def test_segmenter_drops_a_cough_and_ignores_silence_and_quiet_noise():
    cfg = resolve().listen
    seg = Segmenter(cfg)
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(16000) * 0.001).astype(np.float32)
    for f in frames(np.concatenate([silence(1), quiet])):
        assert seg.push(f) == []
    out = []
    for f in frames(np.concatenate([buzz(0.21), silence(0.3)])):
        out += seg.push(f)
    assert isinstance(out[0], SpeechStarted) and isinstance(out[1], Pause)
    assert isinstance(seg.finish(), UtteranceDropped)


@pytest.mark.fast
def test_segmenter_cuts_at_the_length_cap():
    cfg = resolve(overrides={"listen.max_utterance_s": 2.0}).listen
    seg = Segmenter(cfg)
    out = [e for f in frames(buzz(3.0)) for e in seg.push(f)]
    assert any(isinstance(e, Utterance) for e in out)


# turn policies -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,verdict",
    [
        ("What time is it?", "complete"),
        ("Book a table for", "incomplete"),
        ("I went there and", "incomplete"),
        ("I want, um", "incomplete"),
        ("so the thing is,", "incomplete"),
        ("well...", "incomplete"),
        ("Tell me a joke", "unclear"),
        ("", "unclear"),
        (None, "unclear"),
        ("Book a table for.", "unclear"),
        ("What is that?", "complete"),
        ("Where are you from?", "complete"),
        ("Can you help me with this?", "complete"),
        ("Turn it on.", "unclear"),
        ("No.", "complete"),
        ("I think so.", "complete"),
        ("Thanks a lot.", "complete"),
    ],
)
@pytest.mark.fast
def test_text_verdict(text, verdict):
    assert text_verdict(text) == verdict


@pytest.mark.fast
def test_the_models_reading_decides_the_words_verdict():
    assert text_verdict("Set a timer.", 0.005) == "incomplete"
    assert text_verdict("Name a fruit that is yellow", 0.09) == "complete"
    assert text_verdict("Tell me", 0.03) == "unclear"
    assert text_verdict("So, um,", 0.9) == "incomplete"  # a trailing comma says more is coming whatever the reading


@pytest.mark.fast
def test_meaning_policy_table():
    cfg = resolve().turn
    p = MeaningPolicy(cfg, audio_model=True)
    assert p.silence_to_end(None) is None
    assert p.silence_to_end(Hypothesis("What time is it?", 0.9)) == cfg.fast_end_ms
    assert p.silence_to_end(Hypothesis("What time is it?", 0.1)) == cfg.end_ms
    assert p.silence_to_end(Hypothesis("Tell me a joke", 0.9)) == cfg.end_ms
    assert p.silence_to_end(Hypothesis("Tell me a joke", 0.1)) == cfg.slow_end_ms
    assert p.silence_to_end(Hypothesis("a table for", 0.99)) == cfg.slow_end_ms
    words_only = MeaningPolicy(cfg, audio_model=False)
    assert words_only.silence_to_end(Hypothesis("What time is it?")) == cfg.fast_end_ms
    assert SilencePolicy(600).silence_to_end(None) == 600


@pytest.mark.fast
def test_policy_follows_what_the_engines_can_do():
    cfg = resolve()
    assert isinstance(turn_policy(cfg, ScriptedSTT("x"), None), MeaningPolicy)
    assert isinstance(turn_policy(cfg, WholeTurnSTT("x"), None), SilencePolicy)
    assert isinstance(turn_policy(resolve(overrides={"turn.detector": "silence"}), ScriptedSTT("x"), None), SilencePolicy)


# the session ---------------------------------------------------------------------------
class Run:
    """A VoiceSession on a fast file source with scripted engines; collects events."""

    def __init__(
        self,
        audio: np.ndarray | None,
        script: str = "",
        replies=("Fine. Thanks for asking.",),
        *,
        overrides: dict | None = None,
        stt=None,
        llm=None,
        sink=None,
        start: bool = True,
        fast: bool = True,
    ) -> None:
        self.cfg = resolve(overrides={"turn.audio_model": False, **(overrides or {})})
        self.stt = stt or ScriptedSTT(script)
        self.llm = llm or ScriptedLLM(list(replies))
        self.sink = sink or RecordingSink()
        self.chat = Conversation(self.cfg, self.llm, kind="talk", log=False)
        source = FileSource.from_array(audio, FRAME, fast=fast) if audio is not None else None
        self.session = VoiceSession(self.cfg, conversation=self.chat, stt=self.stt, tts=ScriptedTTS(), source=source, sink=self.sink)
        self.events: list[ev.Event] = []
        self._lock = threading.Lock()
        self.session.subscribe(self._on)
        if start:
            self.session.start()

    def _on(self, e: ev.Event) -> None:
        with self._lock:
            self.events.append(e)

    def of(self, kind: type) -> list:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]

    def wait(self, predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, self.events
            time.sleep(0.01)

    def finish(self, timeout: float = 30.0) -> Run:
        assert self.session.wait_done(timeout=timeout), self.events
        self.session.close()
        return self


@pytest.mark.fast
def test_a_finished_sentence_ends_the_turn_fast_and_its_transcript_is_ready():
    audio = np.concatenate([silence(0.3), phrase(4), silence(2.0)])
    run = Run(audio, "What time is it?").finish()
    (user,) = run.of(ev.UserText)
    assert user.text == "What time is it?"
    (stats,) = run.of(ev.TurnStats)
    assert stats.timing.endpoint == pytest.approx(run.cfg.turn.fast_end_ms / 1000, abs=0.031)
    assert stats.timing.stt == 0.0 and stats.timing.transcript <= stats.timing.endpoint, "ready before the turn ended"
    assert run.stt.calls, "transcribed while listening"
    assert run.llm.prompts[0][-1].content == "What time is it?"
    partials = run.of(ev.Partial)
    assert partials and partials[-1].text == "What time is it?"
    assert run.events.index(partials[-1]) < run.events.index(user)
    (done,) = run.of(ev.ReplyDone)
    assert done.text == "Fine. Thanks for asking." and not done.interrupted
    assert run.chat.totals.turns == 1 and run.chat.memory.messages_for("x")[1].content == "What time is it?"


@pytest.mark.fast
def test_a_pause_after_an_unfinished_clause_does_not_end_the_turn():
    # "I'd like to book a table for ... (0.7 s) ... four people."
    audio = np.concatenate([silence(0.3), phrase(7), silence(0.7), phrase(2), silence(2.5)])
    run = Run(audio, "I'd like to book a table for four people.").finish()
    assert [u.text for u in run.of(ev.UserText)] == ["I'd like to book a table for four people."]
    assert run.of(ev.TurnStats)[0].timing.endpoint == pytest.approx(run.cfg.turn.fast_end_ms / 1000, abs=0.031)


@pytest.mark.fast
def test_the_chat_models_reading_outweighs_whispers_punctuation():
    # Whisper punctuates a phrase cut at a pause ("Set a timer."); the chat model expects more words
    audio = np.concatenate([silence(0.3), phrase(3), silence(0.6), phrase(3), silence(2.5)])
    llm = ScriptedLLM(["Done."], reading=lambda text: 0.005 if len(text.split()) < 6 else 0.5)
    run = Run(audio, "Set a timer. for ten minutes.", llm=llm).finish()
    assert [u.text for u in run.of(ev.UserText)] == ["Set a timer. for ten minutes."]
    assert run.of(ev.TurnStats)[0].timing.endpoint == pytest.approx(run.cfg.turn.fast_end_ms / 1000, abs=0.031)
    assert llm.readings == ["Set a timer.", "Set a timer. for ten minutes."]


@pytest.mark.fast
def test_the_reading_can_be_turned_off():
    audio = np.concatenate([silence(0.3), phrase(3), silence(0.6), phrase(3), silence(2.5)])
    llm = ScriptedLLM(["Done."], reading=lambda text: 0.005)
    run = Run(audio, "Set a timer. for ten minutes.", llm=llm, overrides={"turn.language_model": False}).finish()
    assert llm.readings == [] and len(run.of(ev.UserText)) == 2  # the words alone: "Set a timer." is finished


@pytest.mark.fast
def test_an_unclear_ending_waits_longer_than_a_finished_one():
    audio = np.concatenate([silence(0.3), phrase(3), silence(2.5)])
    run = Run(audio, "Tell me something").finish()
    assert run.of(ev.TurnStats)[0].timing.endpoint == pytest.approx(run.cfg.turn.end_ms / 1000, abs=0.031)


@pytest.mark.fast
def test_the_silence_detector_is_todays_fixed_rule():
    audio = np.concatenate([silence(0.3), phrase(4), silence(2.0)])
    run = Run(audio, "What time is it?", overrides={"turn.detector": "silence"}).finish()
    assert run.of(ev.TurnStats)[0].timing.endpoint == pytest.approx(0.6, abs=0.031)
    assert run.of(ev.Partial) == []  # no transcription while listening


@pytest.mark.fast
def test_an_engine_that_cannot_go_incremental_transcribes_once_after_the_turn():
    audio = np.concatenate([silence(0.3), phrase(4), silence(2.0)])
    stt = WholeTurnSTT("What time is it?")
    run = Run(audio, stt=stt).finish()
    assert [u.text for u in run.of(ev.UserText)] == ["What time is it?"]
    assert run.of(ev.Partial) == []


@pytest.mark.fast
def test_long_speech_is_committed_at_pauses_so_each_pass_stays_short():
    words = " ".join(f"w{i}" for i in range(40)) + "."
    audio = np.concatenate([silence(0.3)] + [np.concatenate([phrase(8), silence(0.4)]) for _ in range(5)] + [silence(2.5)])
    run = Run(audio, words, overrides={"turn.commit_after_s": 3.0}).finish()
    (user,) = run.of(ev.UserText)
    assert user.text == words
    assert any(prompt for _, prompt in run.stt.calls), "later passes were prompted with the committed text"
    assert max(seconds for seconds, prompt in run.stt.calls if prompt) < 8.0


@pytest.mark.fast
def test_noise_and_a_cough_make_no_turn():
    rng = np.random.default_rng(1)
    audio = np.concatenate([silence(0.5), buzz(0.2), silence(1.0), (rng.standard_normal(16000) * 0.0005).astype(np.float32), silence(1)])
    run = Run(audio, "nothing").finish()
    assert run.of(ev.UserText) == [] and run.chat.totals.turns == 0
    assert [d.reason for d in run.of(ev.Dropped)] == ["too short"]


@pytest.mark.fast
def test_typed_text_and_the_shared_commands():
    run = Run(None, replies=["One.", "Two."])
    run.session.send_text("first")
    run.wait(lambda: len(run.of(ev.ReplyDone)) == 1)
    assert "1 turn" in run.session.command("/tokens").message
    assert run.session.command("/clear").message == "conversation cleared"
    run.session.send_text("second")
    run.wait(lambda: len(run.of(ev.ReplyDone)) == 2)
    assert [m.role for m in run.llm.prompts[1]] == ["system", "user"], "cleared: the model no longer sees turn one"
    assert "unknown command /nope" in run.session.command("/nope").message
    assert "no microphone" in run.session.command("/mode").message
    assert run.session.command("/quit").quit and run.session.done
    run.session.close()


@pytest.mark.fast
def test_interrupt_while_thinking_keeps_nothing_unheard():
    llm = ScriptedLLM(["This reply never sounds."])
    llm.gate.clear()
    run = Run(None, llm=llm)
    run.session.send_text("hello")
    assert llm.started.wait(5)
    run.session.interrupt()
    llm.gate.set()
    run.wait(lambda: run.of(ev.ReplyDone))
    (done,) = run.of(ev.ReplyDone)
    assert done.interrupted and done.text == ""
    run.wait(lambda: llm.closed == 1)
    run.session.close()


@pytest.mark.fast
def test_interrupt_while_speaking_keeps_only_what_was_played():
    reply = "Once upon a time there was a long story. " * 6
    sink = RecordingSink(speed=2.0)
    run = Run(None, replies=[reply.strip()], sink=sink)
    run.session.send_text("tell me a story")
    assert sink.playing.wait(10)
    time.sleep(0.3)
    run.session.interrupt()
    run.wait(lambda: run.of(ev.ReplyDone))
    (done,) = run.of(ev.ReplyDone)
    assert done.interrupted and 0 < len(done.text) < len(reply.strip())
    assert run.chat.memory.messages_for("x")[2].content == done.text  # memory holds what was heard
    run.session.close()


class TurnsByLength(ScriptedSTT):
    """Each turn's words by how many word bursts it holds: the turns after the first begin with their own words."""

    def __init__(self, turns: dict[int, str]) -> None:
        super().__init__(" ".join(turns.values()))
        self.turns = turns

    def transcribe(self, audio, *, language=None):
        text = self.transcribe_turn(audio)
        if text:
            yield Segment(0.0, len(audio) / 16000, text)

    def transcribe_turn(self, audio, *, prompt=None, beam_size=1, silero_filter=False, language=None):
        n = count_words(audio)
        return self.turns.get(n, " ".join(self.words[:n]))


def barge_in_run(second: str, words: int) -> Run:
    """A long reply, and the user's second turn (`words` bursts) spoken 2 s into it."""
    audio = np.concatenate([silence(0.3), phrase(5), silence(0.6), silence(1.5), phrase(words), silence(2.0)])
    stt = TurnsByLength({5: "Tell me a long story.", words: second})
    return Run(
        audio,
        stt=stt,
        replies=["A long story begins here and goes on and on. " * 12, "Noon."],
        sink=RecordingSink(speed=1.0),
        overrides={"listen.barge_in": True},
        fast=False,
    )  # paced: the reply plays while the user talks


def test_barge_in_stops_the_reply_and_the_new_speech_becomes_the_next_turn():
    run = barge_in_run("What time is it?", 4)
    run.wait(lambda: len(run.of(ev.ReplyDone)) == 2, timeout=30)
    first, second = run.of(ev.ReplyDone)
    assert first.interrupted and second.text == "Noon."
    assert [u.text for u in run.of(ev.UserText)] == ["Tell me a long story.", "What time is it?"]
    assert any(isinstance(e, ev.Notice) and e.message.startswith("barge-in") for e in run.events)
    run.session.close()


def test_stop_said_over_a_reply_stops_it_and_is_not_answered():
    """ "Stop." alone, over a reply: the reply stops and the session listens; the interjection is not a question
    for the model (before, the model answered "Stop." and the user's next words barged into that answer)."""
    # the two sessions run side by side (each paced in real time by its own source, with scripted engines)
    runs = [barge_in_run("Stop.", 1), barge_in_run("Wait a moment.", 3)]
    try:
        for run in runs:
            run.wait(lambda run=run: any(isinstance(e, ev.Notice) and e.message.startswith("stopped") for e in run.events), timeout=30)
            assert run.session.wait_done(timeout=30), run.events
            (first,) = run.of(ev.ReplyDone)
            assert first.interrupted
            assert [u.text for u in run.of(ev.UserText)] == ["Tell me a long story."]
            said = [m.content for m in run.chat.memory.messages_for("next") if m.role == "user"]
            assert said == ["Tell me a long story.", "next"]  # the model never saw the interjection
    finally:
        for run in runs:
            run.session.close()


@pytest.mark.fast
def test_stop_as_a_turn_of_its_own_is_answered():
    """Said when nothing was playing, "Stop." is a turn like any other (only cutting a reply short makes it a
    command)."""
    run = Run(np.concatenate([silence(0.3), phrase(1), silence(2.0)]), "Stop.", replies=["Okay."]).finish()
    assert [u.text for u in run.of(ev.UserText)] == ["Stop."]
    assert [d.text for d in run.of(ev.ReplyDone)] == ["Okay."]


@pytest.mark.fast
def test_a_failing_engine_is_one_error_and_the_session_ends():
    class Broken(ScriptedSTT):
        def transcribe_turn(self, audio, **kw):
            raise RuntimeError("decoder exploded")

    audio = np.concatenate([silence(0.3), phrase(3), silence(2.0)])
    run = Run(audio, stt=Broken("x")).finish()
    assert run.session.errors and "decoder exploded" in run.session.errors[0]
    assert [e for e in run.events if isinstance(e, ev.Error)]


@pytest.mark.fast
def test_a_chat_error_is_reported_and_nothing_is_recorded():
    from voicechat.errors import VoicechatError

    class Refuses(ScriptedLLM):
        def stream(self, messages):
            raise VoicechatError("server said no")
            yield  # pragma: no cover

    run = Run(None, llm=Refuses([]))
    run.session.send_text("hello")
    run.wait(lambda: run.of(ev.Error))
    assert run.of(ev.Error)[0].message == "server said no" and run.chat.totals.turns == 0
    run.session.send_text("again")  # the session goes on
    run.wait(lambda: len(run.of(ev.Error)) == 2)
    run.session.close()


@pytest.mark.fast
def test_warm_up_prefills_the_local_model():
    run = Run(None, start=False)
    run.session.warm_up()
    assert run.llm.prefilled == 1


@pytest.mark.fast
def test_turn_timing_round_trips_and_omits_the_unknown():
    t = TurnTiming(endpoint=0.30049, stt=0.0)
    assert t.to_dict() == {"endpoint": 0.3, "stt": 0.0}
    assert TurnTiming.from_dict({**t.to_dict(), "other": 1}) == TurnTiming(endpoint=0.3, stt=0.0)


@pytest.mark.fast
def test_chat_and_talk_share_one_command_table():
    class Chat:
        modes = False
        cleared = False

        def clear(self):
            self.cleared = True

        def tokens_line(self):
            return "3 turns"

        def toggle_mode(self):  # pragma: no cover - never offered
            raise AssertionError

    chat = Chat()
    assert slash.names(chat) == ["/clear", "/tokens", "/quit"]
    assert slash.run("/clear", chat).message == "conversation cleared" and chat.cleared
    assert slash.run("/exit", chat).quit
    assert "unknown command /mode" in slash.run("/mode", chat).message


@pytest.mark.fast
def test_states_follow_the_turn():
    audio = np.concatenate([silence(0.3), phrase(4), silence(2.0)])
    run = Run(audio, "What time is it?").finish()
    states = [e.state for e in run.of(ev.Status)]
    assert states == ["listening", "hearing", "thinking", "speaking", "listening"], states


@pytest.mark.fast
def test_close_while_speaking_ends_every_stage_promptly():
    sink = RecordingSink(speed=0.5)
    run = Run(None, replies=["A very long reply that takes a while to play. " * 5], sink=sink)
    run.session.send_text("talk to me")
    assert sink.playing.wait(10)
    started = time.monotonic()
    run.session.close(timeout=5)
    assert time.monotonic() - started < 5
    assert not any(t.is_alive() for t in run.session._threads)
    assert run.session.done


class SlowWholeTurnSTT(WholeTurnSTT):
    def __init__(self, script: str) -> None:
        super().__init__(script)
        self.entered = threading.Event()
        self.release = threading.Event()

    def transcribe_turn(self, audio, **kw):
        self.entered.set()
        self.release.wait(10)
        return super().transcribe_turn(audio, **kw)


@pytest.mark.fast
def test_clear_during_transcription_drops_the_turn_unanswered():
    stt = SlowWholeTurnSTT("What time is it?")
    audio = np.concatenate([silence(0.3), phrase(4), silence(2.0)])
    run = Run(audio, stt=stt)
    assert stt.entered.wait(10)
    run.session.command("/clear")
    stt.release.set()
    run.finish()
    assert run.of(ev.UserText) == [] and run.chat.totals.turns == 0
    assert "interrupted before the reply began" in [d.reason for d in run.of(ev.Dropped)]


def with_turn_model(cfg, stt, model, audio) -> list:
    """A session with this audio turn model hears ``audio`` (not paced) to its end; its events."""
    chat = Conversation(cfg, ScriptedLLM(["Noon."]), kind="talk", log=False)
    session = VoiceSession(
        cfg,
        conversation=chat,
        stt=stt,
        tts=ScriptedTTS(),
        source=FileSource.from_array(audio, FRAME, fast=True),
        sink=RecordingSink(),
        turn_model=model,
    )
    events: list = []
    session.subscribe(events.append)
    session.start()
    assert session.wait_done(timeout=20)
    session.close()
    return events


class FixedTurnModel:
    def __init__(self, p: float) -> None:
        self.p, self.calls = p, 0

    def complete_probability(self, audio) -> float:
        self.calls += 1
        return self.p


@pytest.mark.fast
def test_incremental_off_with_the_audio_model_transcribes_once_and_judges_by_the_voice():
    cfg = resolve(overrides={"turn.incremental": False})
    stt, model = ScriptedSTT("What time is it?"), FixedTurnModel(0.9)
    events = with_turn_model(cfg, stt, model, np.concatenate([silence(0.3), phrase(4), silence(2.0)]))
    assert len(stt.calls) == 1 and model.calls >= 1
    assert not [e for e in events if isinstance(e, ev.Partial)]
    (stats,) = [e for e in events if isinstance(e, ev.TurnStats)]
    assert stats.timing.endpoint == pytest.approx(cfg.turn.end_ms / 1000, abs=0.031)  # words unknown, voice says done


class HeardTurnModel(FixedTurnModel):
    """Keeps the audio it was given."""

    def __init__(self, p: float) -> None:
        super().__init__(p)
        self.heard: list[np.ndarray] = []

    def complete_probability(self, audio) -> float:
        self.heard.append(np.array(audio))
        return super().complete_probability(audio)


@pytest.mark.fast
@pytest.mark.parametrize("ms", [90, 150])  # (the default: as the silence begins; at the pause, as before)
def test_the_audio_model_hears_each_pause_once_as_it_will_be_at_the_pause(ms):
    """Started as the silence begins, it runs while the pause is waited for (Whisper then has the cores at the
    pause), and the pause's pass uses its answer. It hears the silence so far repeated up to the pause's length
    (the model hears how long the voice has been quiet), at the pause the room itself."""
    cfg = resolve(overrides={"turn.audio_model_ms": ms})
    stt, model = ScriptedSTT("Book a table for four people."), HeardTurnModel(0.9)
    audio = np.concatenate([silence(0.3), phrase(4), silence(0.5), phrase(2), silence(2.0)])
    room = np.random.default_rng(22).normal(0, 1e-4, len(audio)).astype(np.float32)  # (far below the voice detector)
    events = with_turn_model(cfg, stt, model, audio + room)
    assert len(model.heard) == 2  # two pauses, one reading each
    frame = 16 * FRAME  # (samples)
    for heard in model.heard:
        loud = np.flatnonzero(np.abs(heard) > 1e-2)
        assert 4 * frame < len(heard) - 1 - loud[-1] < 6 * frame  # the pause's 150 ms of silence after the voice
        repeated = np.array_equal(heard[-2 * frame :], heard[-5 * frame : -3 * frame])  # its last 60 ms: the 90 ms before
        assert repeated == (ms == 90)
    assert [u.text for u in events if isinstance(u, ev.UserText)] == ["Book a table for four people."]


@pytest.mark.fast
def test_a_short_pause_setting_still_ends_turns():
    audio = np.concatenate([silence(0.3), phrase(4), silence(2.0)])
    run = Run(audio, "What time is it?", overrides={"turn.pause_ms": 60}).finish(timeout=10)
    assert [u.text for u in run.of(ev.UserText)] == ["What time is it?"]


@pytest.mark.fast
def test_the_last_words_of_a_file_are_answered():
    source_audio = np.concatenate([silence(0.3), phrase(4)])
    cfg = resolve(overrides={"turn.audio_model": False})
    chat = Conversation(cfg, ScriptedLLM(["Noon."]), kind="talk", log=False)
    session = VoiceSession(
        cfg,
        conversation=chat,
        stt=ScriptedSTT("What time is it?"),
        tts=ScriptedTTS(),
        source=FileSource.from_array(source_audio, FRAME, fast=True, tail_s=0.0),
        sink=RecordingSink(),
    )
    session.start()
    assert session.wait_done(timeout=20)
    session.close()
    assert chat.totals.turns == 1


@pytest.mark.fast
def test_an_empty_reply_is_said_not_kept_silently():
    run = Run(None, replies=[""])
    run.session.send_text("a message far too long for the model")
    run.wait(lambda: run.of(ev.ReplyDone))
    assert any(isinstance(e, ev.Notice) and "empty reply" in e.message for e in run.events)
    run.session.close()


@pytest.mark.fast
def test_slash_aliases_are_one_table_and_set_mode_checks_its_value():
    """'/q' quits wherever '/quit' does (it was unknown locally and a quit through the server); a mode that is
    neither vad nor ptt is refused in one line, not set."""
    from voicechat.errors import VoicechatError

    assert slash.name("/q") == slash.name("/exit") == slash.name("/QUIT now") == "/quit"
    run = Run(phrase(2), "Hello there.", start=False)
    for bad in ("push", "", None, 3):
        with pytest.raises(VoicechatError, match="unknown mode"):
            run.session.set_mode(bad)
    assert run.session.mode == "vad"
    assert run.session.command("/q").quit


# a reply drafted in a pause the silence may end (voicechat.voice.draft) ------------------------
class GatedSource:
    """A fast file source that, at one frame, looks (and with ``wait``, waits up to 10 s) for the chat model to have
    been asked, and notes what the session had shown and played by then."""

    def __init__(self, source: FileSource, at_s: float, run_ref: list, wait: bool) -> None:
        self.source, self.at = source, int(at_s * 1000 / FRAME)
        self.run_ref, self.wait = run_ref, wait
        self.frames = 0
        self.seen: dict | None = None

    def __getattr__(self, name: str):
        return getattr(self.source, name)

    def read(self, timeout: float):
        self.frames += 1
        if self.frames == self.at:
            run = self.run_ref[0]
            if self.wait:
                run.llm.started.wait(10)
            self.seen = {
                "asked": run.llm.started.is_set(),
                "shown": [type(e).__name__ for e in run.of((ev.UserText, ev.ReplyDelta, ev.ReplyDone))],
                "played": run.sink.playing.is_set(),
            }
        return self.source.read(timeout)


def gated_run(
    audio: np.ndarray, script: str, at_s: float, *, wait: bool, replies=("Fine. Thanks for asking.",), overrides=None, tools=None
):
    run_ref: list = []
    run = Run(None, script, replies, overrides=overrides, start=False)
    gate = GatedSource(FileSource.from_array(audio, FRAME, fast=True), at_s, run_ref, wait)
    run_ref.append(run)
    run.chat.tools = tools
    run.session = VoiceSession(run.cfg, conversation=run.chat, stt=run.stt, tts=ScriptedTTS(), source=gate, sink=run.sink)
    run.session.subscribe(run._on)
    run.session.start()
    return run.finish(), gate


@pytest.mark.fast
def test_a_reply_is_written_in_a_pause_the_silence_may_end_and_held_back_until_it_does():
    # "Tell me something" reads unclear: the turn ends after turn.end_ms of silence; 0.5 s in, it is not over yet
    audio = np.concatenate([silence(0.3), phrase(3), silence(2.5)])
    run, gate = gated_run(audio, "Tell me something", 0.3 + 0.84 + 0.5, wait=True)
    assert gate.seen == {"asked": True, "shown": [], "played": False}, "asked before the turn ended, nothing shown or played"
    assert [u.text for u in run.of(ev.UserText)] == ["Tell me something"]
    (done,) = run.of(ev.ReplyDone)
    assert done.text == "Fine. Thanks for asking." and not done.interrupted
    assert " ".join(c.text for c in run.sink.chunks) == "Fine. Thanks for asking."
    ended = [i for i, e in enumerate(run.events) if isinstance(e, ev.Speech) and e.phase == "ended"]
    assert len(ended) == 1 and ended[0] < run.events.index(run.of(ev.UserText)[0]), "the turn ends, then its text shows"
    (stats,) = run.of(ev.TurnStats)
    assert stats.timing.endpoint == pytest.approx(run.cfg.turn.end_ms / 1000, abs=0.031), "the end is the silence's"
    assert run.chat.totals.turns == 1 and [m.content for m in run.chat.memory.messages_for("x")[1:3]] == [
        "Tell me something",
        "Fine. Thanks for asking.",
    ]
    assert len(run.llm.prompts) == 1


@pytest.mark.fast
def test_a_drafted_reply_is_dropped_unheard_when_the_user_goes_on():
    # "Tell me something ... (0.6 s) ... about the sea": a draft of the first words, dropped when the voice resumes
    audio = np.concatenate([silence(0.3), phrase(3), silence(0.6), phrase(3), silence(2.5)])
    replies = ("A draft nobody hears.", "The sea is wide.")
    run, gate = gated_run(audio, "Tell me something about the sea", 0.3 + 0.84 + 0.55, wait=True, replies=replies)
    assert gate.seen == {"asked": True, "shown": [], "played": False}
    assert [u.text for u in run.of(ev.UserText)] == ["Tell me something about the sea"]
    assert [d.text for d in run.of(ev.ReplyDone)] == ["The sea is wide."]
    assert "draft" not in "".join(d.text for d in run.of(ev.ReplyDelta))
    assert " ".join(c.text for c in run.sink.chunks) == "The sea is wide."
    assert "draft" not in run.session.speech.said()  # (its words are not taken for an echo later)
    assert run.chat.totals.turns == 1 and [m.content for m in run.chat.memory.messages_for("x")[1:3]] == [
        "Tell me something about the sea",
        "The sea is wide.",
    ]
    assert [p[-1].content for p in run.llm.prompts] == ["Tell me something", "Tell me something about the sea"]


@pytest.mark.fast
@pytest.mark.parametrize("draft_max_ms", [850, 1600])
def test_a_thought_in_progress_is_drafted_only_when_the_slow_wait_is_drafted_too(draft_max_ms):
    # "Tell me about and" ends on "and": the words rules read a thought in progress, so the turn waits slow_end_ms
    audio = np.concatenate([silence(0.3), phrase(4), silence(3.0)])
    overrides = {"turn.language_model": False, "turn.draft_max_ms": draft_max_ms}
    run, gate = gated_run(audio, "Tell me about and", 0.3 + 1.14 + 1.0, wait=draft_max_ms > 850, overrides=overrides)
    assert gate.seen == {"asked": draft_max_ms > 850, "shown": [], "played": False}, "1 s into the 1.6 s wait"
    assert [u.text for u in run.of(ev.UserText)] == ["Tell me about and"]
    assert [d.text for d in run.of(ev.ReplyDone)] == ["Fine. Thanks for asking."]
    (stats,) = run.of(ev.TurnStats)
    assert stats.timing.endpoint == pytest.approx(run.cfg.turn.slow_end_ms / 1000, abs=0.031), "the end is the slow wait's"
    assert len(run.llm.prompts) == 1


class NoTools:
    """Tools on, none offered (their calls would act: a reply that may be dropped must not make any)."""

    def specs(self) -> list:
        return []


@pytest.mark.fast
@pytest.mark.parametrize("why", ["turned off", "tools"])
def test_no_draft_when_turned_off_or_with_tools(why):
    audio = np.concatenate([silence(0.3), phrase(3), silence(2.5)])
    overrides = {"turn.draft_reply": False} if why == "turned off" else {"turn.language_model": False}
    tools = NoTools() if why == "tools" else None
    run, gate = gated_run(audio, "Tell me something", 0.3 + 0.84 + 0.5, wait=False, overrides=overrides, tools=tools)
    assert gate.seen == {"asked": False, "shown": [], "played": False}
    assert [d.text for d in run.of(ev.ReplyDone)] == ["Fine. Thanks for asking."]


@pytest.mark.fast
def test_an_interrupt_drops_an_undecided_draft_and_the_turn_is_then_answered_in_full():
    # an interrupt (a typed message with barge-in, /clear, a client's "interrupt") while the draft is undecided
    audio = np.concatenate([silence(0.3), phrase(3), silence(2.5)])
    replies = ("A draft nobody hears.", "Fine.")
    run_ref: list = []
    run = Run(None, "Tell me something", replies, start=False)
    gate = GatedSource(FileSource.from_array(audio, FRAME, fast=True), 0.3 + 0.84 + 0.5, run_ref, wait=True)
    gate_read = gate.read

    def read(timeout):
        got = gate_read(timeout)
        if gate.frames == gate.at:
            run.session.interrupt()
        return got

    gate.read = read
    run_ref.append(run)
    run.session = VoiceSession(run.cfg, conversation=run.chat, stt=run.stt, tts=ScriptedTTS(), source=gate, sink=run.sink)
    run.session.subscribe(run._on)
    run.session.start()
    run.finish()
    assert gate.seen is not None and gate.seen["asked"]
    assert [u.text for u in run.of(ev.UserText)] == ["Tell me something"]
    assert [(d.text, d.interrupted) for d in run.of(ev.ReplyDone)] == [("Fine.", False)]
    assert [m.content for m in run.chat.memory.messages_for("x")[1:3]] == ["Tell me something", "Fine."]


@pytest.mark.fast
def test_a_confirmed_draft_that_plays_nothing_reports_nothing_of_the_reply_before():
    audio = np.concatenate([silence(0.3), phrase(4), silence(2.0), phrase(3), silence(2.5)])
    run = Run(audio, "Tell me something more", ("It is noon.", "")).finish()  # (each utterance reads the script afresh)
    assert [u.text for u in run.of(ev.UserText)] == ["Tell me something more", "Tell me something"]
    assert [d.text for d in run.of(ev.ReplyDone)] == ["It is noon.", ""]
    assert run.chat.memory.rounds == [("Tell me something more", "It is noon.")]
    assert all(s.timing.voice_to_voice is None or s.timing.voice_to_voice >= 0 for s in run.of(ev.TurnStats))
