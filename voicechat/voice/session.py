"""VoiceSession: one conversation by voice, the same for every front end.

    session = VoiceSession(config, stt=stt, tts=tts, conversation=chat, source=mic, sink=speaker)
    session.subscribe(show)          # typed events: voicechat.voice.events
    session.start()
    session.send_text("hello")       # or speak into the source
    session.command("/clear")        # the shared slash commands
    session.interrupt()              # stop the reply now
    session.wait_done(); session.close()

Stages (each a thread with a stop event and timeouts): the listener (source -> user turns),
the transcriber (transcripts while the user speaks), the responder (user turn -> reply text
-> chunks, and the record of the turn), and speech (chunks -> audio -> sink). Interrupts do
not queue behind data: they set the reply's cancel event and silence the sink at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from voicechat.conversation import slash
from voicechat.errors import VoicechatError
from voicechat.voice import events as ev
from voicechat.voice.endpoint import MeaningPolicy, SilencePolicy, TurnPolicy
from voicechat.voice.listener import Listener, UserTurn
from voicechat.voice.reply import Responder, Speech
from voicechat.voice.sinks import TextSink
from voicechat.voice.transcriber import Transcriber

if TYPE_CHECKING:
    import numpy as np

    from voicechat.config import Config
    from voicechat.conversation.chat import Conversation
    from voicechat.engines.base import SpeechToText, TextToSpeech
    from voicechat.engines.smart_turn import SmartTurn
    from voicechat.voice.io import Sink, Source
    from voicechat.voice.wake import WakeGate


def incremental(config: Config, stt: SpeechToText | None) -> bool:
    """Transcribe while the user speaks: the engine can (a class capability) and the config wants it."""
    return stt is not None and stt.incremental and config.turn.incremental and config.turn.detector != "silence"


def turn_policy(config: Config, stt: SpeechToText | None, turn_model: SmartTurn | None) -> TurnPolicy:
    """The configured way to judge the end of a turn, limited to what the engines can do."""
    if config.turn.detector == "silence" or (not incremental(config, stt) and turn_model is None):
        return SilencePolicy(config.listen.end_silence_ms)
    policy = MeaningPolicy(config.turn, audio_model=turn_model is not None, languages=list(config.listen.languages))
    policy.uses_transcript = incremental(config, stt)
    return policy


class VoiceSession:
    def __init__(
        self,
        config: Config,
        *,
        conversation: Conversation,
        stt: SpeechToText | None = None,
        tts: TextToSpeech | None = None,
        source: Source | None = None,
        sink: Sink | None = None,
        turn_model: SmartTurn | None = None,
        ptt_key: bool = False,
        wake: WakeGate | None = None,
    ) -> None:
        self.cfg = config
        self.ptt_key = ptt_key  # the front end has a push-to-talk key
        self.conversation = conversation
        conversation.on_notice = lambda message: self.emit(ev.Notice(message))  # (advice the conversation gives once)
        self.source = source
        self.sink: Sink = sink if sink is not None and tts is not None else TextSink()
        self.state = ""
        self.errors: list[str] = []
        self._subscribers: list[Callable[[ev.Event], None]] = []
        self._stop = threading.Event()
        self._quit = threading.Event()
        self._inputs: queue.Queue[UserTurn] = queue.Queue()
        self._pending = 0  # turns delivered and not yet answered
        self._pending_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.policy = turn_policy(config, stt, turn_model)
        self.transcriber = (
            Transcriber(
                stt,
                config.turn,
                config.stt.language,
                incremental=incremental(config, stt),
                turn_model=turn_model if config.turn.detector != "silence" else None,
                on_error=self._fail,
                on_partial=self._partial,
                read_text=self._read_text if config.turn.language_model else None,
            )
            if stt is not None
            else None
        )
        self.speech = Speech(tts, self.sink, self._set_state)
        self.responder = Responder(
            config, conversation, self.transcriber, self.speech, self.sink, emit=self.emit, set_state=self._set_state
        )
        # a reply drafted in a pause the silence may end (voicechat.voice.draft); never with tools (their calls act),
        # nor where the front end decides on each turn as its text is read (the Realtime API's responses)
        self.drafts = config.turn.draft_reply and conversation.tools is None
        self.listener: Listener | None = None
        if source is not None and self.transcriber is not None:
            self.listener = Listener(
                config,
                source,
                self.policy,
                self.transcriber,
                emit=self.emit,
                deliver=self._deliver,
                set_state=self._set_state,
                answering=self._answering,
                on_barge_in=self._barged_in,
                on_hold=self.sink.hold,
                pausable=getattr(self.sink, "pausable", False),
                pause_for_echo=getattr(self.sink, "pause_for_echo", True),
                echo=self.sink.audible,
                wake=wake,
                said=self.speech.said if config.listen.barge_in and self.sink.audible else None,
                draft=self._draft,
                confirm=self._confirm,
            )

    def _partial(self, utt: object, text: str) -> None:
        """A partial transcript, shown unless it is of speech over a reply not yet known to be the user's turn (a
        backchannel, a cough or the reply's echo is then forgotten, and its words would stay on screen)."""
        listener = self.listener
        if listener is None or not listener.barge.undecided:
            self.emit(ev.Partial(text))

    # events ------------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[ev.Event], None]) -> None:
        self._subscribers.append(fn)

    def emit(self, event: ev.Event) -> None:
        for fn in list(self._subscribers):
            fn(event)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.emit(ev.Status(state))

    # lifecycle ---------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Get every engine past its first-use costs (and the system prompt into a local model's cache)."""
        from concurrent.futures import ThreadPoolExecutor

        jobs: list[Callable[[], None]] = [lambda: self.conversation.prefill("Hello.")]
        if self.transcriber is not None:
            jobs.append(self.transcriber.warm_up)
        if self.sink.speaks:
            jobs.append(self.speech.warm_up)
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="warm") as pool:
            for f in [pool.submit(job) for job in jobs]:
                f.result()

    def start(self) -> None:
        workers: list[tuple[str, Callable[[], None]]] = [("responder", self._respond), ("speech", lambda: self.speech.run(self._stop))]
        listener = self.listener
        if listener is not None:
            workers.insert(0, ("listener", lambda: listener.run(self._stop)))
        self._set_state(self._resting_state())
        if self.transcriber is not None:
            self.transcriber.start()
        for name, target in workers:
            t = threading.Thread(target=self._guarded(target), name=f"voice-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop every stage and wait for them (bounded). False if one is still running (inside an engine call):
        then the engines must not be closed under it."""
        self._stop.set()
        self.interrupt()
        self.speech.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if self.transcriber is not None:
            self.transcriber.close(max(0.1, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads) and (self.transcriber is None or not self.transcriber.alive)

    @property
    def pending(self) -> int:
        """Turns delivered and not yet answered."""
        with self._pending_lock:
            return self._pending

    @property
    def idle(self) -> bool:
        """Nothing being answered and nothing waiting."""
        with self._pending_lock:
            return self._pending == 0

    @property
    def lost(self) -> str | None:
        """Never: the conversation runs in this process (a remote session can lose its server)."""
        return None

    @property
    def done(self) -> bool:
        """Quit was asked, a stage failed, or the source is used up and the last reply is over."""
        if self._quit.is_set() or self._stop.is_set():
            return True
        return self.source is not None and self.source.exhausted and self.idle and not self._listener_alive()

    def _listener_alive(self) -> bool:
        return any(t.name == "voice-listener" and t.is_alive() for t in self._threads)

    def wait_done(self, poll: float = 0.05, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(poll)
        return True

    def _guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception as e:  # a stage must never die silently and leave the user in silence
                self._fail(e)

        return run

    def _fail(self, e: BaseException) -> None:
        """A stage failed: say so once and end the session."""
        if isinstance(e, VoicechatError):
            message = str(e)
        else:
            message = f"internal error in {threading.current_thread().name}: {type(e).__name__}: {e}"
        self.errors.append(message)
        self.emit(ev.Error(message))
        self._stop.set()

    # input -------------------------------------------------------------------------------
    def send_text(self, text: str) -> None:
        """A typed message: it interrupts the reply in progress when barge-in is on, else waits its turn."""
        if self.cfg.listen.barge_in:
            self.interrupt()
        self._deliver(UserTurn("typed", text=text))

    def send_audio(self, audio: np.ndarray) -> None:
        """A finished spoken turn (16 kHz float32 mono) whose end the front end decided (a realtime client's
        commit): transcribed and answered as a turn the listener ended would be."""
        if self.cfg.listen.barge_in:
            self.interrupt()
        now = time.perf_counter()
        self._deliver(UserTurn("voice", audio=audio, speech_end=now, end_detected=now))

    def command(self, line: str) -> slash.Outcome:
        outcome = slash.run(line, self)
        if outcome.quit:
            self._quit.set()
        return outcome

    def interrupt(self) -> None:
        """Stop the reply in progress now (barge-in, /clear, Ctrl-C)."""
        self.responder.interrupt()

    def clear(self) -> None:
        self.interrupt()
        self.conversation.clear()

    modes = True  # /mode is offered (it says so when there is no microphone)

    @property
    def mode(self) -> str:
        return self.listener.mode if self.listener is not None else "text"

    def set_mode(self, mode: str) -> None:
        if mode not in slash.MODES:
            raise VoicechatError(f"unknown mode {str(mode)[:20]!r}; use {' or '.join(slash.MODES)}")
        if self.listener is None:
            raise VoicechatError("no microphone: only typed messages")
        self.listener.set_mode(mode)
        self._set_state(self._resting_state())

    def toggle_mode(self) -> str:
        if self.listener is None:
            return "no microphone: only typed messages"
        if self.listener.mode == "vad" and not self.ptt_key:
            return "push-to-talk needs a terminal"
        self.set_mode("ptt" if self.listener.mode == "vad" else "vad")
        return f"mode: {'push-to-talk (space to start/stop)' if self.mode == 'ptt' else 'voice activity detection'}"

    def toggle_recording(self) -> None:
        """Push-to-talk: the key starts recording (and stops a reply), or ends the recording."""
        if self.listener is None:
            return
        if self.listener.toggle_recording():
            self.interrupt()
            self._set_state("recording")
        else:
            self._set_state("idle")

    def tokens_line(self) -> str:
        return self.conversation.tokens_line("voice-to-voice")

    def summary(self) -> ev.Summary:
        from voicechat.conversation.chat import percentile

        t = self.conversation.totals
        return ev.Summary(
            t.turns,
            percentile(t.latencies, 0.5),
            percentile(t.latencies, 0.95),
            t.prompt_tokens,
            t.completion_tokens,
            t.estimated,
            t.cost,
            self.conversation.session_id,
        )

    # stages ------------------------------------------------------------------------------
    def _answering(self) -> bool:
        return self.responder.answers and not self.idle  # (turns only transcribed are never spoken over)

    def _read_text(self, text: str) -> float | None:
        """At a pause: the chat model's reading of the words so far (None while it answers, or cannot)."""
        if self._answering():
            return None
        try:
            return self.conversation.end_of_turn_probability(text)
        except Exception as e:  # a reading that failed costs the reading only
            self.emit(ev.Notice(f"the chat model could not judge the end of the turn: {e}"))
            return None

    def _barged_in(self) -> None:
        """Speech over a reply (or over a turn still being answered) that counts: it stops the reply."""
        self.emit(ev.Speech("started"))
        self.interrupt()

    def _deliver(self, item: UserTurn) -> None:
        if item.source == "voice":
            self.emit(ev.Speech("ended"))
        if self.source is not None:
            self.source.hold(True)
        with self._pending_lock:
            self._pending += 1
        self._inputs.put(item)

    def _draft(self, item: UserTurn) -> bool:
        """A turn the silence may end, to be answered held back (voicechat.voice.draft): not counted as pending (the
        listener goes on listening as before) until it is confirmed. Never with tools: their calls act."""
        if not self.drafts or not self.responder.answers or not self.idle:
            return False
        self._inputs.put(item)
        return True

    def _confirm(self, item: UserTurn) -> bool:
        """The silence ended the drafted turn: it is delivered, and its reply shown and played. False: the draft was
        dropped meanwhile (an interrupt): the listener delivers the turn as any other."""

        def ended() -> None:
            self.emit(ev.Speech("ended"))
            if self.source is not None:
                self.source.hold(True)
            with self._pending_lock:
                self._pending += 1

        assert item.draft is not None
        return item.draft.confirm(ended)

    def _resting_state(self) -> str:
        if self.listener is not None and self.listener.wake is not None and not self.listener.wake.awake:
            return "asleep"
        return "listening" if self.listener is not None and self.listener.mode == "vad" else "idle"

    def _respond(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._inputs.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self.responder.answer(item, self._stop)
            finally:
                if item.draft is None or item.draft.wait(self._stop):  # (a dropped draft was never counted)
                    self._answered()

    def _answered(self) -> None:
        with self._pending_lock:
            self._pending -= 1
            rest = self._pending
        if rest == 0:
            if self.source is not None:
                self.source.hold(False)
            if not self._stop.is_set() and not (self.listener is not None and self.listener.mode == "vad" and not self.cfg.listen.barge_in):
                self._set_state(self._resting_state())  # (a VAD listener says "listening" once it listens again)
