"""Transcription while the user speaks: one worker thread that transcribes the utterance in progress.

At every pause (and now and then during long speech, for the live partial transcript) the
listener asks for a transcript of the utterance so far. The worker always takes the newest
request and drops older ones. When the turn ends at a pause whose transcript is ready, there
is nothing left to decode. Long utterances are committed at pauses once they pass
``turn.commit_after_s``: later requests decode only the audio after the commit point, with the
committed text as the prompt, so the cost of each request stays bounded.

The utterance's language: fixed (stt.language, or one declared language), or, with several declared
(listen.languages), picked among them (one decoder step on the encoder output the pass decodes from)
and decided by the first pass on at least ``DECIDE_AFTER_S`` of speech that is at least ``DECIDE_AT``
sure, else by the turn's last pass, the one on the whole utterance, or at its first commit (long speech:
the committed text stays in that language). Until then each pause's pass picks again (the turn may end
there); partial transcripts during speech pick only once there is ``DECIDE_AFTER_S`` of it and no guess
made on that much yet; before, they decode in the newest guess, or the language of the turn before. Deciding at one second, as before, was right far less
often on espeak-ng speech; a sure pick at 1.5 s never changed at the end of a turn on the tuning voices
(bench/languages.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voicechat import stt_languages
from voicechat.stt_languages import TurnText
from voicechat.voice.endpoint import Hypothesis
from voicechat.voice.io import RATE

DECIDE_AFTER_S = 1.5  # speech a pass needs before a sure pick decides the turn's language
DECIDE_AT = 0.99  # a pick this probable among the declared languages is sure

if TYPE_CHECKING:
    import numpy as np

    from voicechat.config import TurnConfig
    from voicechat.engines.base import SpeechToText
    from voicechat.engines.smart_turn import SmartTurn


class UtteranceText:
    """The transcript of one utterance as it grows; shared by the listener, the worker and the turn."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.committed = ""  # text of the audio before commit_sample
        self.commit_sample = 0
        self.results: dict[int, Hypothesis] = {}  # end sample -> hypothesis of the whole utterance up to it
        self.ready_at: dict[int, float] = {}  # end sample -> perf_counter() when its transcript was ready
        self.in_flight: int | None = None  # end sample of the request being decoded
        self.closed = False  # the turn ended: no more partial transcripts
        self.language: str | None = None  # decided: every pass from here on, and the final one, decodes in it
        self.guess: str | None = None  # the newest pass's language while none is decided
        self.guessed_on = 0  # samples of speech that guess was made on
        self.early: tuple[int, Any] | None = None  # (samples heard, its future): the audio turn model, run before the pause

    def result(self, end: int) -> Hypothesis | None:
        with self.cond:
            return self.results.get(end)


@dataclass
class _Request:
    utt: UtteranceText
    audio: np.ndarray  # the whole utterance so far
    pause: bool  # at a pause (may commit, asks the audio turn model); else a partial during speech
    judged: int | None = None  # the audio turn model already heard the utterance up to this sample, in this pause


class Transcriber:
    """Runs the speech-to-text engine (and the audio turn model) off the listener's thread."""

    def __init__(
        self,
        stt: SpeechToText,
        cfg: TurnConfig,
        language: str | None,
        *,
        incremental: bool,
        turn_model: SmartTurn | None = None,
        on_partial: Callable[[UtteranceText, str], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        read_text: Callable[[str], float | None] | None = None,
        languages: list[str] | None = None,
    ) -> None:
        """``languages``: those each utterance's language is picked among when ``language`` is not set
        (None: the engine's declared ones, ``stt.declared``; [] any)."""
        self.stt, self.cfg = stt, cfg
        if languages is None:
            languages = list(getattr(stt, "declared", None) or [])
        self.language = stt_languages.fixed(language) or (languages[0] if len(languages) == 1 else None)
        self.languages = languages
        self.identifies = self.language is None  # each utterance's language is found from its audio
        self.turn_model = turn_model
        self.judge = turn_model is not None
        self.incremental = incremental  # transcribe at pauses (the engine can, and the config wants it)
        self.on_partial = on_partial or (lambda utt, text: None)
        self.on_error = on_error
        self.read_text = read_text  # the chat model's P(sentence end) after the words so far
        self._engine = threading.Lock()  # one decode at a time
        self._slot: _Request | None = None
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._judges: Any = None
        self.decodes = 0
        self.language_steps = 0  # passes that identified the language (one decoder step each)
        self.last_language: str | None = None  # the language of the last turn whose language was decided

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="voice-transcriber", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._judges is not None:
            self._judges.shutdown(wait=False, cancel_futures=True)

    def warm_up(self) -> None:
        self.stt.warm_up()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._slot is not None or self._engine.locked()

    # requests ----------------------------------------------------------------------------
    def request(self, utt: UtteranceText, audio: np.ndarray, *, pause: bool, judged: int | None = None) -> None:
        """Transcribe the utterance so far (the newest request replaces one not yet started). ``judged``: the
        audio turn model heard it up to this sample in the same silence (:meth:`judge_early`); that answer is used."""
        with self._cv:
            self._slot = _Request(utt, audio, pause, judged)
            self._cv.notify()

    def judge_early(self, utt: UtteranceText, audio: np.ndarray) -> bool:
        """Start the audio turn model on the utterance so far, as its silence begins: it runs while the pause is
        waited for, and the pause's pass then has the cores for Whisper. True if it was started."""
        if self.turn_model is None or not self.judge:
            return False
        future = self._judge(audio)
        with utt.cond:
            utt.early = (len(audio), future)
        return True

    def final(self, utt: UtteranceText, audio: np.ndarray, timeout: float = 30.0) -> tuple[str, float]:
        """The transcript of the whole utterance and when it was ready: ready already if the last pause's
        request covered it, else decoded now."""
        end = len(audio)
        with utt.cond:
            utt.closed = True
            deadline = time.monotonic() + timeout
            while utt.in_flight == end and end not in utt.results and time.monotonic() < deadline:
                utt.cond.wait(0.05)
            hyp = utt.results.get(end)
            if hyp is not None and hyp.text is not None:
                utt.language = utt.language or utt.guess or self.language
                if utt.language is not None and self.identifies:
                    self.last_language = utt.language
                return hyp.text, utt.ready_at.get(end, time.perf_counter())
        text = self._decode(utt, audio, commit=False, final=True).text or ""
        return text, time.perf_counter()

    def transcribe(self, audio: np.ndarray) -> str:
        """Speech heard over a reply, at once (is it the reply's echo, a backchannel, or the user?)."""
        with self._engine:
            return self._turn(audio, None, self.language).text

    def transcribe_turn(self, audio: np.ndarray) -> TurnText:
        """A whole utterance at once, with its language (fixed, or picked among the declared ones from it): engines
        that cannot work incrementally, push-to-talk. Where the engine can tell where its last word starts, a
        decode that stopped at a pause in the middle reads the rest too (voicechat.engines.whisper_turn)."""
        with self._engine:
            return self._turn(audio, None, self.language, last_word=True)

    def _turn(self, audio: np.ndarray, prompt: str | None, language: str | None, last_word: bool = False) -> TurnText:
        """One pass: in ``language`` when it is known, else in the most probable of the declared languages.
        ``last_word``: with how sure the engine is of the last word, where it can tell (at a pause)."""
        if language is None and not self.identifies or language is not None and not hasattr(self.stt, "transcribe_turn_in"):
            text = self.stt.transcribe_turn(
                audio, prompt=prompt, beam_size=self.cfg.beam_size, silero_filter=self.cfg.silero_filter, language=language
            )
            return TurnText(text, language)
        return stt_languages.transcribe_turn_in(
            self.stt,
            audio,
            languages=[language] if language is not None else self.languages,
            prompt=prompt,
            beam_size=self.cfg.beam_size,
            silero_filter=self.cfg.silero_filter,
            last_word=last_word,
        )

    def _judge(self, audio: np.ndarray) -> Any:
        """The audio turn model runs beside the transcription (it is small; two cores share the work)."""
        if self._judges is None:
            from concurrent.futures import ThreadPoolExecutor

            self._judges = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-turn-model")
        assert self.turn_model is not None  # (judged only when there is a turn model)
        return self._judges.submit(self.turn_model.complete_probability, audio)

    # worker ------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                while self._slot is None and not self._stop.is_set():
                    self._cv.wait(0.1)
                req, self._slot = self._slot, None
            if req is None:
                continue
            with req.utt.cond:
                if req.utt.closed:  # the turn ended meanwhile: its final transcript is decoded by the turn
                    continue
                req.utt.in_flight = len(req.audio)
            try:
                self._decode(req.utt, req.audio, commit=req.pause, judge=req.pause and self.judge, judged=req.judged)
            except Exception as e:  # the session hears of it; whoever waits on this utterance wakes up
                with req.utt.cond:
                    req.utt.closed = True
                    req.utt.cond.notify_all()
                if self.on_error is None:
                    raise
                self.on_error(e)
                return

    def _decode(
        self, utt: UtteranceText, audio: np.ndarray, *, commit: bool, judge: bool = False, final: bool = False, judged: int | None = None
    ) -> Hypothesis:
        """``final``: the turn's last pass, which decides its language whatever the length. ``judged``: the audio
        turn model's early answer on the utterance up to this sample stands for this pass's."""
        end = len(audio)
        with utt.cond:
            early = utt.early if judge else None
            if judge:
                utt.early = None
            if early is not None and early[0] != judged:
                early = None  # (of another silence)
            committed, start = utt.committed, utt.commit_sample
            if start > end:  # a commit from a later request: decode from the start
                committed, start = "", 0
            utt.in_flight = end
            language = self.language or utt.language
            if language is None and not commit and not final:  # a partial during speech: no language step when
                if utt.guessed_on >= DECIDE_AFTER_S * RATE:  # a guess was made on enough speech,
                    language = utt.guess
                elif end - start < DECIDE_AFTER_S * RATE:  # or there is too little to pick on: the newest guess,
                    language = utt.guess or self.last_language  # else the language of the turn before
        text, prob, text_prob, word_prob, word_lead = None, None, None, None, None
        sure = False
        found: str | None = None
        try:
            with self._engine:
                judging = None
                if judge and self.turn_model is not None:
                    judging = early[1] if early is not None else self._judge(audio)
                if self.incremental or not commit:
                    self.language_steps += language is None and self.identifies and len(self.languages) != 1
                    # at a pause, how sure Whisper is of the last word (engines that cannot tell leave it None); at
                    # a pause and for the whole turn, where it starts: a decode that stopped short reads the rest
                    turn = self._turn(audio[start:], committed or None, language, last_word=commit or final)
                    text, found, word_prob, word_lead = turn.text, turn.language, turn.last_word_prob, turn.last_word_lead_s
                    sure = turn.confidence >= DECIDE_AT and end - start >= DECIDE_AFTER_S * RATE
                prob = judging.result() if judging is not None else None
                self.decodes += 1
            full = None if text is None else f"{committed} {text}".strip() if committed else text
            if commit and full and self.read_text is not None:
                text_prob = self.read_text(full)
        finally:
            full = None if text is None else f"{committed} {text}".strip() if committed else text
            with utt.cond:  # the result is there before anyone waiting on this decode wakes
                commits = bool(commit and full and end - start > self.cfg.commit_after_s * RATE and end > utt.commit_sample)
                if found is not None and utt.language is None and language is None:  # this pass picked it
                    utt.guess, utt.guessed_on = found, end - start
                    if sure:
                        utt.language = found  # sure on enough speech: decided
                if utt.language is None and (final or commits):
                    utt.language = utt.guess or self.language  # the whole turn (or the committed part) decides
                if utt.language is not None and self.identifies:
                    self.last_language = utt.language
                # the end-of-turn word rules read the words in the language they are in
                hyp = Hypothesis(
                    full, prob, text_prob, language=utt.language or utt.guess or self.language, word_prob=word_prob, word_lead_s=word_lead
                )
                if text is not None or prob is not None:
                    utt.results[end] = hyp
                    utt.ready_at[end] = time.perf_counter()
                    for k in sorted(utt.results)[:-8]:  # only the newest matter
                        del utt.results[k]
                        utt.ready_at.pop(k, None)
                if utt.in_flight == end:
                    utt.in_flight = None
                if commits and full:
                    utt.committed, utt.commit_sample = full, end
                if not utt.closed and full:  # under the lock: a partial never follows the turn's final text
                    self.on_partial(utt, full)
                utt.cond.notify_all()
        return hyp
