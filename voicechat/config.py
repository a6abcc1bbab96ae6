"""Configuration: the schema, and the one function that resolves it.

Precedence, highest first:
  1. command-line options (passed to :func:`resolve` as ``overrides``)
  2. environment: ``VOICECHAT_<SECTION>_<KEY>`` (e.g. ``VOICECHAT_LLM_MODEL``), plus
     ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` for the ``openai`` section
  3. the file given with ``--config`` (or ``VOICECHAT_CONFIG``)
  4. the user's file, ``<platform config dir>/voicechat/config.yaml``
  5. the defaults below
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicechat import paths
from voicechat.errors import ConfigError, mask, register_secret

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your replies are spoken aloud, so answer in one to "
    "three short sentences of plain text, without lists, markup or emoji."
)


@dataclass
class STTConfig:
    engine: str = "faster-whisper"
    model: str | None = None  # None: the bundled Whisper tiny.en
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str = "auto"  # auto: int8 on CPU, float16 on CUDA
    beam_size: int = 5
    language: str | None = None  # None: detect (multilingual models) or the model's only language
    vad_filter: bool = True  # Silero VAD: skip silence before decoding
    word_timestamps: bool = False
    batch_size: int | None = None  # None: automatic (transcribe batches long audio); 0: never; N: batches of N
    batch_min_seconds: float = 30.0  # automatic batching from one Whisper window of audio on (bench/transcribe.py sweep)
    threads: int = 0  # 0: CTranslate2's default
    no_speech_threshold: float = 0.6
    base_url: str | None = None  # openai engine; None: the [openai] section
    api_key: str | None = None


@dataclass
class LLMConfig:
    engine: str = "llama-cpp"
    model: str | None = None  # None: the bundled SmolLM2-135M-Instruct GGUF
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # the line that asks for a reply in a language, {de: "Antworte auf Deutsch."}; defaults: voicechat.languages.PROMPTS
    language_prompts: dict = field(default_factory=dict)
    temperature: float = 0.7
    max_tokens: int = 256
    threads: int = 0  # 0: min(4, CPU cores)
    context_size: int = 2048
    gpu_layers: int = -1  # -1: every layer on the GPU when llama.cpp was built with one
    timeout: float = 60.0
    retries: int = 2
    base_url: str | None = None
    api_key: str | None = None


@dataclass
class TTSConfig:
    engine: str = "piper"
    voice: str | None = None  # piper: .onnx path; espeak: voice name; coqui: model path/name; openai: voice
    model: str | None = None  # openai: speech model (tts-1, gpt-4o-mini-tts, ...); coqui: config.json path
    speaker: str | None = None  # multi-speaker voices: id or name
    speed: float = 1.0  # 1.0 normal, 2.0 twice as fast
    volume: float = 1.0
    pitch: int = 50  # espeak only, 0-99
    device: str = "auto"  # piper/coqui: auto | cpu | cuda
    voices_dir: str | None = None  # piper: more voices (.onnx + .onnx.json) that serve speaks by name; None: <data dir>/voices
    first_chunk_words: int = 6  # the first chunk is cut short so the first sound comes early
    # a voice per language, {de: PATH.onnx | NAME | espeak:VOICE}; others: tts.voice if it speaks it, else espeak-ng's
    voices: dict = field(default_factory=dict)
    base_url: str | None = None
    api_key: str | None = None


@dataclass
class OpenAIConfig:
    base_url: str | None = None  # None: https://api.openai.com/v1
    api_key: str | None = None


@dataclass
class AudioConfig:
    input_device: str | None = None  # index or case-insensitive name substring
    output_device: str | None = None
    latency: str = "low"  # low | high (PortAudio's suggested latency)
    aec: bool | None = None  # echo cancellation on a microphone and a loudspeaker; None: on with barge-in
    aec_engine: str = "dual"  # dual (AEC3 for voice detection, speex for the words) | webrtc (AEC3, livekit) | speex (pyaec) | speex+webrtc


@dataclass
class ListenConfig:
    mode: str = "vad"  # vad | ptt
    aggressiveness: int = 3  # webrtcvad 0-3; 3 rejects noise best
    frame_ms: int = 30  # 10, 20 or 30
    preroll_ms: int = 300
    start_window_ms: int = 300  # speech starts when start_ratio of this window is voiced
    start_ratio: float = 0.6
    end_silence_ms: int = 600  # the turn ends after this much silence
    max_utterance_s: float = 30.0
    min_speech_ms: int = 250
    barge_in: bool = False
    barge_in_ms: int = 0  # voiced speech over a reply before it stops; 0: at once (when speech is first detected)
    wake: str | None = None  # a wake word (talk --wake): alexa, hey_jarvis, hey_mycroft, hey_rhasspy, okay_nabu
    wake_stay_s: float = 0.0  # awake this long after the last turn; 0: one request per wake word
    wake_threshold: float = 0.5  # the wake word model's probability that counts as heard
    languages: list = field(default_factory=list)  # list[str]: the languages you speak (en, de): each turn's is detected among them


@dataclass
class TurnConfig:
    detector: str = (
        "meaning"  # meaning: the words so far and an audio model set the silence that ends a turn; silence: listen.end_silence_ms
    )
    audio_model: bool = True  # use the Smart Turn model (package pipecat-ai) when installed
    model: str | None = None  # a Smart Turn .onnx file; None: the one inside pipecat-ai
    model_threshold: float = 0.5  # P(turn complete) at or above this counts as "complete"
    pause_ms: int = 150  # a pause this long gets the utterance transcribed and judged
    audio_model_ms: int = 90  # the audio turn model hears the utterance after this much silence, so Whisper has the cores at the pause (>= pause_ms: at the pause)
    fast_end_ms: int = 300  # a finished sentence (and the audio model agrees) ends after this much silence
    end_ms: int = 850  # the signs disagree or are unclear (longer than most mid-sentence pauses)
    slow_end_ms: int = 1600  # a thought in progress ("and", "because", "um", a comma) waits this long
    draft_reply: bool = True  # in a pause that may end the turn, write the reply and synthesize its first words, played once the silence ends the turn (dropped unheard if the user goes on); never with tools
    draft_max_ms: int = 1600  # the longest wait a draft is written in (slow_end_ms; end_ms leaves thoughts in progress out)
    incremental: bool = True  # transcribe while the user speaks (engines that can)
    language_model: bool = True  # a local chat model judges whether the words so far end a sentence (and so reads the prompt early)
    text_complete: float = 0.04  # P(sentence end next) at or above this: the words are finished
    text_incomplete: float = 0.02  # below this: more words are coming
    last_word_min: float = 0.25  # Whisper's probability of the last word below this: a guess, so finished-looking words are unclear
    partial_every_ms: int = 1000  # during long speech, a live partial transcript this often
    commit_after_s: float = 6.0  # utterances longer than this are committed at pauses, so each pass stays short
    beam_size: int = 5  # turn transcription (whole files use stt.beam_size)
    silero_filter: bool = False  # Silero VAD on turn audio (already cut by the listener)


def _backchannels() -> list[str]:
    from voicechat.voice.backchannel import ENGLISH

    return list(ENGLISH)


@dataclass
class BargeConfig:
    """Barge-in timing on a loudspeaker (voice.barge has the decision table these feed)."""

    echo_tail_s: float = 0.3  # without barge-in: after a reply on a loudspeaker, this much of what is heard is its echo
    check_ms: int = 300  # voiced speech over a reply that is transcribed to tell the user from the reply's echo
    suspect_s: float = 0.5  # speech that starts this soon after a reply ends is checked too (the room's tail)
    echo_gone_s: float = 0.25  # a reply paused this long ago no longer reaches the microphone (device buffers, the room)
    after_ms: int = 150  # voiced speech after that: someone is talking, and the reply stops
    resume_silence_ms: int = 300  # a paused reply goes on once the speech over it stopped with it for this long
    after_stop_s: float = 2.0  # speech that starts this soon after a stop is still cutting the reply short ("Stop." alone)
    near_ms: int = 60  # with echo cancellation: speech over a reply is yours only with this much sound the speaker did not make; 0: off
    backchannels: list = field(default_factory=_backchannels)  # list[str]: said over a reply, these let it go on
    backchannels_interrupt: bool = False  # true: a backchannel ("uh-huh") over a reply stops it, as any speech does
    backchannel_ms: int = 900  # voiced speech over a reply longer than a backchannel ("yeah, yeah" is 0.8 s): it stops it
    pause_at_start: bool = False  # true: speech over a reply pauses it at once, even when the echo canceller finds nothing in it but the reply's echo (an audible gap each time)
    near_window_ms: int = 300  # with echo cancellation: a reply pauses for near_ms of sound the speaker did not make within this long (a voice, not stray frames); 0: anywhere in the speech
    onset_ms: int = 60  # with echo cancellation: this much sound the speaker did not make pauses a reply before speech is detected; 0: off


@dataclass
class MemoryConfig:
    max_rounds: int = 8  # question/answer rounds kept; 0 keeps all that fit the budget
    max_context_tokens: int = 1536  # token budget for system prompt + kept turns


@dataclass
class HistoryConfig:
    enabled: bool = True
    path: str | None = None  # None: <platform data dir>/voicechat/history.sqlite3
    url: str | None = None  # postgresql://user:password@host:5432/db: PostgreSQL instead of the file (VOICECHAT_HISTORY_URL)


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback: only this machine; 0.0.0.0 serves the network (set api_key)
    port: int = 8000
    api_key: str | None = None  # required by every route and the WebSocket when set (VOICECHAT_SERVE_API_KEY)
    max_upload_mb: float = 25.0  # larger uploads get 413
    max_audio_s: float = 1800.0  # longer audio (an upload, or one voice session's input) is refused
    max_text_chars: int = 8192  # speech input and chat message text
    max_sessions: int = 8  # live voice sessions at once; more get 503 / close code 1013
    max_active: int = 2  # requests doing engine work at once (the engines are CPU-bound)
    max_queued: int = 16  # requests waiting for one of those slots; more get 503 with Retry-After
    idle_timeout_s: float = 300.0  # a voice session that sends nothing this long is closed
    session_timeout_s: float = 7200.0  # the longest a voice session lasts
    request_timeout_s: float = 600.0  # the longest one HTTP request may run
    drain_timeout_s: float = 30.0  # SIGTERM: how long in-flight work may take to finish
    wyoming_max_audio_s: float = 300.0  # Wyoming: the longest audio stream one transcription takes
    max_connections: int = 64  # Wyoming: TCP connections at once
    max_messages: int = 256  # chat messages in one /v1/chat/completions request
    header_timeout_s: float = 10.0  # a request's line and headers must arrive within this (slow clients are cut off)
    body_timeout_s: float = 120.0  # a request's body must arrive within this (25 MB takes ~1.7 Mbit/s); else 408
    allowed_hosts: list = field(default_factory=list)  # Host names answered besides loopback, IP addresses and serve.host; "*": any
    allowed_origins: list = field(default_factory=list)  # web pages (scheme://host:port) that may use the server besides its own; "*": any
    max_tokens: int = 4096  # the most one /v1/chat/completions request may ask for (max_tokens); without one: llm.max_tokens
    voices_cached: int = 2  # /v1/audio/speech: voices besides tts.voice kept loaded (the least recently used goes); 0: tts.voice only
    reconnect_s: float = 60.0  # `talk --server`: how long the client tries to get its session back after losing the server; 0: never


@dataclass
class ToolsConfig:
    enabled: bool = False  # tools are offered to the model only when on (or with --tools)
    builtin: str = "datetime,calculator,wikipedia"  # comma list of the built-in tools to offer
    force: str | None = None  # a tool name: every turn starts with a call to it (for models that do not pick tools)
    timeout: float = 10.0  # seconds a tool call may take
    max_calls: int = 4  # tool calls per turn; then the model must answer
    result_chars: int = 2000  # a tool result is cut to this many characters
    filler: str = "Let me look that up."  # talk: said when a tool is slow
    filler_after_s: float = 1.0  # talk: how slow
    wikipedia_url: str = "https://en.wikipedia.org/w/api.php"  # the MediaWiki API endpoint
    wikipedia_chars: int = 1200  # the article introduction is cut to this many characters
    mcp: dict = field(default_factory=dict)  # MCP servers: name -> {command, args, env, cwd | url, enabled, allow, confirm, timeout}
    server_concurrency: int = 2  # serve: tool calls in flight at once, across all sessions
    server_wait_s: float = 5.0  # serve: a call past that bound waits this long for a slot, then is refused (the turn goes on)
    server_allow: str = ""  # serve: comma list of tools that need a yes (confirm) and may run anyway (a server cannot ask)


@dataclass
class ModelsConfig:
    dir: str | None = None  # where `voicechat models pull/import` installs models; None: <platform data dir>/voicechat/models
    auto_pull: bool = False  # a catalogue name that is not installed is downloaded when first used (else: an error naming the pull command)


@dataclass
class Config:
    stt: STTConfig = field(default_factory=STTConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    barge: BargeConfig = field(default_factory=BargeConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    # USD per million tokens, added to / overriding the built-in table:
    # prices: {my-model: {input: 0.5, output: 1.5}}
    prices: dict = field(default_factory=dict)

    def openai_base_url(self, section: Any) -> str | None:
        return section.base_url or self.openai.base_url

    def openai_api_key(self, section: Any) -> str | None:
        return section.api_key or self.openai.api_key


SECTIONS = [f.name for f in dataclasses.fields(Config) if f.name != "prices"]
SECRET_KEYS = {"api_key"}

# The allowed range of every numeric key, checked where the value is read so the error
# names its file or variable (an engine given beam_size -5 fails deep and obscurely).
# (low, high): inclusive bounds, None for open; a tuple of more than two: the allowed values.
RANGES: dict[str, tuple] = {
    "stt.beam_size": (1, 100),
    "stt.batch_size": (0, 1024),
    "stt.batch_min_seconds": (0.0, 86_400.0),
    "stt.threads": (0, 1024),
    "stt.no_speech_threshold": (0.0, 1.0),
    "llm.temperature": (0.0, 2.0),
    "llm.max_tokens": (1, 1_000_000),
    "llm.threads": (0, 1024),
    "llm.context_size": (16, 10_000_000),
    "llm.gpu_layers": (-1, 100_000),
    "llm.timeout": (0.1, 86_400.0),
    "llm.retries": (0, 20),
    "tts.speed": (0.1, 10.0),
    "tts.volume": (0.0, 10.0),
    "tts.pitch": (0, 99),
    "tts.first_chunk_words": (1, 1000),
    "listen.aggressiveness": (0, 3),
    "listen.frame_ms": (10, 20, 30),
    "listen.preroll_ms": (0, 10_000),
    "listen.start_window_ms": (10, 10_000),
    "listen.start_ratio": (0.01, 1.0),
    "listen.end_silence_ms": (10, 60_000),
    "listen.max_utterance_s": (0.5, 3600.0),
    "listen.min_speech_ms": (0, 60_000),
    "listen.wake_stay_s": (0.0, 86_400.0),
    "listen.barge_in_ms": (0, 10_000),
    "listen.wake_threshold": (0.01, 1.0),
    "barge.echo_tail_s": (0.0, 5.0),
    "barge.check_ms": (30, 5_000),
    "barge.suspect_s": (0.0, 5.0),
    "barge.echo_gone_s": (0.0, 5.0),
    "barge.after_ms": (30, 5_000),
    "barge.resume_silence_ms": (30, 5_000),
    "barge.after_stop_s": (0.0, 60.0),
    "barge.near_ms": (0, 5_000),
    "barge.backchannel_ms": (30, 10_000),
    "barge.onset_ms": (0, 5_000),
    "barge.near_window_ms": (0, 10_000),
    "turn.model_threshold": (0.0, 1.0),
    "turn.pause_ms": (30, 10_000),
    "turn.audio_model_ms": (0, 10_000),
    "turn.fast_end_ms": (30, 60_000),
    "turn.end_ms": (30, 60_000),
    "turn.slow_end_ms": (30, 60_000),
    "turn.draft_max_ms": (0, 60_000),
    "turn.partial_every_ms": (100, 60_000),
    "turn.commit_after_s": (1.0, 3600.0),
    "turn.beam_size": (1, 100),
    "turn.text_complete": (0.0, 1.0),
    "turn.text_incomplete": (0.0, 1.0),
    "turn.last_word_min": (0.0, 1.0),
    "serve.port": (0, 65535),
    "serve.max_upload_mb": (0.001, 100_000.0),
    "serve.max_audio_s": (1.0, 86_400.0),
    "serve.max_text_chars": (1, 10_000_000),
    "serve.max_sessions": (0, 100_000),
    "serve.max_active": (1, 1024),
    "serve.max_queued": (0, 100_000),
    "serve.idle_timeout_s": (1.0, 604_800.0),
    "serve.session_timeout_s": (1.0, 604_800.0),
    "serve.request_timeout_s": (1.0, 86_400.0),
    "serve.drain_timeout_s": (0.0, 3600.0),
    "serve.wyoming_max_audio_s": (1.0, 86_400.0),
    "serve.max_connections": (1, 100_000),
    "serve.max_messages": (1, 100_000),
    "serve.header_timeout_s": (1.0, 3600.0),
    "serve.body_timeout_s": (1.0, 86_400.0),
    "serve.reconnect_s": (0.0, 86_400.0),
    "serve.max_tokens": (1, 10_000_000),
    "serve.voices_cached": (0, 64),
    "memory.max_rounds": (0, 100_000),
    "memory.max_context_tokens": (16, 10_000_000),
    "tools.timeout": (0.1, 3600.0),
    "tools.max_calls": (1, 100),
    "tools.result_chars": (100, 1_000_000),
    "tools.filler_after_s": (0.0, 3600.0),
    "tools.wikipedia_chars": (100, 100_000),
    "tools.server_concurrency": (1, 1024),
    "tools.server_wait_s": (0.0, 3600.0),
}
CHOICES: dict[str, tuple[str, ...]] = {  # listen.mode is checked by talk, which names its --mode option
    "audio.latency": ("low", "high"),
    "audio.aec_engine": ("dual", "webrtc", "speex", "speex+webrtc"),
    "turn.detector": ("meaning", "silence"),
}


SHOWN_CHARS = 60  # an error shows at most this much of a value
MAX_FILE_BYTES = 1 << 20  # a config file larger than this is not a config file (or /dev/zero)


def shown(value: Any) -> str:
    """A value as an error message shows it: short scalars, never a whole list or mapping.

    A YAML alias bomb is a few hundred bytes that expand to billions of items when walked: only
    its size (O(1)) is shown, and a long string is cut, so a message costs nothing to build."""
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, str):
        return repr(value) if len(value) <= SHOWN_CHARS else repr(value[:SHOWN_CHARS]) + f"... ({len(value)} characters)"
    return f"a {type(value).__name__}"


def _check_range(dotted: str, value: Any, source: str) -> None:
    if value is None:
        return
    bounds = RANGES.get(dotted)
    if bounds is not None and len(bounds) > 2:
        if value not in bounds:
            allowed = ", ".join(str(b) for b in bounds)
            raise ConfigError(f"{source}: '{dotted}' is {shown(value)}; use one of {allowed}")
    elif bounds is not None:
        low, high = bounds
        # written so that NaN fails too
        if not ((low is None or value >= low) and (high is None or value <= high)):
            raise ConfigError(f"{source}: '{dotted}' is {shown(value)}; use a number from {low} to {high}")
    choices = CHOICES.get(dotted)
    if choices is not None and value not in choices:
        raise ConfigError(f"{source}: '{dotted}' is {shown(value)}; use one of {', '.join(choices)}")


def _check_key_text(dotted: str, value: str, source: str) -> None:
    """An API key travels in an HTTP header: only visible ASCII can be sent (a newline never could)."""
    for i, ch in enumerate(value):
        if not "!" <= ch <= "~":
            what = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", " ": "a space"}.get(
                ch, "a control character" if ch.isascii() else "a character that is not ASCII"
            )
            raise ConfigError(
                f"{source}: '{dotted}' holds {what} (character {i + 1} of {len(value)}); a key is sent in an "
                "HTTP header, so use letters, digits and punctuation only (a trailing newline from a file?)"
            )


def _section_type(name: str) -> type:
    section = {f.name: f.default_factory for f in dataclasses.fields(Config)}[name]
    assert isinstance(section, type)  # (every section is a dataclass made by its class)
    return section


def _field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def _expected(tp: Any) -> str:
    args = typing.get_args(tp)
    if args:
        names = [_expected(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        dict: "a mapping",
        list: "a list (or a comma-separated string)",
    }.get(tp, str(tp))


def _coerce(value: Any, tp: Any, *, from_text: bool) -> Any:
    """Return value as type tp, or raise ValueError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (from_text and str(value).strip().lower() in ("", "null", "none")):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, from_text=from_text)
            except ValueError:
                pass
        raise ValueError
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).strip().lower() in ("1", "true", "yes", "on"):
            return True
        if from_text and str(value).strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError
    if tp is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if from_text:
            return int(str(value).strip())
        raise ValueError
    if tp is float:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (int, float)):
            return float(value)
        if from_text:
            return float(str(value).strip())
        raise ValueError
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. a device index written as a number
        raise ValueError
    if tp is dict:
        if isinstance(value, dict):
            return value
        raise ValueError
    if tp is list:  # a list of strings: a YAML list, or "a, b" (an environment variable, an option)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            return [str(v).strip() for v in value if str(v).strip()]
        raise ValueError
    raise ValueError


def _apply(cfg: Config, section: str, key: str, value: Any, source: str, *, from_text: bool) -> None:
    if section not in SECTIONS:
        raise ConfigError(f"{source}: unknown section '{_cut(section)}'; expected one of: {', '.join(SECTIONS + ['prices'])}")
    target = getattr(cfg, section)
    ftypes = _field_types(type(target))
    if key not in ftypes:
        raise ConfigError(f"{source}: unknown key '{section}.{_cut(key)}'; expected one of: {', '.join(ftypes)}")
    if f"{section}.{key}" in LANGUAGE_KEYS:
        value = _norwegian(value)
    try:
        coerced = _coerce(value, ftypes[key], from_text=from_text)
    except ValueError:
        raise ConfigError(_type_error(f"{source}: '{section}.{key}'", value, ftypes[key])) from None
    _check_range(f"{section}.{key}", coerced, source)
    if key == "api_key" and isinstance(coerced, str):
        _check_key_text(f"{section}.{key}", coerced, source)
    if f"{section}.{key}" == "listen.languages":
        from voicechat.stt_languages import normalize

        coerced = normalize(coerced, source=source)
    if f"{section}.{key}" == "tools.mcp":
        from voicechat.tools.mcp_config import servers

        servers(coerced, source=f"{source}: tools.mcp")
    setattr(target, key, coerced)


def _type_error(where: str, value: Any, tp: Any) -> str:
    """One line for a value of the wrong type: the item at fault in a list, and a hint when YAML read a word as
    true or false ("backchannels: [yes, okay]" holds True, not "yes")."""
    hint = " (YAML reads unquoted yes, no, on and off as true or false: put the word in quotes)"
    if tp is list and isinstance(value, list):
        for i, item in enumerate(value, 1):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                return f"{where} item {i} is {shown(item)}; expected a string" + (hint if isinstance(item, bool) else "")
    return f"{where} is {shown(value)}; expected {_expected(tp)}" + (hint if isinstance(value, bool) else "")


# keys that hold language codes (or are keyed by them): YAML 1.1 reads Norwegian's code `no` as false
LANGUAGE_KEYS = {"listen.languages", "stt.language", "tts.voices", "llm.language_prompts"}


def _norwegian(value: Any) -> Any:
    """``no`` as YAML read it (False) back to the language code, in a value, a list or a mapping's keys."""
    if value is False:
        return "no"
    if isinstance(value, list):
        return ["no" if v is False else v for v in value]
    if isinstance(value, dict):
        return {("no" if k is False else k): v for k, v in value.items()}
    return value


def _cut(name: str) -> str:
    """A key or section name from a file, cut for an error message."""
    return name if len(name) <= SHOWN_CHARS else name[:SHOWN_CHARS] + "..."


def _validate_prices(prices: Any, source: str) -> dict:
    if not isinstance(prices, dict):
        raise ConfigError(f"{source}: 'prices' must be a mapping of model name to {{input: N, output: N}}")
    out = {}
    for model, entry in prices.items():
        name = _cut(str(model))
        if not isinstance(entry, dict) or set(entry) - {"input", "output"}:
            raise ConfigError(f"{source}: 'prices.{name}' must be {{input: N, output: N}} (USD per million tokens)")
        try:
            out[str(model)] = {k: float(v) for k, v in entry.items()}
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{source}: 'prices.{name}' values must be numbers (USD per million tokens)") from None
    return out


def load_file(cfg: Config, path: Path) -> None:
    import yaml

    try:
        with open(path, "rb") as f:  # read with a bound: --config /dev/zero must not eat the memory
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MB, too large for a config file; give the YAML config file")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; check the path given with --config") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({e.__class__.__name__}); give a readable YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: broken YAML{where}: {problem}; fix the file") from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply to be a config file; fix the file") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: a value cannot be read ({str(e)[:80]}); fix the file") from None
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (stt:, llm:, tts:, ...) at the top level")
    for section, values in data.items():
        if section == "prices":
            cfg.prices.update(_validate_prices(values, str(path)))
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section '{_cut(str(section))}'; expected one of: {', '.join(SECTIONS + ['prices'])}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section '{section}' must be a mapping of keys to values")
        for key, value in values.items():
            _apply(cfg, section, str(key), value, str(path), from_text=False)


def load_env(cfg: Config, environ: typing.Mapping[str, str]) -> None:
    for section in SECTIONS:
        for key in _field_types(type(getattr(cfg, section))):
            name = f"VOICECHAT_{section}_{key}".upper()
            if name in environ:
                _apply(cfg, section, key, environ[name], f"environment variable {name}", from_text=True)
    if environ.get("OPENAI_API_KEY") and "VOICECHAT_OPENAI_API_KEY" not in environ:
        _check_key_text("openai.api_key", environ["OPENAI_API_KEY"], "environment variable OPENAI_API_KEY")
        cfg.openai.api_key = environ["OPENAI_API_KEY"]
    if environ.get("OPENAI_BASE_URL") and "VOICECHAT_OPENAI_BASE_URL" not in environ:
        cfg.openai.base_url = environ["OPENAI_BASE_URL"]


def resolve(
    config_file: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: typing.Mapping[str, str] | None = None,
) -> Config:
    """Build the effective configuration (see the module docstring for the order)."""
    environ = os.environ if environ is None else environ
    cfg = Config()
    user_file = paths.user_config_file()
    if user_file.is_file():
        load_file(cfg, user_file)
    config_file = config_file or environ.get("VOICECHAT_CONFIG") or None
    if config_file:
        load_file(cfg, Path(config_file).expanduser())
    load_env(cfg, environ)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        _apply(cfg, section, key, value, f"option for {dotted}", from_text=True)
    for section in SECTIONS:
        register_secret(getattr(getattr(cfg, section), "api_key", None))
    for server in cfg.tools.mcp.values():  # an MCP server's environment often carries a token
        for name, value in (server.get("env") or {}).items():
            if any(word in str(name).lower() for word in ("key", "token", "secret", "password", "auth")):
                register_secret(str(value))
    _check_history_url(cfg)
    return cfg


def _check_history_url(cfg: Config) -> None:
    from voicechat.storage import urls

    url = cfg.history.url
    if not url:
        return
    if not urls.is_postgres(url):
        shown = urls.redacted(url) if "://" in url else "(not a URL)"
        raise ConfigError(
            f"history.url is {shown}; expected a postgresql://user:password@host:port/database URL (or leave it empty for the SQLite file)"
        )
    register_secret(urls.password(url))


def as_dict(cfg: Config, *, masked: bool = True) -> dict[str, Any]:
    data = dataclasses.asdict(cfg)
    if masked:
        for section in SECTIONS:
            for key in SECRET_KEYS & set(data[section]):
                data[section][key] = mask(data[section][key])
        for server in data["tools"]["mcp"].values():
            if isinstance(server, dict) and isinstance(server.get("env"), dict):
                server["env"] = {k: mask(str(v)) for k, v in server["env"].items()}
        if data["history"].get("url"):
            from voicechat.storage import urls

            data["history"]["url"] = urls.redacted(data["history"]["url"])
    return data
