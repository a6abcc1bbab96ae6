"""OpenAI Realtime (GA) events from a :class:`VoiceSession`'s typed events, and the session's configuration.

No engine, socket or thread here: :class:`Translator` turns each session event (and each chunk of reply
audio) into the realtime server events a client expects, in order, with ids that refer to each other;
:func:`apply_update` checks a client's ``session.update`` against what this server can do. The connection
(:mod:`voicechat.serve.realtime`) feeds one and sends what it returns.

Mapping (docs/realtime.md has the table):
- ``Speech("started")`` -> ``input_audio_buffer.speech_started``;
- ``Speech("ended")`` (the listener ended the turn) -> ``speech_stopped``, ``committed``,
  ``conversation.item.added`` (the user's audio item);
- ``UserText`` -> ``conversation.item.input_audio_transcription.completed`` (with the turn's language in
  ``languages``, as the API reports a detected one) and ``conversation.item.done``
  for a spoken turn, then the response: ``response.created``, ``response.output_item.added``,
  ``conversation.item.added``, ``response.content_part.added``;
- ``ReplyDelta`` -> ``response.output_audio_transcript.delta`` (audio) or ``response.output_text.delta`` (text);
- reply audio -> ``response.output_audio.delta`` (base64 PCM16, 24 kHz);
- ``ReplyDone`` -> the ``.done`` events of the part, the item and the conversation item;
- ``TurnStats`` -> ``response.done`` with usage; ``Error`` -> ``error`` and a failed ``response.done``;
  ``Dropped`` -> the open speech item ends without a turn, an open response is ``cancelled``.
"""

from __future__ import annotations

import base64
import collections
import secrets
from dataclasses import dataclass, field
from typing import Any

from voicechat import stt_languages
from voicechat.errors import VoicechatError
from voicechat.voice import events as ev

RATE = 24000  # audio/pcm as the API defines it
MODALITIES = ("audio", "text")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class UpdateRefused(ValueError):
    """A session.update this server cannot honour: the message says which field and what it takes."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class Settings:
    """The session's effective configuration (what session.created/updated report)."""

    model: str
    voice: str
    instructions: str
    silence_ms: int
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    turn_detection: bool = True  # server_vad or semantic_vad; False: the client commits
    turn_type: str = "server_vad"
    eagerness: str = "auto"  # semantic_vad: how soon a turn ends (EAGERNESS)
    create_response: bool = True
    interrupt_response: bool = True
    speed: float = 1.0
    transcription: bool = True
    language: str | None = None
    input_format: str = "audio/pcm"  # or audio/pcmu, audio/pcma (G.711, 8 kHz)
    kind: str = "realtime"  # or transcription: turns are transcribed, not answered
    prompt: str = ""  # transcription's prompt: the words Whisper is told came before
    output_format: str = "audio/pcm"
    transcription_model: str = "whisper"  # any name is accepted: the loaded STT transcribes
    idle_timeout_ms: int | None = None  # server_vad: no speech this long after a reply's audio ends -> a response
    max_output_tokens: int | None = None  # None: "inf" (the engine's llm.max_tokens still applies)
    voices: tuple[str, ...] = ()  # the voices installed besides ``voice`` (an unknown name falls back to ``own_voice``)
    own_voice: str = ""  # the server's own voice ("" : ``voice`` as the session opened)
    changes_speed: bool = True  # the voice engine can change speed

    def to_dict(self, session_id: str) -> dict[str, Any]:

        turn: dict[str, Any] | None = None
        if self.turn_detection and self.turn_type == "semantic_vad":
            turn = {"type": "semantic_vad", "eagerness": self.eagerness}
        elif self.turn_detection:
            turn = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": self.silence_ms}
            turn["idle_timeout_ms"] = self.idle_timeout_ms
        if turn is not None and self.kind == "realtime":
            turn.update(create_response=self.create_response, interrupt_response=self.interrupt_response)
        transcription = (
            {"model": self.transcription_model, "language": self.language, "prompt": self.prompt} if self.transcription else None
        )
        audio_in = {"format": fmt(self.input_format), "transcription": transcription, "turn_detection": turn, "noise_reduction": None}
        if self.kind == "transcription":
            return {
                "type": "transcription",
                "object": "realtime.transcription_session",
                "id": session_id,
                "include": None,
                "audio": {"input": audio_in},
            }
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": self.model,
            "output_modalities": list(self.output_modalities),
            "instructions": self.instructions,
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf" if self.max_output_tokens is None else self.max_output_tokens,
            "audio": {"input": audio_in, "output": {"format": fmt(self.output_format), "voice": self.voice, "speed": self.speed}},
        }


FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")


def fmt(kind: str) -> dict[str, Any]:
    return {"type": kind, "rate": RATE} if kind == "audio/pcm" else {"type": kind}


def _format(value: Any, param: str, current: str) -> str:
    if value is None:
        return current
    kind = value.get("type", "audio/pcm") if isinstance(value, dict) else None
    if kind not in FORMATS or (kind == "audio/pcm" and value.get("rate", RATE) != RATE):
        raise UpdateRefused("audio formats: audio/pcm at rate 24000, audio/pcmu or audio/pcma", param)
    return str(kind)


EAGERNESS = {"low": 2.0, "medium": 1.0, "auto": 1.0, "high": 0.5}  # semantic_vad: how the turn policy's silences scale


def tune_policy(policy: Any, turn: Any, end_silence_ms: int, settings: Settings) -> None:
    """Set the session's turn policy from the realtime turn detection, keeping voicechat's way of ending a turn.

    Ending by meaning (:class:`MeaningPolicy`): a finished sentence ends after a short silence, a thought in
    progress after a long one. server_vad's ``silence_duration_ms`` becomes the normal silence and the other
    two scale with it; semantic_vad's eagerness scales all three (low waits twice as long, high half).
    A fixed silence (:class:`SilencePolicy`, turn.detector silence) is silence_duration_ms, or scaled likewise."""
    from voicechat.voice.endpoint import MeaningPolicy

    meaning = isinstance(policy, MeaningPolicy)
    base = turn.end_ms if meaning else end_silence_ms
    scale = EAGERNESS[settings.eagerness] if settings.turn_type == "semantic_vad" else settings.silence_ms / base
    if meaning:
        policy.fast, policy.normal, policy.slow = (max(10, round(ms * scale)) for ms in (turn.fast_end_ms, turn.end_ms, turn.slow_end_ms))
        policy.max_silence_ms = max(policy.fast, policy.normal, policy.slow)
    else:
        policy.max_silence_ms = max(10, round(base * scale))


MIN_IDLE_MS, MAX_IDLE_MS = 500, 600_000  # idle_timeout_ms accepted
MAX_OUTPUT_TOKENS = 4096


def voice_name(value: Any, param: str) -> str:
    """A voice as the API names it: a string, or an object with an ``id`` (a custom voice)."""
    asked = value.get("id") if isinstance(value, dict) else value
    if not isinstance(asked, str) or not asked.strip():
        raise UpdateRefused("voice must be a name", param)
    return asked.strip()[:64]


def speed_value(value: Any, param: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.25 <= value <= 1.5:
        raise UpdateRefused("speed must be a number from 0.25 to 1.5", param)
    return float(value)


def max_tokens(value: Any, param: str) -> int | None:
    """max_output_tokens: an integer from 1 to 4096, or "inf" (None: no limit of the session's own)."""
    if value is None or value == "inf":
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise UpdateRefused(f'max_output_tokens must be an integer from 1 to {MAX_OUTPUT_TOKENS} or "inf"', param)
    return value


def apply_update(settings: Settings, session: Any) -> list[str]:
    """Apply a session.update's ``session`` to ``settings`` (all or nothing); notices for what was mapped."""
    if not isinstance(session, dict):
        raise UpdateRefused("session.update needs a 'session' object", "session")
    if session.get("type", settings.kind) != settings.kind:
        raise UpdateRefused(
            f"this is a {settings.kind} session; a session's type is set when it opens (?intent=transcription for transcription)",
            "session.type",
        )
    new = Settings(**{k: getattr(settings, k) for k in settings.__dataclass_fields__})
    new.output_modalities = list(settings.output_modalities)
    notices: list[str] = []
    if "instructions" in session:
        if not isinstance(session["instructions"], str):
            raise UpdateRefused("instructions must be a string", "session.instructions")
        new.instructions = session["instructions"]
    if "output_modalities" in session:
        modes = session["output_modalities"]
        if not isinstance(modes, list) or len(modes) != 1 or modes[0] not in MODALITIES:
            raise UpdateRefused('output_modalities must be ["audio"] or ["text"]', "session.output_modalities")
        new.output_modalities = list(modes)
    audio = session.get("audio")
    if audio is not None and not isinstance(audio, dict):
        raise UpdateRefused("audio must be an object", "session.audio")
    audio = audio or {}
    inp, out = audio.get("input") or {}, audio.get("output") or {}
    if not isinstance(inp, dict) or not isinstance(out, dict):
        raise UpdateRefused("audio.input and audio.output must be objects", "session.audio")
    new.input_format = _format(inp.get("format"), "session.audio.input.format", settings.input_format)
    new.output_format = _format(out.get("format"), "session.audio.output.format", settings.output_format)
    if "turn_detection" in inp:
        turn = inp["turn_detection"]
        if turn is None:
            new.turn_detection = False
        elif isinstance(turn, dict) and turn.get("type") in ("server_vad", "semantic_vad"):
            new.turn_detection, new.turn_type = True, turn["type"]
            silence = turn.get("silence_duration_ms")
            if silence is not None and turn["type"] == "server_vad":
                if not isinstance(silence, int) or isinstance(silence, bool) or not 10 <= silence <= 60_000:
                    raise UpdateRefused("silence_duration_ms must be an integer from 10 to 60000", "session.audio.input.turn_detection")
                new.silence_ms = silence
            eagerness = turn.get("eagerness")
            if eagerness is not None and turn["type"] == "semantic_vad":
                if eagerness not in EAGERNESS:
                    raise UpdateRefused("eagerness must be low, medium, high or auto", "session.audio.input.turn_detection")
                new.eagerness = eagerness
            for name in ("create_response", "interrupt_response"):
                if name in turn and turn[name] is not None:
                    if not isinstance(turn[name], bool):
                        raise UpdateRefused(f"{name} must be true or false", "session.audio.input.turn_detection")
                    setattr(new, name, turn[name])
            idle = turn.get("idle_timeout_ms")
            if idle is not None and turn["type"] == "server_vad":
                if not isinstance(idle, int) or isinstance(idle, bool) or not MIN_IDLE_MS <= idle <= MAX_IDLE_MS:
                    raise UpdateRefused(
                        f"idle_timeout_ms must be an integer from {MIN_IDLE_MS} to {MAX_IDLE_MS}", "session.audio.input.turn_detection"
                    )
            new.idle_timeout_ms = idle if turn["type"] == "server_vad" else None
        else:
            raise UpdateRefused(
                'turn_detection must be {"type": "server_vad"}, {"type": "semantic_vad"} or null', "session.audio.input.turn_detection"
            )
    if "transcription" in inp:
        tr = inp["transcription"]
        if tr is not None and not isinstance(tr, dict):
            raise UpdateRefused("transcription must be an object or null", "session.audio.input.transcription")
        new.transcription = tr is not None
        for name, limit in (("language", 16), ("prompt", 1000), ("model", 100)):
            value = tr.get(name) if isinstance(tr, dict) else None
            if value is not None and not isinstance(value, str):
                raise UpdateRefused(f"transcription {name} must be a string", "session.audio.input.transcription")
            if isinstance(tr, dict) and name in tr:
                if name == "language":  # a code Whisper knows (en-US is en), else refused now, not at the first turn
                    try:
                        codes = stt_languages.normalize([value or ""], "transcription language")
                    except VoicechatError as e:
                        raise UpdateRefused(str(e), "session.audio.input.transcription.language") from None
                    new.language = codes[0] if codes else ("auto" if (value or "").strip().lower() == "auto" else None)
                elif name == "prompt":
                    new.prompt = (value or "")[:limit]
                else:
                    new.transcription_model = (value or "whisper")[:limit]
    if "voice" in out and out["voice"] is not None:
        asked = voice_name(out["voice"], "session.audio.output.voice")
        own = settings.own_voice or settings.voice
        new.voice = asked if asked == own or asked in settings.voices else own
        if new.voice != asked:
            others = ", ".join(settings.voices) or "none besides this one"
            notices.append(f"voice '{asked[:40]}' is not installed here; speaking with {own} (installed: {others})")
    if "speed" in out and out["speed"] is not None:
        new.speed = speed_value(out["speed"], "session.audio.output.speed")
        if new.speed != 1.0 and not settings.changes_speed:
            notices.append(f"this voice engine cannot change speed; speaking at 1.0 (asked {new.speed:g})")
            new.speed = 1.0
    if "max_output_tokens" in session:
        new.max_output_tokens = max_tokens(session["max_output_tokens"], "session.max_output_tokens")
    for k in settings.__dataclass_fields__:
        setattr(settings, k, getattr(new, k))
    return notices


def error_event(
    message: str, *, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None, event_id: str | None = None
) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": new_id("event"),
        "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id},
    }


@dataclass
class ResponseOptions:
    """What a response.create asks of its one response (None: the session's setting)."""

    modality: str | None = None
    instructions: str | None = None
    out_of_band: bool = False  # conversation "none": answered, not kept in the conversation or the history
    input: list[Any] | None = None  # this response's own context: items or {"type": "item_reference", "id": ...}
    max_output_tokens: int | None = None
    voice: str | None = None
    speed: float | None = None
    has_max_tokens: bool = False  # max_output_tokens was given (None then means "inf")
    context: list[tuple[str, str]] | None = None  # ``input`` as (question, answer) rounds, resolved by the connection


MAX_INPUT_ITEMS = 64


def response_options(params: Any) -> ResponseOptions:
    """response.create's ``response`` object, checked (UpdateRefused names the field it cannot honour)."""
    if params is None:
        return ResponseOptions()
    if not isinstance(params, dict):
        raise UpdateRefused("'response' must be an object", "response")
    opts = ResponseOptions()
    conversation = params.get("conversation")
    if conversation not in (None, "auto", "none"):
        raise UpdateRefused('conversation must be "auto" or "none" (one conversation per session here)', "response.conversation")
    opts.out_of_band = conversation == "none"
    items = params.get("input")
    if items is not None:
        if not isinstance(items, list) or len(items) > MAX_INPUT_ITEMS or not all(_input_item(i) for i in items):
            raise UpdateRefused(f"input must be a list of at most {MAX_INPUT_ITEMS} message items or item references", "response.input")
        opts.input = list(items)
    if "max_output_tokens" in params:
        opts.max_output_tokens, opts.has_max_tokens = max_tokens(params["max_output_tokens"], "response.max_output_tokens"), True
    audio = params.get("audio")
    if audio is not None and (not isinstance(audio, dict) or not isinstance(audio.get("output"), (dict, type(None)))):
        raise UpdateRefused("audio must be an object with an 'output' object", "response.audio")
    out = audio.get("output") if isinstance(audio, dict) else None
    if isinstance(out, dict):
        if out.get("voice") is not None:
            opts.voice = voice_name(out["voice"], "response.audio.output.voice")
        if out.get("speed") is not None:
            opts.speed = speed_value(out["speed"], "response.audio.output.speed")
    modes = params.get("output_modalities")
    if modes is not None:
        if not isinstance(modes, list) or len(modes) != 1 or modes[0] not in MODALITIES:
            raise UpdateRefused('output_modalities must be ["audio"] or ["text"]', "response.output_modalities")
        opts.modality = modes[0]
    if params.get("instructions") is not None:
        if not isinstance(params["instructions"], str):
            raise UpdateRefused("instructions must be a string", "response.instructions")
        opts.instructions = params["instructions"]
    return opts


def _input_item(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    if item.get("type") == "item_reference":
        return isinstance(item.get("id"), str)
    return item_text(item) is not None


def item_text(item: Any) -> tuple[str, str] | None:
    """(role, text) of a message item (user, assistant or system; text or transcribed audio), else None."""
    if not isinstance(item, dict) or item.get("type", "message") != "message" or item.get("role") not in ("user", "assistant", "system"):
        return None
    content = item.get("content")
    if not isinstance(content, list):
        return None
    texts = []
    for part in content:
        if not isinstance(part, dict):
            return None
        text = part.get("text") if part.get("type") in ("input_text", "output_text", "text") else part.get("transcript")
        if not isinstance(text, (str, type(None))):
            return None
        texts.append(text or "")
    return str(item["role"]), "\n".join(t for t in texts if t).strip()


def context_of(items: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], str]:
    """A response's own input as the memory holds a conversation: (question, answer) rounds, and the question
    it answers (the user's words after the last answer; system items are read as the user's)."""
    rounds: list[tuple[str, str]] = []
    question: list[str] = []
    for role, text in items:
        if role == "assistant":
            rounds.append(("\n".join(question), text))
            question = []
        elif text:
            question.append(text)
    return rounds, "\n".join(question)


@dataclass
class _Response:
    id: str
    item_id: str
    modality: str
    text: str = ""
    audio_ms: float = 0.0
    finished_item: bool = False
    interrupted: bool = False
    instructions: str | None = None
    out_of_band: bool = False
    cut: str | None = None  # why it is incomplete (max_output_tokens)
    options: ResponseOptions = field(default_factory=ResponseOptions)


class Translator:
    """VoiceSession events -> realtime server events (dicts without ``event_id``; :meth:`stamp` adds it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.last_item: str | None = None  # the conversation's last item (previous_item_id of the next)
        self.speech_item: str | None = None  # the user's item while they speak
        self.speech_ms = (0.0, 0.0)  # where the last spoken item began and ended in the input audio
        self.last_speech: str | None = None  # the item speech_stopped named
        self.partial_sent = ""  # transcription deltas sent for the turn being spoken
        self.committed: collections.deque[str] = collections.deque()  # spoken items whose transcripts are awaited, in order
        self.audio_ms = 0.0  # input audio received, in ms (audio_start_ms / audio_end_ms)
        self.announced: list[str] = []  # typed items already announced, waiting for response.create
        self.requested: collections.deque[ResponseOptions] = collections.deque()  # response.create sent on, not yet begun
        self.response: _Response | None = None
        self.items: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()  # recent items: (role, text)

    def remember(self, item_id: str, role: str, text: str) -> None:
        """An item's words, for a later response's ``input`` to refer to (the last MAX_INPUT_ITEMS)."""
        self.items[item_id] = (role, text)
        self.items.move_to_end(item_id)
        while len(self.items) > MAX_INPUT_ITEMS:
            self.items.popitem(last=False)

    def resolve(self, items: list[Any]) -> list[tuple[str, str]] | None:
        """A response's input as (role, text), references looked up; None if one names no item known here."""
        out = []
        for item in items:
            if item.get("type") == "item_reference":
                found = self.items.get(item["id"])
                if found is None:
                    return None
                out.append(found)
            else:
                got = item_text(item)
                assert got is not None  # (checked by response_options)
                out.append(got)
        return out

    def answers(self, event: ev.UserText) -> bool:
        """Whether this turn gets a response now: typed turns do (a response.create sent them); a spoken turn does
        when turn detection ended it and create_response is true, else it waits for response.create (as the API
        does when the client commits with turn_detection null)."""
        if self.settings.kind != "realtime":
            return False
        return event.source != "voice" or self.answers_voice()

    def answers_voice(self) -> bool:
        """Spoken turns are answered as soon as they are read (else they wait for response.create)."""
        return self.settings.kind == "realtime" and self.settings.turn_detection and self.settings.create_response

    # items --------------------------------------------------------------------------------------
    def _item_added(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        out = [{"type": "conversation.item.added", "previous_item_id": self.last_item, "item": item}]
        self.last_item = item["id"]
        return out

    def user_text_item(self, item_id: str, text: str) -> list[dict[str, Any]]:
        """A conversation.item.create with text: added and done at once."""
        item = _user_item(item_id, {"type": "input_text", "text": text})
        prev = self.last_item
        out = self._item_added(item)
        out.append({"type": "conversation.item.done", "previous_item_id": prev, "item": item})
        self.remember(item_id, "user", text)
        return out

    # session events -----------------------------------------------------------------------------
    def translate(self, event: ev.Event) -> list[dict[str, Any]]:
        if isinstance(event, ev.Speech):
            return self.speech(event.phase)
        if isinstance(event, ev.UserText):
            return self._user(event)
        if isinstance(event, ev.Partial):
            return self._partial(event.text)
        if isinstance(event, ev.ReplyDelta):
            return self._delta(event.text)
        if isinstance(event, ev.ReplyDone):
            return self._reply_done(event)
        if isinstance(event, ev.TurnStats):
            status = "cancelled" if self.response is not None and self.response.interrupted else "completed"
            return self._response_done(status, event.prompt_tokens, event.completion_tokens)
        if isinstance(event, ev.Error):
            out = [error_event(event.message, kind="server_error")]
            return out + self._response_done("failed", None, None)
        if isinstance(event, ev.Dropped):
            out = self._speech_stopped() if self.speech_item is not None else []
            self.speech_item = None
            if self.committed and event.reason.startswith("interrupted"):  # cut before it was read: the conversation lacks it
                out.append({"type": "conversation.item.deleted", "item_id": self.committed.popleft()})
            elif self.committed:  # a committed item with no speech in it: an empty transcript
                out += self._transcribed("")
            return out + self._response_done("cancelled", None, None)
        return []  # notices, tool events: not in this slice

    def speech(self, phase: str) -> list[dict[str, Any]]:
        if phase == "started" and self.speech_item is None:
            self.speech_item, self.partial_sent = new_id("item"), ""
            self.speech_ms = (self.audio_ms, self.audio_ms)
            return [{"type": "input_audio_buffer.speech_started", "audio_start_ms": int(self.audio_ms), "item_id": self.speech_item}]
        if phase == "ended":
            if self.speech_item is None:  # (speech the listener did not announce: it is one item all the same)
                self.speech_item = new_id("item")
                self.speech_ms = (self.audio_ms, self.audio_ms)
            return self._speech_stopped() + self.commit()
        return []

    def commit(self) -> list[dict[str, Any]]:
        """The user's audio item is complete (the listener ended the turn, or the client committed)."""
        item_id = self.speech_item or self.last_speech or new_id("item")
        self.committed.append(item_id)
        self.speech_item = None
        out: list[dict[str, Any]] = [{"type": "input_audio_buffer.committed", "previous_item_id": self.last_item, "item_id": item_id}]
        item = _user_item(item_id, {"type": "input_audio", "transcript": None})
        self.speech_ms = (self.speech_ms[0], self.audio_ms)
        return out + self._item_added(item)

    def _speech_stopped(self) -> list[dict[str, Any]]:
        item_id = self.last_speech = self.speech_item
        self.speech_ms = (self.speech_ms[0], self.audio_ms)
        return [{"type": "input_audio_buffer.speech_stopped", "audio_end_ms": int(self.audio_ms), "item_id": item_id}]

    def _user(self, event: ev.UserText) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if event.source == "voice" and self.committed:
            out += self._transcribed(event.text, event.language)
        if not self.answers(event):
            if self.settings.kind == "realtime" and event.source == "voice":
                self.announced.append(event.text)  # held for response.create (before the client hears it was read)
            return out  # transcribed, not answered (yet: a response.create may answer it)
        opts = ResponseOptions()
        if event.source == "typed":
            if self.requested:
                opts = self.requested.popleft()  # the items a response.create sent on (announced when created)
            else:
                out += self.user_text_item(new_id("item"), event.text)  # (a typed turn the client did not create as an item)
        return out + self._response_created(opts)

    def _partial(self, text: str) -> list[dict[str, Any]]:
        """The words so far of the turn being spoken, as transcription deltas (only what extends what was sent)."""
        item_id = self.speech_item or (self.committed[0] if self.committed else None)
        if (
            item_id is None
            or not self.settings.transcription
            or not text.startswith(self.partial_sent)
            or len(text) == len(self.partial_sent)
        ):
            return []
        delta, self.partial_sent = text[len(self.partial_sent) :], text
        return [{"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id, "content_index": 0, "delta": delta}]

    def _transcribed(self, text: str, language: str | None = None) -> list[dict[str, Any]]:
        """The user's spoken item, transcribed; ``language``: the turn's (detected among listen.languages, or the one
        set), sent as the API's ``languages`` list of the completed event."""
        item_id = self.committed.popleft()
        self.partial_sent = ""
        self.remember(item_id, "user", text)
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": text}],
        }
        done = {"type": "conversation.item.done", "item": item}
        if not self.settings.transcription:  # input transcription off: the item only
            return [done]
        completed: dict[str, Any] = {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id,
            "content_index": 0,
            "transcript": text,
            "usage": {"type": "duration", "seconds": round((self.speech_ms[1] - self.speech_ms[0]) / 1000, 3)},
        }
        if language:
            completed["languages"] = [{"code": language}]
        return [completed, done]

    def _response_created(self, opts: ResponseOptions) -> list[dict[str, Any]]:
        modality = opts.modality or self.settings.output_modalities[0]
        r = self.response = _Response(
            new_id("resp"), new_id("item"), modality, instructions=opts.instructions, out_of_band=opts.out_of_band, options=opts
        )
        item = {"id": r.item_id, "object": "realtime.item", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        part_type = "audio" if modality == "audio" else "text"
        part = {"type": part_type, "transcript": ""} if part_type == "audio" else {"type": "text", "text": ""}
        ids = {"response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0}
        return [
            {"type": "response.created", "response": self._resource(r, "in_progress", [], None)},
            {"type": "response.output_item.added", "response_id": r.id, "output_index": 0, "item": item},
            *([] if r.out_of_band else self._item_added(item)),  # out of band: not in the conversation
            {"type": "response.content_part.added", **ids, "part": part},
        ]

    def _ids(self, r: _Response) -> dict[str, Any]:
        return {"response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0}

    def _delta(self, text: str) -> list[dict[str, Any]]:
        r = self.response
        if r is None or not text:
            return []
        r.text += text
        kind = "response.output_audio_transcript.delta" if r.modality == "audio" else "response.output_text.delta"
        return [{"type": kind, **self._ids(r), "delta": text}]

    def audio(self, data: bytes, ms: float | None = None) -> list[dict[str, Any]]:
        """A piece of reply audio in the output format (``ms`` long; by default PCM16 at 24 kHz) -> an
        output_audio.delta of the open response."""
        r = self.response
        if r is None or r.modality != "audio" or not data:
            return []
        r.audio_ms += ms if ms is not None else len(data) / 2 / RATE * 1000
        return [{"type": "response.output_audio.delta", **self._ids(r), "delta": base64.b64encode(data).decode("ascii")}]

    def _content(self, r: _Response, text: str) -> dict[str, Any]:
        return {"type": "output_audio", "transcript": text} if r.modality == "audio" else {"type": "output_text", "text": text}

    def _reply_done(self, event: ev.ReplyDone) -> list[dict[str, Any]]:
        r = self.response
        if r is None:
            return []
        text = event.text if event.interrupted else (r.text or event.text)
        ids = self._ids(r)
        out: list[dict[str, Any]] = []
        if r.modality == "audio":
            out += [
                {"type": "response.output_audio.done", **ids},
                {"type": "response.output_audio_transcript.done", **ids, "transcript": text},
            ]
        else:
            out.append({"type": "response.output_text.done", **ids, "text": text})
        part = {"type": "audio", "transcript": text} if r.modality == "audio" else {"type": "text", "text": text}
        out.append({"type": "response.content_part.done", **ids, "part": part})
        item = self._assistant_item(r, text, "incomplete" if event.interrupted else "completed")
        out.append({"type": "response.output_item.done", "response_id": r.id, "output_index": 0, "item": item})
        if not r.out_of_band:
            out.append({"type": "conversation.item.done", "item": item})
            self.remember(r.item_id, "assistant", text)
        r.text, r.finished_item, r.interrupted = text, True, event.interrupted
        return out

    def _assistant_item(self, r: _Response, text: str, status: str) -> dict[str, Any]:
        return {
            "id": r.item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [self._content(r, text)],
        }

    def _resource(self, r: _Response, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        limit = r.options.max_output_tokens if r.options.has_max_tokens else self.settings.max_output_tokens
        return {
            "object": "realtime.response",
            "id": r.id,
            "status": status,
            "status_details": None if status in ("in_progress", "completed") else {"type": status, "reason": r.cut, "error": None},
            "output": output,
            "conversation_id": None if r.out_of_band else "conv_voicechat",
            "output_modalities": [r.modality],
            "max_output_tokens": "inf" if limit is None else limit,
            "audio": {"output": {"format": fmt(self.settings.output_format), "voice": r.options.voice or self.settings.voice}},
            "usage": usage,
            "metadata": None,
        }

    def _response_done(self, status: str, prompt: int | None, completion: int | None) -> list[dict[str, Any]]:
        r, self.response = self.response, None
        if r is None:
            return []
        if r.cut is not None and status != "failed":
            status = "incomplete"
        output = (
            [self._assistant_item(r, r.text, "completed" if status == "completed" else "incomplete")] if r.finished_item or r.text else []
        )
        usage = None
        if prompt is not None or completion is not None:
            p, c = prompt or 0, completion or 0
            usage = {
                "total_tokens": p + c,
                "input_tokens": p,
                "output_tokens": c,
                "input_token_details": {"text_tokens": p, "audio_tokens": 0, "cached_tokens": 0},
                "output_token_details": {"text_tokens": c, "audio_tokens": 0},
            }
        return [{"type": "response.done", "response": self._resource(r, status, output, usage)}]

    def timeout_triggered(self, start_ms: float) -> list[dict[str, Any]]:
        """idle_timeout_ms ran out: the silent audio since ``start_ms`` is committed as an empty user item
        (the response that follows answers the conversation so far)."""
        item_id = new_id("item")
        end = max(start_ms, self.audio_ms)
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": ""}],
        }
        out: list[dict[str, Any]] = [
            {"type": "input_audio_buffer.timeout_triggered", "audio_start_ms": int(start_ms), "audio_end_ms": int(end), "item_id": item_id},
            {"type": "input_audio_buffer.committed", "previous_item_id": self.last_item, "item_id": item_id},
        ]
        out += self._item_added(item)
        out.append({"type": "conversation.item.done", "item": item})
        return out

    def cancel(self) -> list[dict[str, Any]]:
        """response.cancel with no response in progress: nothing to say (the session's interrupt ends a live one)."""
        return []


class IdleTimer:
    """server_vad's idle_timeout_ms, a state machine fed the clock: armed when a response is done, for its audio to
    play (the client plays it after it is sent) and then the timeout; speech or another response disarms it;
    :meth:`due` says once that the time has come."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.start_ms = 0.0  # where the silence began in the input audio (when the reply's audio ended)

    def arm(self, now: float, playback_s: float, timeout_ms: int, audio_ms: float) -> None:
        self.at = now + playback_s + timeout_ms / 1000
        self.start_ms = audio_ms + playback_s * 1000

    def disarm(self) -> None:
        self.at = None

    def due(self, now: float) -> bool:
        if self.at is None or now < self.at:
            return False
        self.at = None
        return True


def stamp(doc: dict[str, Any]) -> dict[str, Any]:
    """The event as sent: an event_id first, as the API's events have."""
    if "event_id" in doc:
        return doc
    return {"event_id": new_id("event"), **doc}


def _user_item(item_id: str, part: dict[str, Any]) -> dict[str, Any]:
    """A completed user message item with one content part (typed text or committed audio)."""
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed", "content": [part]}
