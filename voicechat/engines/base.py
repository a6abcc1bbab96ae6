"""The three engine kinds, each with one streaming generator method, and the values they yield."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float = 1.0


@dataclass(frozen=True)
class Segment:
    """A piece of a transcript, with times in seconds from the start of the audio."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}
        if self.words:
            d["words"] = [
                {"start": round(w.start, 3), "end": round(w.end, 3), "text": w.text, "probability": round(w.probability, 4)}
                for w in self.words
            ]
        return d


@dataclass
class AudioChunk:
    """Mono float32 samples in [-1, 1] at ``sample_rate``, and the text they speak."""

    samples: np.ndarray
    sample_rate: int
    text: str = ""

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model is told about it: a name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    """The model asks for a tool: its name and the arguments as the JSON text the model wrote (unchecked)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # assistant: the calls it made
    tool_call_id: str | None = None  # tool: the call this result answers
    name: str | None = None  # tool: the tool's name


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False  # True when counted locally, not reported by the server
    # why the reply ended where the engine knows: "stop" | "length" | "tool_calls" (not part of the count's equality)
    finish_reason: str | None = field(default=None, compare=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class SamplingOptions:
    """How one reply is written, for this call only (the engine's configured values stay as they are).

    None (or no stop strings) leaves a setting at the engine's own value. Engines say which settings they
    honour in ``ChatModel.options_honoured``; the others are ignored."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None

    NAMES: ClassVar[tuple[str, ...]] = ("temperature", "top_p", "max_tokens", "stop", "seed")

    def asked(self) -> frozenset[str]:
        """The settings this call sets."""
        return frozenset(n for n in self.NAMES if getattr(self, n) not in (None, ()))


ALL_OPTIONS = frozenset(SamplingOptions.NAMES)


REQUIRED = "required"  # tool_choice: the model must call one of the tools offered (which one is its choice)

# What a chat model streams; a generator, so that closing it cancels the reply.
ChatStream = Generator[TextDelta | ToolCall | Usage, None, None]


@dataclass
class Transcription:
    """What a speech-to-text engine learned about the audio besides the segments."""

    language: str | None = None
    duration: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):  # noqa: B024 - the base of the engine kinds; each of them declares its abstract methods
    name: str = ""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models and connections."""

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Run once on a tiny input, so the first real request does not pay for first-use set-up."""


class SpeechToText(Engine):
    """Turns 16 kHz mono float32 audio into transcript segments, lazily."""

    sample_rate: int = 16000
    # Cheap enough to run again at every pause while the user speaks (a local model). Engines
    # without it (a remote API) transcribe a voice turn once, after it ends.
    incremental: bool = False

    # What transcribe_window() honours beyond the language: word times, and a prompt (earlier text).
    times_words: bool = False
    takes_prompt: bool = False

    def __init__(self) -> None:
        self.info = Transcription()

    @abstractmethod
    def transcribe(self, audio: np.ndarray, *, language: str | None = None) -> Iterator[Segment]:
        """Yield segments as they are decoded. ``self.info`` is filled in as soon as it is known."""

    def transcribe_window(
        self, audio: np.ndarray, *, language: str | None = None, word_timestamps: bool | None = None, prompt: str | None = None
    ) -> Iterator[Segment]:
        """One window (minutes, not hours) of a long recording; times are relative to the window.
        ``word_timestamps`` and ``prompt`` are honoured where ``times_words`` and ``takes_prompt`` say so;
        the default transcribes the window as it would any audio."""
        return self.transcribe(audio, language=language)

    def transcribe_turn(
        self, audio: np.ndarray, *, prompt: str | None = None, beam_size: int = 1, silero_filter: bool = False, language: str | None = None
    ) -> str:
        """The text of one spoken turn (already cut by the listener), with invented text on silence removed.

        ``prompt`` is what the user said just before (earlier text of the same turn). Engines that can,
        use the turn settings; the default transcribes the audio as a file.
        """
        from voicechat.engines import guard

        if guard.is_silence(audio):
            return ""
        segments = guard.filter_segments(self.transcribe(audio, language=language), audio, self.sample_rate)
        return " ".join(s.text.strip() for s in segments).strip()

    @property
    def model_name(self) -> str:
        return ""

    @property
    def languages(self) -> list[str]:
        """Language codes this engine's model understands (English unless the engine says more)."""
        return ["en"]


class ChatModel(Engine):
    """Streams a reply to a list of messages: text deltas, then one usage record."""

    supports_tools: bool = False  # stream() honours tools= and tool_choice= and may yield ToolCall
    # The SamplingOptions settings stream(options=) applies to one call; empty: the engine takes no options=
    options_honoured: frozenset[str] = frozenset()

    @abstractmethod
    def stream(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] = (),
        tool_choice: str | None = None,
        options: SamplingOptions | None = None,
    ) -> ChatStream:
        """Yield TextDelta as the reply is written, then a Usage. Closing the generator cancels.

        Engines with ``supports_tools`` honour ``tools`` (the tools the model may call) and ``tool_choice``
        (None: the model decides; a tool's name: the model must call it; REQUIRED: it must call one of them) and yield a ToolCall for each
        call the model makes (before the Usage); the caller runs the tools and asks again. Callers offer
        tools only to engines with ``supports_tools``.

        ``options`` sets temperature, top_p, max_tokens, stop and seed for this call alone, as far as
        ``options_honoured`` says; callers pass it only to engines that honour some."""

    def prefill(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> None:
        """Evaluate a prompt ahead of time where the engine keeps it (a local model's cache), so a request
        that starts with these messages (and offers these tools) answers sooner. Remote engines ignore it."""

    def end_of_turn_probability(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> float | None:
        """P(the last user message is finished as it stands), from how likely the model finds a sentence end
        right after it; None when the engine cannot tell (remote engines) or is busy answering."""
        return None

    def count_tokens(self, text: str) -> int:
        """Tokens in text, with this model's own tokenizer where it has one."""
        from voicechat import tokens

        return tokens.count(text, encoding=tokens.encoding_for_model(self.model_name)[0])

    @property
    def model_name(self) -> str:
        return ""


class TextToSpeech(Engine):
    """Speaks text: one audio chunk per sentence (or smaller), as each is ready."""

    sample_rate: int | None = None  # the rate chunks will come at, when known before synthesis
    changes_speed: bool = False  # synthesize() honours speed=

    @abstractmethod
    def synthesize(self, text: str, *, speed: float | None = None) -> Iterator[AudioChunk]:
        """Yield audio chunks in order. ``speed`` (1.0 normal) multiplies the configured speed for this
        call; callers pass it only to engines with ``changes_speed``."""

    def voices(self) -> list[str]:
        """The voices this engine can speak with, as `say --list-voices` shows them."""
        return []

    def installed_voices(self) -> dict[str, str]:
        """Voices that can be loaded by name besides this one: name -> the tts.voice value that loads it
        (a server loads them on demand for a request's ``voice``), this engine's own voice first. Empty: this
        engine's voice only."""
        return {}

    @property
    def speakers(self) -> list[str]:
        """Names of the speakers of a multi-speaker voice (tts.speaker); empty for a single voice."""
        return []

    @property
    def languages(self) -> list[str]:
        """Language codes the voice speaks (English unless the engine says more)."""
        return ["en"]

    @property
    def model_name(self) -> str:
        return ""
