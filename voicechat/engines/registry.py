"""The engine registry: specs with lazy imports, built-ins plus entry-point plugins.

A third-party package adds engines with an entry point in the group
``voicechat.engines`` whose object is an :class:`EngineSpec` (or a list of them):

    [project.entry-points."voicechat.engines"]
    my-tts = "my_package.voicechat_plugin:SPEC"

The spec's ``factory`` is ``"module:attribute"``; the attribute is called with the
resolved :class:`voicechat.config.Config` and returns the engine. A factory may also
accept ``concurrent=True``: the engine will run beside the others (``talk``), so it
should not spin on the CPU between calls.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, overload

from voicechat.errors import EngineUnavailable, VoicechatError

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.engines.base import ChatModel, Engine, SpeechToText, TextToSpeech

KINDS = ("stt", "llm", "tts")
KIND_NAMES = {"stt": "speech-to-text", "llm": "chat model", "tts": "text-to-speech"}
ENTRY_POINT_GROUP = "voicechat.engines"


@dataclass(frozen=True)
class EngineSpec:
    name: str
    kind: str  # stt | llm | tts
    factory: str  # "module:callable(config) -> Engine"
    description: str
    requires: tuple[str, ...] = ()  # import names that must be present
    install: str = ""  # what to run when they are not
    default_model: Callable[[], str | None] | None = None  # path/name of the offline default, None if absent
    needs_key: bool = False

    def installed(self) -> bool:
        return all(importlib.util.find_spec(mod) is not None for mod in self.requires)

    def default_model_status(self) -> str:
        if self.default_model is None:
            return "-"
        try:
            found = self.default_model()
        except Exception:  # a broken package must not break the listing
            found = None
        return "present" if found else "missing"

    def create(self, config: Config, *, concurrent: bool = False) -> Engine:
        module_name, _, attr = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            missing = getattr(e, "name", None) or str(e)
            raise EngineUnavailable(
                f"{KIND_NAMES[self.kind]} engine '{self.name}' needs the package '{missing}': {self.install or 'install it'}"
            ) from e
        factory = getattr(module, attr)  # (the factory the spec names)
        engine: Engine
        if concurrent:
            import inspect

            if "concurrent" in inspect.signature(factory).parameters:  # (a factory's option, not an engine's)
                engine = factory(config, concurrent=True)
                return engine
        engine = factory(config)
        return engine


def _bundled(module: str, attr: str) -> Callable[[], str | None]:
    def find() -> str | None:
        mod = importlib.import_module(module)
        finder: Callable[[], str | None] = getattr(mod, attr)  # (the function the spec names)
        return finder()

    return find


BUILTINS: tuple[EngineSpec, ...] = (
    EngineSpec(
        "faster-whisper",
        "stt",
        "voicechat.engines.stt_faster_whisper:create",
        "Whisper on CTranslate2 (local; CUDA when available)",
        requires=("faster_whisper",),
        install="pip install faster-whisper",
        default_model=_bundled("voicechat.models", "whisper_model"),
    ),
    EngineSpec(
        "openai",
        "stt",
        "voicechat.engines.stt_openai:create",
        "any OpenAI-compatible /v1/audio/transcriptions server",
        requires=("openai",),
        install="pip install openai",
        needs_key=True,
    ),
    EngineSpec(
        "llama-cpp",
        "llm",
        "voicechat.engines.llm_llama_cpp:create",
        "a local GGUF model through llama.cpp (CUDA when built with it)",
        requires=("llama_cpp",),
        install="pip install llama-cpp-python",
        default_model=_bundled("voicechat.models", "smollm2_gguf"),
    ),
    EngineSpec(
        "openai",
        "llm",
        "voicechat.engines.llm_openai:create",
        "any OpenAI-compatible chat server (OpenAI, Ollama, vLLM, llama.cpp server)",
        requires=("openai",),
        install="pip install openai",
        needs_key=True,
    ),
    EngineSpec(
        "langchain",
        "llm",
        "voicechat.engines.llm_langchain:create",
        "any LangChain chat model, by provider:model",
        requires=("langchain", "langchain_core"),
        install="pip install 'voicechat[langchain]'",
    ),
    EngineSpec(
        "piper",
        "tts",
        "voicechat.engines.tts_piper:create",
        "Piper neural voices (local; CUDA with onnxruntime-gpu)",
        requires=("piper",),
        install="pip install piper-tts",
        default_model=_bundled("voicechat.models", "piper_voice"),
    ),
    EngineSpec(
        "espeak",
        "tts",
        "voicechat.engines.tts_espeak:create",
        "espeak-ng (fast, robotic; needs the espeak-ng program)",
        install="sudo apt-get install espeak-ng",
        default_model=_bundled("voicechat.models", "espeak_program"),
    ),
    EngineSpec(
        "coqui",
        "tts",
        "voicechat.engines.tts_coqui:create",
        "Coqui TTS models by path or name",
        requires=("TTS",),
        install="pip install 'voicechat[coqui]'",
    ),
    EngineSpec(
        "openai",
        "tts",
        "voicechat.engines.tts_openai:create",
        "any OpenAI-compatible /v1/audio/speech server",
        requires=("openai",),
        install="pip install openai",
        needs_key=True,
    ),
)


def _plugin_specs() -> list[EngineSpec]:
    from importlib.metadata import entry_points

    specs: list[EngineSpec] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin is reported, not fatal
            raise VoicechatError(f"engine plugin '{ep.name}' ({ep.value}) failed to load: {e}; reinstall or remove it") from e
        items = obj() if callable(obj) and not isinstance(obj, EngineSpec) else obj
        for spec in items if isinstance(items, (list, tuple)) else [items]:
            if not isinstance(spec, EngineSpec) or spec.kind not in KINDS:
                raise VoicechatError(f"engine plugin '{ep.name}' must provide EngineSpec objects with kind stt, llm or tts")
            specs.append(spec)
    return specs


def all_specs() -> list[EngineSpec]:
    return list(BUILTINS) + _plugin_specs()


def names(kind: str) -> list[str]:
    return [s.name for s in all_specs() if s.kind == kind]


def get(kind: str, name: str) -> EngineSpec:
    matches = [s for s in all_specs() if s.kind == kind and s.name == name]
    if not matches:
        raise VoicechatError(f"unknown {KIND_NAMES[kind]} engine '{name}'; choose one of: {', '.join(names(kind))}")
    return matches[-1]  # a plugin may replace a built-in


@overload
def create(kind: Literal["stt"], config: Config, name: str | None = None, *, concurrent: bool = False) -> SpeechToText: ...
@overload
def create(kind: Literal["llm"], config: Config, name: str | None = None, *, concurrent: bool = False) -> ChatModel: ...
@overload
def create(kind: Literal["tts"], config: Config, name: str | None = None, *, concurrent: bool = False) -> TextToSpeech: ...
def create(kind: str, config: Config, name: str | None = None, *, concurrent: bool = False) -> Engine:
    """The engine of this kind the config (or ``name``) chooses; a plugin's factory must make one of the base classes."""
    from voicechat.engines.base import ChatModel, SpeechToText, TextToSpeech

    section = getattr(config, kind)  # (the config section named kind)
    spec = get(kind, name or section.engine)
    from voicechat.catalogue.resolve import resolve_engine

    config = resolve_engine(kind, spec.name, config)  # catalogue names (--llm-model qwen2.5-1.5b-instruct) become installed paths
    engine = spec.create(config, concurrent=concurrent)
    base = {"stt": SpeechToText, "llm": ChatModel, "tts": TextToSpeech}[kind]
    if not isinstance(engine, base):
        raise VoicechatError(
            f"{KIND_NAMES[kind]} engine '{spec.name}' made a {type(engine).__name__}, not a {base.__name__}; "
            f"fix or uninstall the plugin that provides it"
        )
    return engine
