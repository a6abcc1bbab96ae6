"""The listening stage: frames in, user turns out.

It runs the voice activity detector, asks the transcriber for the transcript at every pause
(and now and then during long speech, for the live partial transcript), and asks the turn
policy how much silence ends the turn given what is known at that moment. In push-to-talk
mode the key decides instead. While the assistant answers (without barge-in) it ignores the
microphone, plus an echo tail when the sink is a real loudspeaker.

With barge-in on a loudspeaker, speech over the reply pauses it at once (as a person stops when
someone starts to talk). The assistant's own voice coming back through the room stops with it; a
user's voice goes on in the quiet, and then stops the reply, unless its words are the reply's own
(voice.self_echo). Speech that stopped with the pause lets the reply go on where it paused.
A turn that cut a reply short is marked so: "Stop." alone ends the reply, it is not a question.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from voicechat.vad import Dropped, Pause, Segmenter, SpeechStarted, Utterance
from voicechat.voice import events as ev
from voicechat.voice.self_echo import OWN, USER
from voicechat.voice.transcriber import UtteranceText

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.voice.endpoint import TurnPolicy
    from voicechat.voice.io import Source
    from voicechat.voice.transcriber import Transcriber

ECHO_TAIL_S = 0.3  # after playback, the room's echo is not the user
CHECK_MS = 300  # voiced speech over a reply that is transcribed to tell the user from the assistant's echo
SUSPECT_S = 0.5  # speech that starts this soon after a reply is checked too (the room's tail)
ECHO_GONE_S = 0.25  # a reply paused this long ago no longer reaches the microphone (device buffers, the room)
AFTER_MS = 150  # voiced speech after that: someone is talking, not the reply's echo
RESUME_SILENCE_MS = 300  # a paused reply goes on when the speech over it stopped with it (silence this long)
AFTER_STOP_S = 2.0  # speech that starts this soon after a reply was stopped is still part of cutting it short


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


class Listener:
    def __init__(self, config: "Config", source: "Source", policy: "TurnPolicy", transcriber: "Transcriber", *,
                 emit: Callable[[ev.Event], None], deliver: Callable[[UserTurn], None], set_state: Callable[[str], None],
                 answering: Callable[[], bool], on_barge_in: Callable[[], None], echo: bool, wake: Any = None,
                 said: Callable[[], str] | None = None, on_hold: Callable[[bool], bool] | None = None) -> None:
        self.cfg = config
        self.source, self.policy, self.transcriber = source, policy, transcriber
        self.emit, self.deliver, self.set_state = emit, deliver, set_state
        self.answering, self.on_barge_in = answering, on_barge_in
        self.echo = echo
        self.wake = wake  # a WakeGate: asleep until its word is heard (voicechat.voice.wake)
        self.said = said  # what the assistant said lately: speech over it is checked against it (voice.self_echo)
        self.on_hold = on_hold  # pause the reply (True) while speech over it is checked, or let it go on (False)
        self._held = False
        self._resumed_at = float("-inf")  # when a paused reply last went on
        self._heard = ""  # the last check's transcript
        self._alone = False  # it was a stop word said alone (voice.self_echo.is_stop)
        self._stopped_at = float("-inf")  # when speech last stopped a reply
        self._said_at_stop = ""  # what the assistant had said by then: nothing new since, nothing to echo
        self._started_at = 0.0  # when the speech being heard began
        self.mode = config.listen.mode
        self.barge_in = config.listen.barge_in
        self.recording = threading.Event()  # push-to-talk: the key is down
        self._drop_ptt = threading.Event()  # the mode changed: forget a half-made push-to-talk recording
        self._stop: threading.Event | None = None
        self.frame_s = config.listen.frame_ms / 1000
        self._partial_frames = max(1, config.turn.partial_every_ms // config.listen.frame_ms)

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
            self._hold(False)

    def _hold(self, on: bool, why: str = "") -> None:
        """Pause the reply (held only if sound was playing), or let it go on."""
        if on == self._held or self.on_hold is None:
            return
        if on:
            self._held = bool(self.on_hold(True))
            return
        self._held = False
        self._resumed_at = time.perf_counter()
        self.on_hold(False)
        if why:
            self.emit(ev.Notice(f"went on with the reply ({why})"))

    def _run(self, stop: threading.Event) -> None:
        turn = self.cfg.turn
        seg = Segmenter(self.cfg.listen, pause_ms=turn.pause_ms)
        utt: UtteranceText | None = None
        pause_end = 0
        ptt: list[bytes] = []
        quiet_until = 0.0
        since_partial = 0
        barge = False  # speech started over a reply: it stops the reply once listen.barge_in_ms of it is voiced
        suspect = False  # speech started over a reply (or just after): the user's, or the assistant's echo?
        check_at = CHECK_MS  # voiced milliseconds at which it is (next) checked
        last_answer = float("-inf")
        held_at, after = 0.0, 0  # when the reply was paused for speech over it; voiced frames since its echo died
        while not stop.is_set():
            frame = self.source.read(0.1)
            if frame is None:
                if self.source.exhausted:
                    if self.mode == "vad" and seg.active:
                        self._end(seg, utt, time.perf_counter())
                    return
                continue
            now = time.perf_counter()
            if self._drop_ptt.is_set():
                self._drop_ptt.clear()
                ptt = []
            if self.mode == "ptt":
                self._hold(False)
                if self.recording.is_set():
                    ptt.append(frame)
                elif ptt:
                    audio = np.frombuffer(b"".join(ptt), dtype="<i2").astype(np.float32) / 32768.0
                    ptt = []
                    self.deliver(UserTurn("voice", audio=audio, speech_end=now, end_detected=now))
                continue
            answering = self.answering()
            if answering:
                last_answer = now
            if self.wake is not None and not self._awake(frame, now, answering or seg.active):
                self._hold(False)
                seg.reset()
                utt = self._close(utt)
                continue
            if answering and not self.barge_in:
                seg.reset()  # the assistant's own voice is not the user
                utt = self._close(utt)
                if self.echo:
                    quiet_until = now + ECHO_TAIL_S
                continue
            if now < quiet_until:
                seg.reset()
                utt = self._close(utt)
                continue
            if not answering and not seg.active:
                self.set_state("listening")  # (once: the session ignores a state it is already in)
            at = getattr(self.source, "captured_at", None) or now  # when this frame was heard (it may be read late)
            detect = getattr(self.source, "detect_frame", None)  # (the echo canceller's view while the speaker plays)
            if self._held and at - held_at >= ECHO_GONE_S:
                detect = None  # the reply is paused and its echo gone: what is heard is someone else
            for event in seg.push(frame, detect):
                if isinstance(event, SpeechStarted):
                    self._close(utt)
                    utt = UtteranceText()
                    pause_end = 0
                    self._started_at = now
                    since_partial = 0
                    if answering and self.barge_in:
                        barge = True  # once the voice has lasted long enough (below)
                    suspect = (self.said is not None and getattr(self.source, "hears_speaker", True)
                               and (answering or now - last_answer < SUSPECT_S) and not self._silent_since_stop(at))
                    check_at = max(CHECK_MS, self.cfg.listen.barge_in_ms)
                    if suspect and answering:
                        # heard while the reply was still paused, and after its echo died: the listener ran behind
                        # (a check was being transcribed) and let the reply go on too soon; the quiet began then
                        in_quiet = at < self._resumed_at and at - held_at >= ECHO_GONE_S
                        self._hold(True)
                        if not in_quiet:
                            held_at = time.perf_counter()  # (from when the pause was asked for)
                        after = 0
                    if not self.answering():
                        self.set_state("hearing")
                elif isinstance(event, Pause) and seg.active:
                    so_far = seg.audio()
                    pause_end = len(so_far)  # the key of this pause's result (the audio stops growing here)
                    if self.policy.uses_transcript or self.policy.uses_audio_model:
                        self.transcriber.request(utt, so_far, pause=True)
                elif isinstance(event, Utterance):  # the length cap
                    self._deliver(event, utt, now, seg.index)
                    utt = None
                elif isinstance(event, Dropped):
                    self._dropped(event, utt)
            if not seg.active:
                barge = suspect = False
                self._hold(False)
                continue
            voiced_ms = seg.voiced * self.cfg.listen.frame_ms
            if suspect and self._held:  # the reply is paused: the room's echo of it is gone after ECHO_GONE_S
                if at - held_at >= ECHO_GONE_S and seg.silence_run == 0:
                    after += 1
                if after * self.cfg.listen.frame_ms >= AFTER_MS:  # a voice that goes on in the quiet: the user's,
                    if self._whose(seg) == OWN:  # unless its words are the reply's
                        seg.reset()
                        utt = self._close(utt)
                        barge = suspect = False
                        self._hold(False)
                        continue
                    suspect = False
                elif at - held_at >= ECHO_GONE_S and seg.silence_ms >= RESUME_SILENCE_MS:
                    if self._is_stop(seg):  # "Stop." said alone, over the reply: the user's
                        suspect = False
                    else:  # it stopped when the reply paused: its echo
                        seg.reset()
                        utt = self._close(utt)
                        barge = suspect = False
                        self._hold(False, "no voice once it paused")
                        continue
            if not suspect and not barge:
                self._heard, self._alone = "", False
            if suspect and not self._held and voiced_ms >= check_at:
                whose = self._whose(seg)
                if whose == OWN:
                    seg.reset()
                    utt = self._close(utt)
                    barge = suspect = False
                    self._hold(False)
                    continue
                suspect = whose != USER
                check_at = voiced_ms + CHECK_MS
            if barge and not suspect and (voiced_ms >= self.cfg.listen.barge_in_ms or self._held):  # (paused: at once)
                barge = False
                self._stop_reply()
            if seg.silence_run == 0:
                since_partial += 1
                if self.policy.uses_transcript and since_partial >= self._partial_frames and not self.transcriber.busy:
                    since_partial = 0
                    self.transcriber.request(utt, seg.audio(), pause=False)
            elif seg.silence_run >= seg.pause_n and not (suspect and self._held):  # from the pause on: is the turn over?
                # (while the reply is paused for speech not yet told apart, the pause decides: above)
                hyp = self._hypothesis(utt, pause_end)
                need = self.policy.silence_to_end(hyp)
                if seg.silence_ms >= (self.policy.max_silence_ms if need is None else need):
                    if suspect and self._whose(seg) != USER:  # not yet told apart: at the end, it must be
                        seg.reset()
                        self._close(utt)
                        self._hold(False)
                    else:
                        if self._held:  # the user's turn ended while the reply was paused
                            self._stop_reply()
                        self._end(seg, utt, now)
                    utt = None
                    barge = suspect = False

    def _stop_reply(self) -> None:
        """Barge-in: the reply in progress stops (a paused one too)."""
        if self.answering():
            heard = f" (heard {self._heard[:40]!r}{' alone' if self._alone else ''})" if self._heard else ""
            self.emit(ev.Notice("barge-in: stopping the reply" + heard))
            self._stopped_at = time.perf_counter()
            self._said_at_stop = self.said() if self.said else ""
            self.on_barge_in()
            self._held = False  # stopped: nothing to go on with
        self._hold(False)

    def _silent_since_stop(self, at: float) -> bool:
        """The user stopped the reply, its echo has died, and the assistant has said nothing since (the session may
        still be busy with what cut it short): speech now cannot be its voice coming back."""
        return at - self._stopped_at >= ECHO_GONE_S and self.said is not None and self.said() == self._said_at_stop

    def _whose(self, seg: Segmenter) -> str:
        """Speech over the reply: the user's, the assistant's own voice coming back, or not yet known
        (voice.self_echo)."""
        from voicechat.voice.self_echo import verdict

        try:
            heard = self.transcriber.transcribe(seg.audio())
        except Exception:  # a failed check must not make the user inaudible
            return USER
        whose = verdict(heard, self.said() if self.said else "")
        self._heard, self._alone = heard.strip(), False
        if whose == OWN:
            self.emit(ev.Notice(f"ignored the assistant's own voice ({heard.strip()[:60]!r})"))
        return whose

    def _is_stop(self, seg: Segmenter) -> bool:
        from voicechat.voice.self_echo import is_stop

        try:
            heard = self.transcriber.transcribe(seg.audio())
        except Exception:
            return False
        self._heard = heard.strip()
        self._alone = is_stop(heard, self.said() if self.said else "")
        return self._alone

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
                while not (end in utt.results or utt.closed or time.monotonic() > deadline
                           or (self._stop is not None and self._stop.is_set())):
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

    def _end(self, seg: Segmenter, utt: UtteranceText | None, now: float) -> None:
        index = seg.index
        event = seg.finish()
        if isinstance(event, Dropped):
            self._dropped(event, utt)
        else:
            self._deliver(event, utt, now, index)

    def _deliver(self, event: Utterance, utt: UtteranceText | None, now: float, index: int) -> None:
        speech_end = now - (index - event.last_voiced_frame) * self.frame_s  # frames arrive in (source) real time
        cut_in = self._stopped_at >= self._started_at - AFTER_STOP_S
        self.deliver(UserTurn("voice", audio=event.audio, utt=utt, speech_end=speech_end, end_detected=now, cut_in=cut_in))

    def _dropped(self, event: Dropped, utt: UtteranceText | None) -> None:
        self._close(utt)
        self.emit(ev.Dropped(event.reason))
        if not self.answering():
            self.set_state("listening")
