"""Barge-in as a state machine: what speech heard while a reply plays does to that reply.

The listener owns the microphone, the voice detector and the transcriber; this machine owns the
decision. It runs no thread and reads no clock of its own: every event carries the times it needs
(``now``, the frame's capture time ``at``) and the few moments it stamps itself come from the
injected ``clock``. Its effects go through a :class:`BargePort` (pause or go on with the reply, stop
it, forget the speech in progress, say a notice), and what was said is read through it only when a
decision needs the words. So a test drives it event by event, in milliseconds, with no threads.

States (:attr:`BargeIn.state`):

- ``listening``: no speech in progress, or the user's speech with nothing playing;
- ``deaf``: the reply plays and barge-in is off (plus ``timing.echo_tail_s`` after it on a loudspeaker):
  frames are ignored;
- ``suspect``: speech over the reply (or just after it) that may be its own voice coming back; the reply
  plays on until ``check_ms`` of voice are checked against what it said. With an echo canceller (frames say what the
  speaker cannot explain), speech over a playing reply is ``suspect`` too (*waiting*): the reply plays on while its
  echo explains all that is heard (nothing is transcribed meanwhile), and pauses once ``near_ms`` of a sound it
  cannot explain is heard: its own echo makes no gap;
- ``paused``: speech over the reply paused it (``hold``); the reply's echo dies ``echo_gone_s`` after;
- ``barging``: the user's speech over the reply. With backchannels (the default), the reply is paused at once and
  the speech is watched: it stops the reply once longer than a backchannel (``backchannel_ms`` of voice, and
  ``listen.barge_in_ms``) or when it pauses with words that are not one; it goes on when it pauses as a backchannel
  ("uh-huh", "yeah": voice.backchannel) or with no words at all (a cough, a door), and is forgotten (no turn). With
  ``barge.backchannels_interrupt``, it stops the reply once ``listen.barge_in_ms`` of it is voiced (at once when paused);
- ``user``: the user's turn in progress over a reply that was told apart (a stop is pending or done).

Decision table (speech that starts over a reply, barge-in on):

| state | event | condition | effects | next |
|---|---|---|---|---|
| listening | speech starts | reply playing, its voice may come back (``said``, a microphone that hears the speaker, not silent since a stop), frames say what the speaker cannot explain, not ``pause_at_start`` | (none) | suspect (waiting) |
| listening | speech starts | reply playing, its voice may come back; nothing known of what the speaker cannot explain (no canceller, ``near_ms`` 0), or ``pause_at_start``, or heard in a paused reply's quiet | hold | paused (suspect) |
| listening | speech starts | reply playing, no echo possible, backchannels | hold | barging (paused) |
| listening | speech starts | reply playing, no echo possible, backchannels interrupt | (none) | barging |
| listening | speech starts | reply ended less than ``suspect_s`` ago | (none) | suspect |
| listening (no speech) | frame | ``onset_ms`` (not 0) of sound the speaker cannot explain within ``preroll_s``, reply playing | hold | paused (onset) |
| paused (onset) | speech starts | | (none: its pause counts from the onset) | paused (suspect), or barging |
| paused (onset) | frame | no speech ``echo_gone_s`` + ``resume_silence_ms`` after the pause | go on ("no speech") | listening |
| suspect (waiting) | any frame | ``near_ms`` of sound the speaker cannot explain (from ``preroll_s`` before the start; within the last ``near_window_ms`` when set) | hold | paused (suspect) |
| suspect (waiting) | silence | ``resume_silence_ms`` of it, all explained by the speaker | forget (no gap was heard) | listening |
| suspect (waiting) | any frame | the reply is over | (none) | suspect (not paused) |
| paused | voiced frames after the echo died, not explained by the speaker (or not known) | ``after_ms`` of them | hear: own words -> forget, go on ("its own words"); else | barging |
| paused | silence after the echo died | ``resume_silence_ms`` of it: less than ``near_ms`` of sound the speaker cannot explain | forget, go on ("nothing but its own echo"), unheard | listening |
| paused | silence after the echo died | ``resume_silence_ms`` of it: a stop word said alone | (keep) | barging |
| paused | silence after the echo died | ``resume_silence_ms`` of it, a backchannel | forget, go on ("backchannel 'Yeah.'") | listening |
| paused | silence after the echo died | ``resume_silence_ms`` of it, otherwise | forget, go on ("no voice once it paused") | listening |
| suspect (not paused) | voiced | ``check_ms`` of voice: own words | forget, go on | listening |
| suspect (not paused) | voiced | ``check_ms`` of voice: other words, but less than ``near_ms`` of sound the speaker cannot explain | check again ``check_ms`` later | suspect |
| suspect (not paused) | voiced | ``check_ms`` of voice: the user's | | barging |
| suspect (not paused) | voiced | unclear | check again ``check_ms`` later | suspect |
| barging (backchannels interrupt) | voiced | ``barge_in_ms`` of voice, or paused | stop the reply | user |
| barging | voiced | a stop word said alone, or ``backchannel_ms`` (and ``barge_in_ms``) of voice | stop the reply | user |
| barging | voiced | not paused, sound now playing | hold | barging |
| barging | silence | ``resume_silence_ms`` of it: the reply's own words (still suspect) | forget, go on | listening |
| barging | silence | ``resume_silence_ms`` of it: a backchannel, or no words | forget, go on ("backchannel 'Uh-huh.'", "no words") | listening |
| barging | silence | ``resume_silence_ms`` of it: still suspect, not told apart | forget, go on | listening |
| barging | silence | ``resume_silence_ms`` of it: other words (a stop word said alone among them) | stop the reply | user |
| any with speech | turn over (policy) | still suspect: words not the user's | forget, go on | listening |
| any with speech | turn over (policy) | otherwise | (paused: stop the reply) deliver | listening |
| any | speech gone (dropped) | | go on | listening |

Sound the speaker cannot explain: with an echo canceller, each frame says whether it holds a sound louder than
the speaker's echo could be (voice.echo.EchoPath), measured on the microphone itself, so a canceller that leaks
the reply's echo while it re-converges does not fool it; the speech's frames count from ``preroll_s`` before it
was detected. Words are only as good as what Whisper makes of a fragment (the reply's echo was heard as
"No, wait."); speech of which the speaker explains all is its echo, whatever its words. Without a canceller this
is not known, and the words decide.

While the reply is paused for speech not yet told apart, or speech over it may still be a backchannel, the pause
decides, not the turn policy (:attr:`BargeIn.may_end_turn`). A sink that cannot pause (``hold`` False: a file, a
WebSocket client) plays on until the speech is decided, then stops or goes on. Speech heard while the reply was still paused, after its echo had died,
counts from that pause even if a slow check let the reply go on meanwhile. Once the user has stopped a
reply and its echo has died, speech is the user's until the assistant says something new. A turn that
stopped a reply, or began within ``after_stop_s`` of a stop, is a cut-in: "Stop." alone is not a question.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from voicechat.voice.backchannel import Backchannels
from voicechat.voice.self_echo import OWN, UNSURE, USER

NEAR_FRAMES = 1000  # frames whose evidence is kept (30 s of 30 ms frames: longer than a pause waits)


@dataclass(frozen=True)
class BargeTiming:
    """The machine's timing (config section ``barge``)."""

    echo_tail_s: float = 0.3  # without barge-in: after a reply on a loudspeaker, its echo is not the user
    check_ms: int = 300  # voiced speech over a reply that is transcribed to tell the user from its echo
    suspect_s: float = 0.5  # speech that starts this soon after a reply is checked too (the room's tail)
    echo_gone_s: float = 0.25  # a reply paused this long ago no longer reaches the microphone
    after_ms: int = 150  # voiced speech after that: someone is talking, not the reply's echo
    resume_silence_ms: int = 300  # a paused reply goes on when the speech over it stopped with it (this much silence)
    after_stop_s: float = 2.0  # speech that starts this soon after a stop is still part of cutting the reply short
    barge_in_ms: int = 0  # voiced speech over a reply before it stops; 0: at once (listen.barge_in_ms)
    near_ms: int = 60  # speech over a reply is the user's only with this much sound the speaker cannot explain
    preroll_s: float = 0.3  # speech began this long before it was detected (listen.preroll_ms): its sound counts too
    backchannel_ms: int = 900  # voiced speech over a reply longer than a backchannel ("yeah, yeah" is 0.8 s): it stops it
    pause_at_start: bool = False  # pause at speech start even when the speaker's echo explains all of it (the design before)
    onset_ms: int = 60  # this much sound the speaker cannot explain within preroll_s pauses a reply before speech starts; 0: off
    near_window_ms: int = (
        300  # a playing reply pauses for near_ms of such sound within this long (a voice, not stray frames); 0: in all the speech
    )


class BargePort(Protocol):
    """What the machine reads and acts on."""

    def answering(self) -> bool:
        """A reply is in progress (being written or played)."""

    def said(self) -> str:
        """What the assistant has said lately (its voice coming back would say these words)."""

    def hear(self) -> str:
        """The transcript of the speech in progress (a Whisper pass; it may raise)."""

    def hold(self, on: bool) -> bool:
        """Pause the reply (True: sound was playing and is now paused), or let it go on."""

    def stop_reply(self) -> None:
        """Barge-in: stop the reply in progress."""

    def forget(self) -> None:
        """Forget the speech in progress: it is the assistant's own voice."""

    def notice(self, message: str) -> None:
        """Say something to whoever watches the session."""


class BargeIn:
    def __init__(
        self,
        timing: BargeTiming,
        port: BargePort,
        *,
        barge_in: bool,
        echo: bool,
        checks_words: bool,
        backchannels: Backchannels | None = None,
        pause_for_echo: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``backchannels``: speech over a reply made of these words ("uh-huh", "yeah"), or of no words at all, lets
        it go on (voice.backchannel); None: any speech over a reply that is the user's stops it.
        ``pause_for_echo``: speech that may be the reply's echo pauses the reply to tell (a sound card); False: the
        reply plays on while its words tell (a client that cancels its own echo: a pause there would be a gap)."""
        self.t, self.port, self.clock = timing, port, clock
        self.backchannels = backchannels
        self.barge_in = barge_in  # speech over a reply may stop it
        self.echo = echo  # the sink is a real loudspeaker: its sound reaches the microphone
        self.checks_words = checks_words  # speech over a reply is checked against what was said (voice.self_echo)
        self.pause_for_echo = pause_for_echo
        self.held = False  # the reply is paused for the speech in progress
        self.barge = False  # the speech over the reply is to stop it once long enough
        self.suspect = False  # the speech may be the assistant's own voice coming back
        self.check_at = timing.check_ms  # voiced ms at which the suspect speech is (next) checked
        self.heard = ""  # the last check's transcript
        self.alone = False  # it was a stop word said alone (voice.self_echo.is_stop)
        self.quiet_until = float("-inf")  # frames before this are the reply's echo tail (barge-in off)
        self.last_answer = float("-inf")  # the last frame heard while answering
        self.held_at = 0.0  # when the reply was paused
        self.after = 0  # voiced frames since the paused reply's echo died
        self.resumed_at = float("-inf")  # when a paused reply last went on
        self.stopped_at = float("-inf")  # when speech last stopped a reply
        self.said_at_stop = ""  # what the assistant had said by then
        self.started_at = 0.0  # when the speech in progress began
        self.waiting = False  # suspect speech over a playing reply that its echo explains so far: it plays on (no gap)
        self.speaking = False  # speech in progress (from speech_started until it is gone)
        self.onset_at: float | None = None  # the reply was paused at a sound's onset, before any speech started
        # (time, whether the frame held a sound the speaker cannot explain; None: not known) of the last frames
        self.near: deque[tuple[float, bool | None]] = deque(maxlen=NEAR_FRAMES)
        self.frame_ms = 30  # (as the listener's frames last)

    # -- what the listener asks ------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self.held:
            return "paused"
        if self.suspect:
            return "suspect"
        if self.barge:
            return "barging"
        return "listening"

    @property
    def undecided(self) -> bool:
        """Speech over a reply not yet known to be the user's taking the turn (it may be the reply's echo, a cough or a
        backchannel): its partial transcripts are not shown."""
        return self.suspect or self.held or self.waiting or self._watching

    @property
    def may_end_turn(self) -> bool:
        """Whether the turn policy may end the turn now: not while a paused reply waits for its verdict, nor while
        speech over a reply may still be a backchannel."""
        return not (self.suspect and self.held) and not self._watching

    @property
    def _watching(self) -> bool:
        """Speech over a reply that may yet be a backchannel: it is decided when it pauses, or stops the reply once
        longer than one."""
        return self.barge and self.backchannels is not None

    def detect_view(self, at: float) -> bool:
        """Whether voice detection should use the echo canceller's view of this frame: not once the paused
        reply's echo is gone (what is heard then is someone else, and the suppressed view would clip them)."""
        return not (self.held and at - self.held_at >= self.t.echo_gone_s)

    def cut_in(self) -> bool:
        """The turn being delivered stopped a reply, or began just after one was stopped."""
        return self.stopped_at >= self.started_at - self.t.after_stop_s

    # -- events ---------------------------------------------------------------------------------
    def frame(self, now: float, answering: bool, near: bool | None = None) -> None:
        """A frame arrives (``answering``: a reply is in progress; ``near``: it holds a sound the speaker cannot
        explain, a voice in the room (voice.echo.EchoPath); None: not known, no echo canceller)."""
        if answering:
            self.last_answer = now
        self.near.append((now, near))
        if self.speaking or not (self.t.onset_ms and self.barge_in and self.echo):
            return
        if self.onset_at is not None:
            if self.held and now - self.onset_at >= self.t.echo_gone_s + self.t.resume_silence_ms / 1000:
                self._hold(False, "no speech")  # a sound, but no speech followed
            if not self.held:
                self.onset_at = None
        elif answering and near and not self.held and self._near_ms(now - self.t.preroll_s) >= self.t.onset_ms:
            if self._hold(True):  # someone may be starting to talk: quiet now, as a person would
                self.held_at, self.onset_at = self.clock(), now

    def listens(self, now: float, answering: bool) -> bool:
        """Whether this frame is listened to: not the assistant's own voice while barge-in is off, nor its tail."""
        if answering and not self.barge_in:
            if self.echo:
                self.quiet_until = now + self.t.echo_tail_s
            return False
        return now >= self.quiet_until

    def speech_started(self, now: float, at: float, answering: bool, hears_speaker: bool) -> None:
        self.started_at = now
        if answering and self.barge_in:
            self.barge = True  # once the voice has lasted long enough (speech_frame)
        self.suspect = (
            self.checks_words
            and hears_speaker
            and (answering or now - self.last_answer < self.t.suspect_s)
            and not self._silent_since_stop(at)
        )
        self.check_at = max(self.t.check_ms, self.t.barge_in_ms)
        self.waiting = False
        self.speaking = True
        onset, self.onset_at = self.onset_at is not None and self.held, None
        if onset:  # paused at the sound's onset, before the voice detector called it speech: it counts from there
            self.after = 0
        elif self.suspect and answering:
            # heard while the reply was still paused, and after its echo died: the listener ran behind (a check was
            # being transcribed) and let the reply go on too soon; the quiet began then
            in_quiet = at < self.resumed_at and at - self.held_at >= self.t.echo_gone_s
            self.after = 0
            if not self.pause_for_echo:
                pass  # the reply plays on while the words tell (speech_frame: check_at)
            elif not in_quiet and not self.t.pause_at_start and self._knows_near():
                self.waiting = True  # the reply plays on until a sound its echo cannot explain is heard (speech_frame)
            else:
                self._hold(True)
                if not in_quiet:
                    self.held_at = self.clock()  # (from when the pause was asked for)
        elif self._watching:  # the user's voice (no echo possible): silent at once, until it is known not a backchannel
            self._hold(True)
            self.held_at = self.clock()

    def speech_gone(self) -> None:
        """No speech in progress any more (ended, dropped, forgotten)."""
        self.barge = self.suspect = self.waiting = self.speaking = False
        if self.onset_at is not None:
            return  # (a reply paused at a sound's onset waits for speech to start: frame)
        self._hold(False)

    def speech_frame(self, at: float, voiced_ms: int, silence_ms: int, frame_ms: int) -> bool:
        """A frame of speech in progress (``silence_ms`` 0: this frame was voiced). False: the speech was the
        assistant's own voice and is forgotten."""
        self.frame_ms = frame_ms
        if self.waiting and not self._wait(silence_ms):
            return False
        if self.waiting:
            return True
        if self.suspect and self.held:  # the reply is paused: the room's echo of it is gone after echo_gone_s
            echo_gone = at - self.held_at >= self.t.echo_gone_s
            if echo_gone and silence_ms == 0 and not (self.t.near_ms and self._near_now() is False):  # (a late pause's echo)
                self.after += 1
            if self.after * frame_ms >= self.t.after_ms:  # a voice that goes on in the quiet: the user's,
                if self._whose() == OWN:  # unless its words are the reply's
                    self._forget("its own words")
                    return False
                self.suspect = False
            elif echo_gone and silence_ms >= self.t.resume_silence_ms:
                if self._echo_only():  # all of it was the speaker's: its echo, whatever Whisper makes of it
                    self._forget("nothing but its own echo")
                    return False
                if self._is_stop():  # "Stop." said alone, over the reply: the user's
                    self.suspect = False
                elif self._knows_near() and self._users_words():
                    # the canceller heard a voice the speaker did not make, and its words are neither the reply's nor
                    # a backchannel ("Wait," before a pause): the user's, though it stopped as the reply paused
                    self.suspect = self.barge = False
                    self._stop_reply()
                    return True
                else:  # it stopped when the reply paused: its echo (or a backchannel, said as short)
                    self._forget(self._backchannel_why() or "no voice once it paused")
                    return False
        if not self.suspect and not self.barge:
            self.heard, self.alone = "", False
        if self.suspect and not self.held and voiced_ms >= self.check_at:
            whose = self._whose()
            if whose == OWN:
                self._forget()
                return False
            self.suspect = whose != USER
            self.check_at = voiced_ms + self.t.check_ms
        if self.barge and not self.suspect and self.backchannels is None and (voiced_ms >= self.t.barge_in_ms or self.held):
            self.barge = False  # (paused: at once)
            self._stop_reply()
        elif self._watching and not (self.suspect and self.held):
            if not self.suspect and (self.alone or voiced_ms >= max(self.t.barge_in_ms, self.t.backchannel_ms)):
                self.barge = False  # a stop word said alone, or longer than a backchannel
                self._stop_reply()
            elif silence_ms >= self.t.resume_silence_ms:  # it paused: its words decide
                return self._decide()
            elif not self.suspect and not self.held and self._hold(True):  # (the reply may have begun to sound since)
                self.held_at = self.clock()
        return True

    def _wait(self, silence_ms: int) -> bool:
        """Suspect speech over a playing reply, which plays on while its echo explains all that is heard: it pauses
        once ``near_ms`` of sound the speaker cannot explain is heard (then as any paused reply); speech that stops
        with nothing unexplained in it is the echo, forgotten with no gap heard and not transcribed (whatever Whisper
        would make of it: "No, wait."). False: forgotten."""
        if not self.suspect or not self.port.answering():
            self.waiting = False  # (the reply ended: speech after it is checked by its words)
            return True
        if self._voice_heard():
            return self._pause_now()
        if silence_ms >= self.t.resume_silence_ms:
            self._forget()
            return False
        return True

    def _pause_now(self) -> bool:
        """Stop waiting: pause the reply (as at speech start) and listen in the quiet."""
        self.waiting = False
        if self._hold(True):
            self.held_at = self.clock()
            self.after = 0
        return True

    def _knows_near(self) -> bool:
        """Frames say whether they hold a sound the speaker cannot explain (an echo canceller), and it counts."""
        return self.t.near_ms > 0 and bool(self.near) and self.near[-1][1] is not None

    def _decide(self) -> bool:
        """Speech over the reply paused (``resume_silence_ms``): a backchannel, or no words at all (a cough, a door),
        let the reply go on where it paused; other words stop it, and the turn goes on. False: forgotten."""
        assert self.backchannels is not None  # (only while watching)
        try:
            heard = self.port.hear()
        except Exception:  # a failed check must not make the user inaudible
            heard = None
        said = self.port.said() if self.checks_words else ""
        if heard is not None:
            from voicechat.voice.self_echo import is_stop, verdict

            self.heard = heard.strip()
            whose = verdict(heard, said) if self.suspect else USER
            if whose == OWN:
                self.port.notice(f"ignored the assistant's own voice ({self.heard[:60]!r})")
                self._forget()
                return False
            self.alone = is_stop(heard, said)
            if not self.alone:
                why = self._backchannel_why()
                if why:
                    self._went_on(why)
                    return False
                if self.suspect and (whose != USER or self._echo_only()):  # not told apart: as at a turn's end
                    self._forget()
                    return False
        self.barge = self.suspect = False
        self._stop_reply()
        return True

    def _backchannel_why(self) -> str:
        """Why the speech last heard lets the reply go on ("backchannel 'Uh-huh.'", "no words"); "" when it does not
        (or backchannels interrupt)."""
        if self.backchannels is None:
            return ""
        if self.backchannels.no_words(self.heard):
            return "no words"
        said = self.port.said() if self.checks_words else ""  # (over its echo, words of the reply come with it)
        return f"backchannel {self.heard[:40]!r}" if self.backchannels.match(self.heard, said) else ""

    def _went_on(self, why: str) -> None:
        """Forget the speech and let the reply go on, saying why (also when it could not be paused)."""
        held = self.held
        self._forget(why)
        if not held:
            self.port.notice(f"went on with the reply ({why})")

    def turn_over(self) -> bool:
        """The turn policy says the turn is over. True: deliver it; False: it was the assistant's voice (forgotten)."""
        try:
            if self.suspect and self._whose() != USER:  # not yet told apart: at the end, it must be
                self.port.forget()
                self._hold(False)
                return False
            if self.held:  # the user's turn ended while the reply was paused
                self._stop_reply()
            return True
        finally:
            self.barge = self.suspect = self.waiting = self.speaking = False

    def close(self) -> None:
        """The listener stops: a paused reply goes on."""
        self._hold(False)

    # -- effects ----------------------------------------------------------------------------------
    def _hold(self, on: bool, why: str = "") -> bool:
        """Pause the reply (held only if sound was playing), or let it go on. True: it is now as asked."""
        if on == self.held:
            return True
        if on:
            self.held = bool(self.port.hold(True))
            return self.held
        self.held = False
        self.resumed_at = self.clock()
        self.port.hold(False)
        if why:
            self.port.notice(f"went on with the reply ({why})")
        return True

    def _forget(self, why: str = "") -> None:
        self.port.forget()
        self.barge = self.suspect = self.waiting = self.speaking = False
        self.onset_at = None
        self._hold(False, why)

    def _stop_reply(self) -> None:
        if self.port.answering():
            heard = f" (heard {self.heard[:40]!r}{' alone' if self.alone else ''})" if self.heard else ""
            self.port.notice("barge-in: stopping the reply" + heard)
            self.stopped_at = self.clock()
            self.said_at_stop = self.port.said() if self.checks_words else ""
            self.port.stop_reply()
            self.held = False  # stopped: nothing to go on with
        self._hold(False)

    def _silent_since_stop(self, at: float) -> bool:
        """The user stopped the reply, its echo has died, and the assistant has said nothing since (the session may
        still be busy with what cut it short): speech now cannot be its voice coming back."""
        return at - self.stopped_at >= self.t.echo_gone_s and self.checks_words and self.port.said() == self.said_at_stop

    def _whose(self) -> str:
        """Speech over the reply: the user's, the assistant's own voice coming back, or not yet known."""
        from voicechat.voice.self_echo import verdict

        try:
            heard = self.port.hear()
        except Exception:  # a failed check must not make the user inaudible
            return USER
        whose = verdict(heard, self.port.said() if self.checks_words else "")
        if whose == USER and self._echo_only():  # other words, but nothing the speaker did not play: listen on
            whose = UNSURE
        self.heard, self.alone = heard.strip(), False
        if whose == OWN:
            self.port.notice(f"ignored the assistant's own voice ({heard.strip()[:60]!r})")
        return whose

    def _near_now(self) -> bool | None:
        """Whether the latest frame held a sound the speaker cannot explain (None: not known)."""
        return self.near[-1][1] if self.near else None

    def _echo_only(self) -> bool:
        """The speech in progress (from ``preroll_s`` before it was detected) held less than ``near_ms`` of sound the
        speaker cannot explain: the speaker's echo explains all of it. False when that is not known (no canceller)."""
        since = self.started_at - self.t.preroll_s
        known = [near for at, near in self.near if at >= since and near is not None]
        return bool(known) and self.t.near_ms > 0 and sum(known) * self.frame_ms < self.t.near_ms

    def _voice_heard(self) -> bool:
        """``near_ms`` of sound the speaker cannot explain in the speech in progress (from ``preroll_s`` before it was
        detected), within the last ``near_window_ms`` when set."""
        if not self.near:
            return False
        since = self.started_at - self.t.preroll_s
        if self.t.near_window_ms:
            since = max(since, self.near[-1][0] - self.t.near_window_ms / 1000)
        return self._near_ms(since) >= self.t.near_ms

    def _near_ms(self, since: float) -> int:
        """Milliseconds of sound the speaker cannot explain in the frames since then."""
        return sum(1 for at, near in self.near if at >= since and near) * self.frame_ms

    def _users_words(self) -> bool:
        """The words last heard (``heard``) are words, no backchannel, and not the reply's own."""
        from voicechat.voice.self_echo import verdict

        if not any(c.isalnum() for c in self.heard) or self._backchannel_why():
            return False
        return verdict(self.heard, self.port.said() if self.checks_words else "") == USER

    def _is_stop(self) -> bool:
        from voicechat.voice.self_echo import is_stop

        try:
            heard = self.port.hear()
        except Exception:
            return False
        self.heard = heard.strip()
        self.alone = is_stop(heard, self.port.said() if self.checks_words else "")
        return self.alone
