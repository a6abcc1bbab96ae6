"""The talk pipeline: listener → (STT → chat model) → TTS → speaker, each stage a worker thread.

- listener: reads frames, runs the VAD (or push-to-talk), hands finished utterances over,
  and fires barge-in when speech starts while the assistant is answering;
- turn worker: transcribes, guards against invented text, streams the reply from the chat
  model and cuts it into chunks for TTS as it is written;
- TTS worker: synthesizes each chunk and queues it on the speaker, which plays from its own
  thread, so recognition, generation, synthesis and playback overlap.
Every worker waits with a timeout and checks the stop event; a turn has its own cancel event.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from voicechat import guard, sentences
from voicechat.engines.base import TextDelta, Usage
from voicechat.errors import StreamCut, VoicechatError
from voicechat.talk import events as ev
from voicechat.vad import Dropped, Segmenter, SpeechStarted, Utterance

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.session import ChatSession

ECHO_TAIL_S = 0.3  # after playback, the room's echo is not the user


@dataclass
class TurnInput:
    source: str  # voice | typed
    text: str = ""
    audio: Any = None
    speech_end: float | None = None  # wall time of the last voiced frame
    end_detected: float | None = None  # wall time the end rule fired


@dataclass
class Turn:
    cancel: threading.Event = field(default_factory=threading.Event)
    chunks: "queue.Queue[str | None]" = field(default_factory=queue.Queue)
    tts_done: threading.Event = field(default_factory=threading.Event)
    synthesized: list[str] = field(default_factory=list)
    first_audio: float | None = None
    started_audio: threading.Event = field(default_factory=threading.Event)


class Pipeline:
    def __init__(self, config: "Config", stt: Any, tts: Any, session: "ChatSession", *, source: Any, sink: Any,
                 emit: Callable[[ev.Event], None], mode: str = "vad", barge_in: bool = False) -> None:
        self.cfg = config
        self.stt, self.tts, self.session = stt, tts, session
        self.source, self.sink = source, sink
        self.emit = emit
        self.mode = mode
        self.barge_in = barge_in
        self.stop = threading.Event()
        self.inputs: "queue.Queue[TurnInput]" = queue.Queue()
        self.turn: Turn | None = None
        self.busy = threading.Event()  # a turn is being answered
        self.recording = threading.Event()  # push-to-talk: the key is down
        self.state = ""
        self.errors: list[str] = []
        self._quiet_until = 0.0
        self._threads: list[threading.Thread] = []
        self._tts_queue: "queue.Queue[Turn | None]" = queue.Queue()

    # control -----------------------------------------------------------------------------
    def start(self) -> None:
        targets = [("turns", self._turn_worker), ("tts", self._tts_worker)]
        if self.source is not None:
            targets.insert(0, ("listener", self._listener))
        for name, target in targets:
            t = threading.Thread(target=self._guarded(target), name=f"talk-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self._set_state("listening" if self.source is not None and self.mode == "vad" else "idle")

    def shutdown(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self.interrupt()
        self._tts_queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def submit_text(self, text: str) -> None:
        self.inputs.put(TurnInput("typed", text=text, end_detected=time.perf_counter()))

    def interrupt(self) -> None:
        """Stop the current reply now (barge-in, /clear, Ctrl-C)."""
        turn = self.turn
        if turn is not None and not turn.cancel.is_set():
            turn.cancel.set()
            stop = getattr(self.sink, "stop", None)
            if stop:
                stop()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.recording.clear()
        self.emit(ev.Notice(f"mode: {'push-to-talk (space to start/stop)' if mode == 'ptt' else 'voice activity detection'}"))
        self._set_state("listening" if mode == "vad" else "idle")

    @property
    def idle(self) -> bool:
        return not self.busy.is_set() and self.inputs.empty()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.emit(ev.Status(state))

    def _guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except VoicechatError as e:
                self.errors.append(str(e))
                self.emit(ev.Error(str(e)))
                self.stop.set()
            except Exception as e:  # a worker must never die silently and leave the user in silence
                self.errors.append(f"{type(e).__name__}: {e}")
                self.emit(ev.Error(f"internal error in {threading.current_thread().name}: {type(e).__name__}: {e}"))
                self.stop.set()

        return run

    # listener ----------------------------------------------------------------------------
    def _listener(self) -> None:
        seg = Segmenter(self.cfg.listen)
        frame_s = self.cfg.listen.frame_ms / 1000
        ptt_frames: list[bytes] = []
        fast = getattr(self.source, "fast", False)
        pause = getattr(self.source, "pause", None)
        last_voiced_at = 0.0
        ignoring = False
        while not self.stop.is_set():
            if fast and pause is not None:
                # a file read as fast as possible: hold it while a turn is answered
                if self.busy.is_set() or not self.inputs.empty():
                    pause.set()
                else:
                    pause.clear()
            frame = self.source.read(0.1)
            if frame is None:
                if self.source.exhausted:
                    if self.mode == "vad":
                        self._handle(seg.flush(), seg, last_voiced_at, frame_s)
                    return
                continue
            now = time.perf_counter()
            if self.mode == "ptt":
                if self.recording.is_set():
                    ptt_frames.append(frame)
                elif ptt_frames:
                    import numpy as np

                    audio = np.frombuffer(b"".join(ptt_frames), dtype="<i2").astype(np.float32) / 32768.0
                    ptt_frames = []
                    self.inputs.put(TurnInput("voice", audio=audio, speech_end=now, end_detected=now))
                continue
            answering = self.busy.is_set() or not self.inputs.empty()
            if answering and not self.barge_in:
                seg.reset()  # the assistant's own voice is not the user: ignore while it answers
                if hasattr(self.sink, "played"):  # a real speaker: its echo lingers in the room
                    self._quiet_until = now + ECHO_TAIL_S
                ignoring = True
                continue
            if now < self._quiet_until:
                seg.reset()
                continue
            if ignoring:
                ignoring = False
                self._set_state("listening")
            if seg.is_voiced(frame):
                last_voiced_at = now
            for event in seg.push(frame):
                if isinstance(event, SpeechStarted):
                    if answering and self.barge_in:
                        self.emit(ev.Notice("barge-in: stopping the reply"))
                        self.interrupt()
                    if not self.busy.is_set():
                        self._set_state("hearing")
                else:
                    self._handle(event, seg, last_voiced_at, frame_s)

    def _handle(self, event: Any, seg: Segmenter, last_voiced_at: float, frame_s: float) -> None:
        if isinstance(event, Utterance):
            now = time.perf_counter()
            speech_end = last_voiced_at or now
            if getattr(self.source, "fast", False):  # file time, not wall time
                speech_end = now - (event.end_frame - event.last_voiced_frame) * frame_s
            self.inputs.put(TurnInput("voice", audio=event.audio, speech_end=speech_end, end_detected=now))
        elif isinstance(event, Dropped):
            self.emit(ev.Dropped(event.reason))
            if not self.busy.is_set():
                self._set_state("listening")

    # turn worker -------------------------------------------------------------------------
    def _turn_worker(self) -> None:
        while not self.stop.is_set():
            try:
                item = self.inputs.get(timeout=0.1)
            except queue.Empty:
                continue
            self.busy.set()
            try:
                self._answer(item)
            finally:
                self.turn = None
                self.busy.clear()
                if not self.stop.is_set() and not (self.mode == "vad" and self.source is not None and not self.barge_in):
                    # (with VAD, the listener says "listening" once it really listens again)
                    self._set_state("listening" if self.mode == "vad" and self.source is not None else "idle")

    def _transcribe(self, item: TurnInput) -> str:
        audio = item.audio
        if guard.is_silence(audio):
            return ""
        segments = guard.filter_segments(self.stt.transcribe(audio), audio, 16000, self.cfg.stt.no_speech_threshold)
        return " ".join(s.text.strip() for s in segments).strip()

    def _answer(self, item: TurnInput) -> None:
        lat: dict[str, float] = {}
        t0 = item.end_detected or time.perf_counter()
        if item.source == "voice":
            self._set_state("thinking")
            text = self._transcribe(item)
            lat["stt"] = time.perf_counter() - t0
            if not text:
                self.emit(ev.Dropped("no speech in the utterance"))
                return
        else:
            text = item.text
        self.emit(ev.UserText(text, item.source))
        self._set_state("thinking")
        turn = Turn()
        self.turn = turn
        reset = getattr(self.sink, "reset", None)
        if reset:
            reset()
        self._tts_queue.put(turn)
        chunker = sentences.Chunker(self.cfg.tts.first_chunk_words)
        reply: list[str] = []
        usage: Usage | None = None
        interrupted = False
        llm_start = time.perf_counter()
        stream = self.session.ask(text)
        try:
            for event in stream:
                if turn.cancel.is_set() or self.stop.is_set():
                    interrupted = True
                    break
                if isinstance(event, TextDelta):
                    if not reply:
                        lat["first_token"] = time.perf_counter() - llm_start
                    reply.append(event.text)
                    self.emit(ev.ReplyDelta(event.text))
                    for chunk in chunker.feed(sentences.clean(event.text)):
                        first = "first_chunk" not in lat
                        if first:
                            lat["first_chunk"] = time.perf_counter() - t0
                        turn.chunks.put(chunk)
                        if first:
                            self._wait_first_audio(turn)
                else:
                    usage = event
        except StreamCut as e:
            interrupted = True
            reply = [e.partial]
            self.emit(ev.Error(str(e)))
        except VoicechatError as e:
            self.emit(ev.Error(str(e)))
            turn.chunks.put(None)
            turn.cancel.set()
            return
        finally:
            stream.close()
        if not interrupted:
            for chunk in chunker.flush():
                if "first_chunk" not in lat:
                    lat["first_chunk"] = time.perf_counter() - t0
                turn.chunks.put(chunk)
        turn.chunks.put(None)
        while not turn.tts_done.wait(0.05):
            if self.stop.is_set():
                self.interrupt()
        if turn.cancel.is_set():
            interrupted = True
        played = self._played_text(turn, interrupted, "".join(reply))
        if turn.first_audio is not None:
            lat["first_audio"] = turn.first_audio - t0
            if item.speech_end is not None:
                lat["voice_to_voice"] = turn.first_audio - item.speech_end
                self.session.totals.latencies.append(lat["voice_to_voice"])
            elif item.source == "typed":
                self.session.totals.latencies.append(lat["first_audio"])
        if item.speech_end is not None and item.end_detected is not None:
            lat["endpoint"] = item.end_detected - item.speech_end
        lat = {k: round(v, 3) for k, v in lat.items()}
        self.emit(ev.ReplyDone(played, interrupted))
        if usage is not None:
            self.emit(ev.TurnStats(lat, usage.prompt_tokens, usage.completion_tokens, usage.estimated))
        else:
            self.emit(ev.TurnStats(lat))
        self.session.record(text, played, usage, interrupted=interrupted, latency=lat)

    def _wait_first_audio(self, turn: Turn) -> None:
        """First audio first: hold the model (a local one shares the CPU) until the first chunk sounds.

        The rest of the reply is written while that chunk plays, which takes longer than writing it.
        """
        deadline = time.monotonic() + 3.0
        while not turn.started_audio.wait(0.02):
            if turn.cancel.is_set() or self.stop.is_set() or turn.tts_done.is_set() or time.monotonic() > deadline:
                return

    def _played_text(self, turn: Turn, interrupted: bool, written: str) -> str:
        if self.sink is None:
            return written.strip()
        played = getattr(self.sink, "played", None)
        if played is not None:  # a speaker: only what actually came out
            return played.text()
        return " ".join(turn.synthesized).strip() if interrupted else written.strip()

    # TTS worker --------------------------------------------------------------------------
    def _tts_worker(self) -> None:
        while not self.stop.is_set():
            try:
                turn = self._tts_queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if turn is None:
                return
            try:
                self._speak(turn)
            finally:
                turn.tts_done.set()

    def _speak(self, turn: Turn) -> None:
        spoke = False
        while True:
            try:
                chunk = turn.chunks.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            if chunk is None:
                break
            if turn.cancel.is_set() or self.sink is None:
                continue
            for audio in self.tts.synthesize(chunk):
                if turn.cancel.is_set():
                    break
                if not spoke:
                    self._set_state("speaking")
                    spoke = True
                self.sink.play(audio)
                if turn.first_audio is None:
                    turn.first_audio = getattr(self.sink, "first_audio_at", None) or time.perf_counter()
                    turn.started_audio.set()
            turn.synthesized.append(chunk)
        if spoke and not turn.cancel.is_set():
            self.sink.drain()
            first = getattr(self.sink, "first_audio_at", None)
            if first is not None:
                turn.first_audio = first
