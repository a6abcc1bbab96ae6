"""The answering stages: a user turn in, a spoken reply out.

- :class:`Responder` turns a user turn into text (the transcript, ready or finished now),
  streams the chat model's reply, cuts it into speakable chunks as it is written, and records
  the turn with what was actually heard;
- :class:`Speech` synthesizes each chunk and plays it on the sink, so generation, synthesis
  and playback overlap.
They share one :class:`SpokenReply` per turn: its chunk queue and the cancel event that an interrupt sets.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from voicechat import languages, sentences
from voicechat.voice import events as ev
from voicechat.voice.language_voices import LanguageVoices
from voicechat.voice.self_echo import is_stop
from voicechat.voice.timing import TurnTiming

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.conversation.chat import Conversation
    from voicechat.engines.base import AudioChunk, TextToSpeech
    from voicechat.tools.base import ToolEvent
    from voicechat.voice.draft import Draft
    from voicechat.voice.io import Sink
    from voicechat.voice.listener import UserTurn
    from voicechat.voice.transcriber import Transcriber

FIRST_AUDIO_WAIT_S = 3.0
SAID_CHUNKS = 8  # Speech.said(): the last this many chunks (a reply's current sentences and the one before's end)


def _call(fn: Callable[..., object], *args: object) -> None:
    fn(*args)


def _set_event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass
class SpokenReply:
    cancel: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=_set_event)  # clear: a draft's, synthesized but held until confirmed
    draft: Draft | None = None  # the draft it answers (an interrupt drops it while undecided)
    chunks: queue.Queue[str | None] = field(default_factory=queue.Queue)
    done: threading.Event = field(default_factory=threading.Event)  # speech finished (or gave up)
    sounding: threading.Event = field(default_factory=threading.Event)  # the first chunk reached the sink
    synthesized: list[str] = field(default_factory=list)
    voice: TextToSpeech | None = None  # the voice of the reply's language (None: the session's own)


class Speech:
    """Synthesize and play each reply's chunks, in order."""

    def __init__(self, tts: TextToSpeech | None, sink: Sink, set_state: Callable[[str], None]) -> None:
        """``tts`` None: a session without voice output (its sink does not speak)."""
        self.tts, self.sink, self.set_state = tts, sink, set_state
        self.replies: queue.Queue[SpokenReply | None] = queue.Queue()
        self._said: collections.deque[str] = collections.deque(maxlen=SAID_CHUNKS)
        self.voices: LanguageVoices | None = None  # a voice per language (set by the responder); loaded ones closed at the end
        self.warm_languages: list[str] = []  # the declared languages, whose voices load at warm-up

    def said(self) -> str:
        """The text of the last chunks spoken (or being spoken): what the room may still echo."""
        return " ".join(list(self._said))

    def warm_up(self) -> None:
        if self.tts is not None:
            self.tts.warm_up()
        if self.voices is not None and len(self.warm_languages) > 1:
            self.voices.warm_up(self.warm_languages)

    def close(self) -> None:
        self.replies.put(None)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    reply = self.replies.get(timeout=0.1)
                except queue.Empty:
                    continue
                if reply is None:
                    return
                try:
                    self._speak(reply, stop)
                finally:
                    reply.done.set()
        finally:
            while True:  # nobody waits forever on a reply that will never be spoken
                try:
                    left = self.replies.get_nowait()
                except queue.Empty:
                    break
                if left is not None:
                    left.done.set()
            if self.voices is not None:
                self.voices.close()  # (this thread is the one that speaks with them)

    def _speak(self, reply: SpokenReply, stop: threading.Event) -> None:
        held = not reply.go.is_set()  # a draft: its first words are synthesized now, played once it is confirmed
        if not held:
            self.sink.begin()
        spoke = False
        while True:
            try:
                chunk = reply.chunks.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if chunk is None:
                break
            tts = reply.voice or self.tts
            if reply.cancel.is_set() or not self.sink.speaks or tts is None:
                continue
            audios: Iterable[AudioChunk] = tts.synthesize(chunk)
            if held:
                audios = list(audios)
                if not self._wait_go(reply, stop):
                    continue
                held = False
                self.sink.begin()
            self._said.append(chunk)
            for audio in audios:
                if reply.cancel.is_set():
                    break
                if not spoke:
                    self.set_state("speaking")
                    spoke = True
                self.sink.play(audio)
                reply.sounding.set()
            reply.synthesized.append(chunk)
        if held and reply.go.is_set():
            self.sink.begin()  # a confirmed draft that played nothing: it reports that, not the reply before
        if spoke and not reply.cancel.is_set():
            self.sink.drain()

    @staticmethod
    def _wait_go(reply: SpokenReply, stop: threading.Event) -> bool:
        """A draft's reply: until it is confirmed (True) or dropped."""
        while not reply.go.wait(0.02):
            if reply.cancel.is_set() or stop.is_set():
                return False
        return not reply.cancel.is_set()


class Responder:
    """Answer one user turn: transcript, streamed reply, chunks for speech, the record of the turn."""

    def __init__(
        self,
        config: Config,
        conversation: Conversation,
        transcriber: Transcriber | None,
        speech: Speech,
        sink: Sink,
        *,
        emit: Callable[[ev.Event], None],
        set_state: Callable[[str], None],
    ) -> None:
        self.cfg = config
        self.conversation, self.transcriber, self.speech, self.sink = conversation, transcriber, speech, sink
        self.emit, self.set_state = emit, set_state
        self.current: SpokenReply | None = None
        self.answers = True  # False: turns are transcribed and shown, not answered (a transcription session)
        self.declared = [c for c in dict.fromkeys(languages.base(x) for x in config.listen.languages) if c]
        self.last_language: str | None = None  # the language of the last turn answered (a typed text's guess falls back to it)
        self.system_prompt = conversation.memory.system_prompt  # the language line of each turn goes after it
        self._noticed: set[str] = set()
        self._held: Callable[..., None] = _call  # run now, or once the draft being answered is confirmed
        if speech.tts is not None and speech.voices is None:
            speech.voices = LanguageVoices(config, speech.tts)
            speech.warm_languages = list(self.declared)

    def transcript(self, item: UserTurn) -> tuple[str, float]:
        """The turn's text, and when it was ready (before the turn ended, when transcribed during the pause)."""
        assert self.transcriber is not None and item.audio is not None
        if item.draft is not None and item.utt is not None:  # the pause's transcript (the listener closes the utterance)
            utt = item.utt
            item.language = item.language or utt.language or utt.guess or self.transcriber.language
            return item.text, utt.ready_at.get(len(item.audio), time.perf_counter())
        if item.utt is not None:
            text, ready = self.transcriber.final(item.utt, item.audio)
            item.language = item.language or item.utt.language  # the language the turn was identified in
            return text, ready
        turn = self.transcriber.transcribe_turn(item.audio)
        item.language = item.language or turn.language
        return turn.text, time.perf_counter()

    def answer(self, item: UserTurn, stop: threading.Event) -> None:
        reply = SpokenReply()
        draft = item.draft
        emit, set_state = self.emit, self.set_state
        if draft is not None:  # answered before the turn is known to be over: nothing shows until it is confirmed
            if not draft.take(reply.cancel):
                return
            reply.go, reply.draft = draft.go, draft
            self.emit = lambda event: draft.call(emit, event)
            self.set_state = lambda state: draft.call(set_state, state)
            self._held = draft.call
        self.current = reply  # an interrupt from here on (even during transcription) cancels this turn
        try:
            self._answer(item, reply, stop)
        finally:
            self.current = None
            self.emit, self.set_state = emit, set_state
            self._held = _call

    def _answer(self, item: UserTurn, reply: SpokenReply, stop: threading.Event) -> None:
        timing = TurnTiming()
        draft = item.draft
        ready: float | None = None
        chunk_at: float | None = None
        if item.source == "voice":
            self.set_state("thinking")
            text, ready = self.transcript(item)
            if not text:
                self.emit(ev.Dropped("no speech in the utterance"))
                return
            if item.cut_in and is_stop(text, ""):  # "Stop." over a reply: it stopped; nothing to answer
                self.emit(ev.Notice(f"stopped ({text.strip()[:40]!r}): listening"))
                return
        else:
            text = item.text
        if reply.cancel.is_set() or stop.is_set():
            self.emit(ev.Dropped("interrupted before the reply began"))
            return  # nothing was answered: nothing to remember
        language = self.language_of(item, text)
        self.emit(ev.UserText(text, item.source, language))
        if not self.answers:
            return
        self.set_state("thinking")
        asked = self._ask_in(text, language)
        reply.voice = self._voice(language)
        self.speech.replies.put(reply)
        chunker = sentences.Chunker(self.cfg.tts.first_chunk_words, language=language)

        def on_delta(delta: str) -> None:
            nonlocal chunk_at
            self.emit(ev.ReplyDelta(delta))
            for chunk in chunker.feed(sentences.clean(delta)):
                first = chunk_at is None
                if first:
                    chunk_at = time.perf_counter()
                reply.chunks.put(chunk)
                if first and (draft is None or draft.decided):  # (a draft's model is not held: the model may be shared)
                    self._first_audio_first(reply, stop)

        def on_tool(event: ToolEvent) -> None:
            if event.phase == "call":
                self.emit(ev.ToolCalled(event.name, event.arguments))
            elif event.phase == "slow" and not reply.cancel.is_set():
                filler = languages.filler(self.cfg.tools.filler, language).strip()
                if filler:  # a slow call is covered by a short spoken line
                    for chunk in chunker.flush():
                        reply.chunks.put(chunk)
                    reply.chunks.put(filler)
            elif event.result is not None:
                r = event.result
                self.emit(ev.ToolDone(r.name, r.text, r.error, r.seconds))  # a failure is shown as one line

        result = self.conversation.stream_reply(asked, on_delta, lambda: reply.cancel.is_set() or stop.is_set(), on_tool)
        timing.first_token = result.first_token
        if result.error:
            self.emit(ev.Error(result.error))
        if result.failed:
            reply.cancel.set()
            reply.chunks.put(None)
            return
        if not result.text and not result.interrupted:
            self.emit(ev.Notice(self.conversation.empty_reply_note(text, result.usage)))
        if not result.interrupted:
            for chunk in chunker.flush():
                chunk_at = chunk_at or time.perf_counter()
                reply.chunks.put(chunk)
        if draft is not None and not draft.wait(stop):
            reply.cancel.set()  # dropped: nothing of it was heard or is kept
            reply.chunks.put(None)
            return
        reply.chunks.put(None)
        given_up = None
        while not reply.done.wait(0.05):
            if stop.is_set():
                reply.cancel.set()
                self.sink.stop()
                given_up = given_up or time.monotonic() + 2.0
                if time.monotonic() > given_up:
                    break  # speech has stopped for good
        interrupted = result.interrupted or reply.cancel.is_set() or self.sink.playback().cut
        heard = self._heard(reply, interrupted, result.text)
        t0 = item.end_detected  # (a draft's: when it was confirmed)
        if item.speech_end is not None:
            timing.endpoint = t0 - item.speech_end
        if ready is not None:
            timing.stt = max(0.0, ready - t0)
            if item.speech_end is not None:
                timing.transcript = ready - item.speech_end
        if chunk_at is not None:
            timing.first_chunk = max(0.0, chunk_at - t0)
        first_sample = self.sink.playback().first_sample_at
        if first_sample is not None:
            timing.first_audio = first_sample - t0
            if item.speech_end is not None:
                timing.voice_to_voice = first_sample - item.speech_end
        self.emit(ev.ReplyDone(heard, interrupted))
        usage = result.usage
        self.emit(
            ev.TurnStats(
                timing, usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None, bool(usage and usage.estimated)
            )
        )
        latency = timing.voice_to_voice if timing.voice_to_voice is not None else timing.first_audio
        if latency is not None:
            self.conversation.totals.latencies.append(latency)
        self.conversation.record(
            text, heard, usage, interrupted=interrupted, latency=timing.to_dict(), tools=result.tools, language=language
        )

    def language_of(self, item: UserTurn, text: str) -> str | None:
        """The turn's language: the one its speech was identified in, else (typed, or not identified) the only
        one declared or a guess from its words among those declared, else the last turn's (None: not known)."""
        found = languages.base(item.language) or languages.turn_language(text, self.declared, self.last_language)
        self.last_language = found or self.last_language
        return found

    def _ask_in(self, text: str, language: str | None) -> str:
        """Ask for the reply in the turn's language (its line after the system prompt); the user's text as the
        model is to read it."""
        memory = self.conversation.memory
        memory.system_prompt = languages.with_prompt_line(self.system_prompt, language, self.declared, self.cfg.llm.language_prompts)
        return text

    def _voice(self, language: str | None) -> TextToSpeech | None:
        """The voice of the turn's language; a language without its own voice is said once, as a notice."""
        voices = self.speech.voices
        if voices is None or language is None or not self.sink.speaks:
            return None
        choice = voices.choose(language)
        if choice is None:
            return None
        said = choice.notice or (
            None if choice.engine is self.speech.tts else f"{languages.name(language)} replies: {choice.engine.name} voice {choice.label}"
        )
        if said and said not in self._noticed:  # once each: which voice speaks a language, or why none of its own does
            self._held(self._noticed.add, said)  # (a dropped draft's notice was not seen)
            self.emit(ev.Notice(said))
        return choice.engine

    def _first_audio_first(self, reply: SpokenReply, stop: threading.Event) -> None:
        """Hold the model (a local one shares the CPU with synthesis) until the first chunk sounds.

        The rest of the reply is written while that chunk plays, which takes longer than writing it.
        """
        if not self.sink.speaks:
            return
        deadline = time.monotonic() + FIRST_AUDIO_WAIT_S
        while not reply.sounding.wait(0.02):
            if reply.cancel.is_set() or stop.is_set() or reply.done.is_set() or time.monotonic() > deadline:
                return

    def _heard(self, reply: SpokenReply, interrupted: bool, written: str) -> str:
        if self.sink.speaks:
            return self.sink.playback().text  # only what actually came out
        return " ".join(reply.synthesized).strip() if interrupted and reply.synthesized else written

    def interrupt(self) -> bool:
        """Stop the turn in progress now (barge-in, /clear, a new typed message). True if there was one."""
        reply = self.current
        if reply is None or reply.cancel.is_set():
            return False
        if reply.draft is not None and reply.draft.drop():
            return False  # a draft not yet confirmed: dropped unheard (its turn is answered in full once it ends)
        reply.cancel.set()
        self.sink.stop()
        return True
