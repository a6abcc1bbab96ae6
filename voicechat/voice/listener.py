"""The listening stage: frames in, user turns out.

It runs the voice activity detector, asks the transcriber for the transcript at every pause
(and now and then during long speech, for the live partial transcript), and asks the turn
policy how much silence ends the turn given what is known at that moment. In push-to-talk
mode the key decides instead. While the assistant answers (without barge-in) it ignores the
microphone, plus an echo tail when the sink is a real loudspeaker.

With barge-in on a loudspeaker, speech over the reply pauses it (as a person stops when someone
starts to talk): with echo cancellation, once a sound the speaker cannot explain is heard (the reply's own echo
leaking through the canceller makes no gap, and is not transcribed), else at once. The assistant's own voice coming back through the room stops with it; a
user's voice goes on in the quiet, and then stops the reply, unless its words are the reply's own
(voice.self_echo). Speech that stopped with the pause lets the reply go on where it paused.
A turn that cut a reply short is marked so: "Stop." alone ends the reply, it is not a question.
A backchannel ("uh-huh", "yeah") or a cough over the reply pauses it only until it is heard for what it is: the
reply goes on where it paused, and nothing is sent to the model (voice.backchannel).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voicechat.voice import events as ev
from voicechat.voice.backchannel import Backchannels
from voicechat.voice.barge import BargeIn, BargeTiming
from voicechat.voice.draft import Draft
from voicechat.voice.transcriber import UtteranceText
from voicechat.voice.vad import Pause, Segmenter, SpeechStarted, Utterance, UtteranceDropped

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.voice.endpoint import TurnPolicy
    from voicechat.voice.io import Source
    from voicechat.voice.transcriber import Transcriber


@dataclass
class UserTurn:
    """A finished user turn on its way to the reply stage."""

    source: str  # voice | typed
    text: str = ""
    audio: np.ndarray | None = None
    utt: UtteranceText | None = None  # its transcript, when it was transcribed while spoken
    speech_end: float | None = None  # perf_counter() of the end of speech
    cut_in: bool = False  # it stopped a reply, or began just after one was stopped: "Stop." alone is not a question
    end_detected: float = field(default_factory=time.perf_counter)  # when the turn was judged complete
    language: str | None = None  # the turn's language when known before the reply (ISO 639-1); None: from its transcript
    draft: Draft | None = None  # answered before the turn is known to be over: held until confirmed (voicechat.voice.draft)


class Listener:
    def __init__(
        self,
        config: Config,
        source: Source,
        policy: TurnPolicy,
        transcriber: Transcriber,
        *,
        emit: Callable[[ev.Event], None],
        deliver: Callable[[UserTurn], None],
        set_state: Callable[[str], None],
        answering: Callable[[], bool],
        on_barge_in: Callable[[], None],
        echo: bool,
        wake: Any = None,
        said: Callable[[], str] | None = None,
        on_hold: Callable[[bool], bool] | None = None,
        pausable: bool = True,
        pause_for_echo: bool = True,
        draft: Callable[[UserTurn], bool] | None = None,
        confirm: Callable[[UserTurn], bool] | None = None,
    ) -> None:
        """``pausable``: the reply can be paused where it plays (a sound card), so speech over it may be heard out
        as a backchannel; False (a client or a file plays it): speech over it stops it at once, as OpenAI's
        Realtime clients and the WebSocket clients expect. ``pause_for_echo``: speech that may be the reply's echo
        pauses it to tell (a sound card); False: the words tell (a client cancels its own echo). ``draft``: hand over a
        turn in a pause that may end it, to be answered held back (True: taken); ``confirm``: the silence ended it
        (False: it was dropped meanwhile)."""
        self.cfg = config
        self.source, self.policy, self.transcriber = source, policy, transcriber
        self.emit, self.deliver, self.set_state = emit, deliver, set_state
        self.answering, self.on_barge_in = answering, on_barge_in
        self.echo = echo
        self.wake = wake  # a WakeGate: asleep until its word is heard (voicechat.voice.wake)
        self.said = said  # what the assistant said lately: speech over it is checked against it (voice.self_echo)
        self.on_hold = on_hold  # pause the reply (True) while speech over it is checked, or let it go on (False)
        self.barge = BargeIn(
            barge_timing(config),
            _Port(self),
            barge_in=config.listen.barge_in,
            echo=echo,
            checks_words=said is not None,
            backchannels=backchannels(config) if pausable else None,
            pause_for_echo=pause_for_echo,
        )
        self._seg: Segmenter | None = None
        self._utt: UtteranceText | None = None
        self.mode = config.listen.mode
        self.barge_in = config.listen.barge_in
        self.recording = threading.Event()  # push-to-talk: the key is down
        self._drop_ptt = threading.Event()  # the mode changed: forget a half-made push-to-talk recording
        self._stop: threading.Event | None = None
        self.frame_s = config.listen.frame_ms / 1000
        self._partial_frames = max(1, config.turn.partial_every_ms // config.listen.frame_ms)
        self._judge_frames = max(1, config.turn.audio_model_ms // config.listen.frame_ms)  # silence before the audio model hears it
        self._announced = True  # the speech in progress was announced (ev.Speech "started"), by the listener or a barge-in
        self.draft, self.confirm = draft, confirm
        self._drafted: UserTurn | None = None  # the turn handed over as a draft in this silence
        self._draft_tried = -1  # the pause (its utterance length) a draft was last offered for
        # the longest wait drafted (at end_ms, not the wait after a thought in progress, where more words usually come)
        self._draft_max_ms = config.turn.draft_max_ms

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.recording.clear()
        self._drop_ptt.set()

    def toggle_recording(self) -> bool:
        """Push-to-talk key: start recording (True) or end it (False)."""
        if self.recording.is_set():
            self.recording.clear()
            return False
        self.recording.set()
        return True

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        try:
            self._run(stop)
        finally:
            self._drop_draft()
            self.barge.close()

    def _run(self, stop: threading.Event) -> None:
        turn = self.cfg.turn
        seg = self._seg = Segmenter(self.cfg.listen, pause_ms=turn.pause_ms)
        barge = self.barge
        self._utt = None
        pause_end = 0
        judged: int | None = None  # the audio turn model heard the utterance up to this sample, in this silence
        ptt: list[bytes] = []
        since_partial = 0
        while not stop.is_set():
            got = self.source.read(0.1)
            if got is None:
                if self._drafted is not None and time.perf_counter() - self._drafted.end_detected > self._draft_max_ms / 1000 + 1.0:
                    self._drop_draft()  # the frames stopped coming (a client's microphone off): no silence will end it
                if self.source.exhausted:
                    if self.mode == "vad" and seg.active:
                        self._end(seg, time.perf_counter())
                    return
                continue
            now, frame = time.perf_counter(), got.pcm
            if self._drop_ptt.is_set():
                self._drop_ptt.clear()
                ptt = []
            if self.mode == "ptt":
                barge.close()
                self._drop_draft()
                if self.recording.is_set():
                    ptt.append(frame)
                elif ptt:
                    audio = np.frombuffer(b"".join(ptt), dtype="<i2").astype(np.float32) / 32768.0
                    ptt = []
                    self.deliver(UserTurn("voice", audio=audio, speech_end=now, end_detected=now))
                continue
            answering = self.answering()
            barge.frame(now, answering, got.near)
            if self.wake is not None and not self._awake(frame, now, answering or seg.active):
                barge.close()
                self._forget()
                continue
            if not barge.listens(now, answering):
                self._forget()
                continue
            if not answering and not seg.active:
                self.set_state("listening")  # (once: the session ignores a state it is already in)
            at = got.captured_at or now  # when this frame was heard (it may be read late)
            detect = got.detect if barge.detect_view(at) else None
            for event in seg.push(frame, detect):
                if isinstance(event, SpeechStarted):
                    self._close(self._utt)
                    self._utt = UtteranceText()
                    pause_end = 0
                    self._draft_tried = -1
                    since_partial = 0
                    barge.speech_started(now, at, answering, self.source.hears_speaker)
                    self._announced = False
                    if not self.answering() and not barge.undecided:  # (speech that may be the reply's echo: once told apart)
                        self._announce()
                elif isinstance(event, Pause) and seg.active:
                    so_far = seg.audio()
                    pause_end = len(so_far)  # the key of this pause's result (the audio stops growing here)
                    if self._utt is not None and (self.policy.uses_transcript or self.policy.uses_audio_model) and not barge.waiting:
                        self.transcriber.request(self._utt, so_far, pause=True, judged=judged)  # (not for what the speaker explains)
                elif isinstance(event, Utterance):  # the length cap (speech over a reply may be its echo: barge decides)
                    if barge.turn_over():
                        self._deliver(event, self._utt, now, seg.index)
                    else:
                        self._drop_draft()
                        self._close(self._utt)
                    self._utt = None
                elif isinstance(event, UtteranceDropped):
                    self._dropped(event, self._utt)
            if not seg.active:
                barge.speech_gone()
                continue
            if not barge.speech_frame(at, seg.voiced * self.cfg.listen.frame_ms, seg.silence_ms, self.cfg.listen.frame_ms):
                continue  # the assistant's own voice: forgotten
            if not self._announced and not self.answering() and not barge.undecided:
                self._announce()  # speech that began over a reply which then ended, once it is known not to be its echo
            if seg.silence_run == 0:
                judged = None
                self._drop_draft()  # the user goes on
                since_partial += 1
                if (
                    self._utt is not None
                    and self.policy.uses_transcript
                    and since_partial >= self._partial_frames
                    and not self.transcriber.busy
                    and not barge.waiting
                ):
                    since_partial = 0
                    self.transcriber.request(self._utt, seg.audio(), pause=False)
            elif seg.silence_run == self._judge_frames < seg.pause_n:  # the silence begins: the audio model hears it now
                if self._utt is not None and self.policy.uses_audio_model and not barge.waiting:
                    judged = self._judge_early(seg)
            elif seg.silence_run >= seg.pause_n and barge.may_end_turn:  # from the pause on: is the turn over?
                # (while the reply is paused for speech not yet told apart, the pause decides: barge.speech_frame)
                hyp = self._hypothesis(self._utt, pause_end)
                need = self.policy.silence_to_end(hyp)
                if seg.silence_ms >= (self.policy.max_silence_ms if need is None else need):
                    if barge.turn_over():
                        self._end(seg, now)
                    self._drop_draft()
                    self._utt = None
                elif need is not None and need <= self._draft_max_ms and self._draft_tried != pause_end and hyp is not None and hyp.text:
                    self._draft_tried = pause_end
                    self._start_draft(seg, hyp.text, pause_end, now)

    def _start_draft(self, seg: Segmenter, text: str, end: int, now: float) -> None:
        """The turn may end in this silence: hand it over to be answered, held back until the silence ends it."""
        if (
            self.draft is None
            or self.answering()
            or self.barge.undecided
            or self.barge.cut_in()
            or self._utt is None
            or not seg.speech_enough
        ):
            return
        audio = seg.audio()
        if len(audio) != end:  # (the transcript is of the pause's audio: only that utterance)
            return
        speech_end = now - (seg.index - seg.last_voiced) * self.frame_s
        turn = UserTurn("voice", text=text, audio=audio, utt=self._utt, speech_end=speech_end, end_detected=now, draft=Draft(end))
        if self.draft(turn):
            self._drafted = turn

    def _drop_draft(self) -> None:
        turn, self._drafted = self._drafted, None
        if turn is not None and turn.draft is not None:
            turn.draft.drop()

    def _judge_early(self, seg: Segmenter) -> int | None:
        """The audio turn model hears the utterance now, as it will be at the pause: its silence so far repeated up
        to the pause's length (the answer counts only if the silence lasts that long; the model hears how long the
        voice has been quiet, so less silence would read as less finished). The length heard (the pause's), or None."""
        assert self._utt is not None
        so_far, frame = seg.audio(), seg.frame_bytes // 2
        until_pause = np.resize(so_far[-self._judge_frames * frame :], (seg.pause_n - self._judge_frames) * frame)
        heard = np.concatenate([so_far, until_pause])
        return len(heard) if self.transcriber.judge_early(self._utt, heard) else None

    def _announce(self) -> None:
        """Say that the user's speech started, once per utterance (a barge-in says so itself: _Port.stop_reply)."""
        self._announced = True
        self.emit(ev.Speech("started"))
        self.set_state("hearing")

    def _forget(self) -> None:
        """The speech in progress (if any) is not the user's: no turn, no more partial transcripts of it."""
        self._drop_draft()
        if self._seg is not None:
            self._seg.reset()
        self._utt = self._close(self._utt)

    def _awake(self, frame: bytes, now: float, busy: bool) -> bool:
        """The wake word gate: asleep, frames go to its detector; awake, they go on to the turn taking."""
        gate = self.wake
        if gate.awake:
            if gate.still_awake(now, busy):
                return True
            self.set_state("asleep")
            return False
        if gate.feed(frame, now):
            self.emit(ev.Notice(f"wake word: {gate.detector.word}"))
            self.set_state("listening")
        else:
            self.set_state("asleep")
        return False

    def _hypothesis(self, utt: UtteranceText | None, end: int) -> Any:
        """What is known at this pause. A source faster than real time waits for it: the decision must not
        depend on how fast the file was read."""
        if utt is None:
            return None
        hyp = utt.result(end)
        if hyp is None and not self.source.realtime and (self.policy.uses_transcript or self.policy.uses_audio_model):
            deadline = time.monotonic() + 30
            with utt.cond:
                while not (
                    end in utt.results or utt.closed or time.monotonic() > deadline or (self._stop is not None and self._stop.is_set())
                ):
                    utt.cond.wait(0.1)
            hyp = utt.result(end)
        return hyp

    @staticmethod
    def _close(utt: UtteranceText | None) -> None:
        """This utterance will never be a turn: no more partial transcripts of it."""
        if utt is not None:
            with utt.cond:
                utt.closed = True
                utt.cond.notify_all()
        return None

    def _end(self, seg: Segmenter, now: float) -> None:
        index, utt = seg.index, self._utt
        event = seg.finish()
        if isinstance(event, UtteranceDropped):
            self._dropped(event, utt)
        else:
            self._deliver(event, utt, now, index)

    def _deliver(self, event: Utterance, utt: UtteranceText | None, now: float, index: int) -> None:
        if not self._announced:
            self._announce()  # (a turn is always announced before it goes to be answered)
        speech_end = now - (index - event.last_voiced_frame) * self.frame_s  # frames arrive in (source) real time
        drafted, self._drafted = self._drafted, None
        if drafted is not None and drafted.draft is not None:
            if self.confirm is not None and drafted.utt is utt and drafted.audio is not None and len(drafted.audio) == len(event.audio):
                drafted.speech_end, drafted.end_detected, drafted.cut_in = speech_end, now, self.barge.cut_in()
                assert utt is not None
                self.transcriber.final(utt, drafted.audio)  # (closes the utterance: its transcript is the one answered)
                if self.confirm(drafted):
                    return
            drafted.draft.drop()
        self.deliver(UserTurn("voice", audio=event.audio, utt=utt, speech_end=speech_end, end_detected=now, cut_in=self.barge.cut_in()))

    def _dropped(self, event: UtteranceDropped, utt: UtteranceText | None) -> None:
        self._drop_draft()
        self._close(utt)
        self.emit(ev.Dropped(event.reason))
        if not self.answering():
            self.set_state("listening")


def barge_timing(config: Config) -> BargeTiming:
    b = config.barge
    return BargeTiming(
        echo_tail_s=b.echo_tail_s,
        check_ms=b.check_ms,
        suspect_s=b.suspect_s,
        echo_gone_s=b.echo_gone_s,
        after_ms=b.after_ms,
        resume_silence_ms=b.resume_silence_ms,
        after_stop_s=b.after_stop_s,
        barge_in_ms=config.listen.barge_in_ms,
        near_ms=b.near_ms,
        preroll_s=config.listen.preroll_ms / 1000,
        backchannel_ms=b.backchannel_ms,
        pause_at_start=b.pause_at_start,
        onset_ms=b.onset_ms,
        near_window_ms=b.near_window_ms,
    )


def backchannels(config: Config) -> Backchannels | None:
    """What said over a reply lets it go on (barge.backchannels, plus those of each language in listen.languages);
    None: barge.backchannels_interrupt, any speech over a reply stops it."""
    if config.barge.backchannels_interrupt:
        return None
    return Backchannels.for_languages(config.barge.backchannels, config.listen.languages)


class _Port:
    """The barge-in machine's view of the listener and the session around it."""

    def __init__(self, listener: Listener) -> None:
        self.l = listener

    def answering(self) -> bool:
        return self.l.answering()

    def said(self) -> str:
        return self.l.said() if self.l.said is not None else ""

    def hear(self) -> str:
        assert self.l._seg is not None
        return self.l.transcriber.transcribe(self.l._seg.audio())

    def hold(self, on: bool) -> bool:
        return bool(self.l.on_hold(on)) if self.l.on_hold is not None else False

    def stop_reply(self) -> None:
        self.l._announced = True  # (the session's barge-in announces the speech that stopped the reply)
        self.l.on_barge_in()

    def forget(self) -> None:
        self.l._forget()

    def notice(self, message: str) -> None:
        self.l.emit(ev.Notice(message))
