"""The configured engines: installed, their model present (path, size) and the device each would use,
without loading anything heavy; with ``load``, each engine is made as talk makes it, and timed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicechat.doctor.report import FAIL, OK, SKIP, WARN, Line

if TYPE_CHECKING:
    from voicechat.config import Config

LOAD_SECONDS = 180.0  # the most one engine may take to load (a large model from a slow disk)
REMOTE = {"openai"}  # engines whose model lives on a server: see voicechat.doctor.remote


def size_of(path: Path) -> int:
    """Bytes in a file, or in every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def check(cfg: Config) -> list[Line]:
    lines = []
    for kind in ("stt", "llm", "tts"):
        lines.append(_engine(cfg, kind))
    return lines


def _engine(cfg: Config, kind: str) -> Line:
    from voicechat.engines import registry
    from voicechat.errors import VoicechatError

    section = getattr(cfg, kind)
    label = {"stt": "speech-to-text", "llm": "chat", "tts": "voice"}[kind]
    try:
        spec = registry.get(kind, section.engine)
    except VoicechatError as e:
        return Line("engines", label, FAIL, str(e), f"set {kind}.engine to one of: {', '.join(registry.names(kind))}", needed=True)
    if not spec.installed():
        return Line("engines", label, FAIL, f"{spec.name}: not installed", spec.install or "install the engine's package", needed=True)
    if spec.name in REMOTE:
        return Line("engines", label, OK, f"{spec.name}: a server's model ({_remote_model(cfg, kind)}); see the remote lines")
    try:
        cfg = _catalogue_paths(cfg, kind, spec.name)
    except VoicechatError as e:  # a catalogue name that is not installed: the message names the pull command
        return Line("engines", label, FAIL, f"{spec.name}: {e}", "", needed=True)
    finder = {("stt", "faster-whisper"): _whisper, ("llm", "llama-cpp"): _gguf, ("tts", "piper"): _piper, ("tts", "espeak"): _espeak}.get(
        (kind, spec.name)
    )
    if finder is None:
        return Line("engines", label, SKIP, f"{spec.name}: installed; its model is checked when it loads", "run `voicechat doctor --load`")
    try:
        return finder(cfg, label)
    except VoicechatError as e:
        return Line("engines", label, FAIL, f"{spec.name}: {e}", "", needed=True)


def _catalogue_paths(cfg: Config, kind: str, engine: str) -> Config:
    """cfg with a catalogue model name (llm.model: qwen2.5-1.5b-instruct) turned into its installed path, as
    the engine would see it; never downloading, whatever models.auto_pull says."""
    import dataclasses

    try:
        from voicechat.catalogue.resolve import resolve_engine
    except ImportError:  # (a build without the catalogue: paths only)
        return cfg
    models = getattr(cfg, "models", None)
    if models is not None and getattr(models, "auto_pull", False):
        cfg = dataclasses.replace(cfg, models=dataclasses.replace(models, auto_pull=False))
    return resolve_engine(kind, engine, cfg)


def _remote_model(cfg: Config, kind: str) -> str:
    section = getattr(cfg, kind)
    return str(getattr(section, "model", None) or getattr(section, "voice", None) or "the server's default")


def _whisper(cfg: Config, label: str) -> Line:
    from voicechat import models
    from voicechat.engines.stt_faster_whisper import MODEL_SIZES, resolve_device

    s = cfg.stt
    device, compute = resolve_device(s.device, s.compute_type)
    where = f"{device}, {compute}"
    if not s.model:
        found = models.whisper_model()
        if found is None:
            return Line(
                "engines", label, FAIL, "faster-whisper: the bundled tiny.en is missing", models.INSTALL_HINT["whisper"], needed=True
            )
        return _present(label, "faster-whisper", "tiny.en (bundled)", Path(found), where)
    path = Path(os.path.expanduser(s.model))
    if path.is_dir():
        if not (path / "model.bin").is_file():
            return Line(
                "engines",
                label,
                FAIL,
                f"faster-whisper: {path} has no model.bin",
                "give a CTranslate2 Whisper folder (stt.model)",
                needed=True,
            )
        return _present(label, "faster-whisper", s.model, path, where)
    if s.model in MODEL_SIZES or "/" in s.model:
        cached = _whisper_cache(s.model)
        if cached is not None:
            return _present(label, "faster-whisper", f"{s.model} (downloaded)", cached, where)
        return Line(
            "engines",
            label,
            WARN,
            f"faster-whisper: {s.model} is not downloaded",
            "connect to the network once (it downloads on first use), or give a local folder",
        )
    return Line(
        "engines",
        label,
        FAIL,
        f"faster-whisper: stt.model '{s.model}' not found",
        "give a CTranslate2 Whisper folder or a model name",
        needed=True,
    )


def _whisper_cache(name: str) -> Path | None:
    """The downloaded copy of a faster-whisper model name in the Hugging Face cache, or None."""
    try:
        from faster_whisper.utils import _MODELS  # (faster-whisper's own name -> repository table)
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo = _MODELS.get(name, name)
    found = try_to_load_from_cache(repo, "model.bin")
    return Path(found).parent if isinstance(found, str) else None


def _gguf(cfg: Config, label: str) -> Line:
    import llama_cpp

    from voicechat import models
    from voicechat.engines.llm_llama_cpp import check_gguf

    m = cfg.llm
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    layers = m.gpu_layers if m.gpu_layers >= 0 else (-1 if offload else 0)
    where = f"GPU, {'all' if layers < 0 else layers} layers" if offload and layers != 0 else "CPU"
    where += f", context {m.context_size}"
    path_text = m.model or models.smollm2_gguf()
    if path_text is None:
        return Line("engines", label, FAIL, "llama-cpp: the bundled SmolLM2 is missing", models.INSTALL_HINT["smollm2"], needed=True)
    path = Path(os.path.expanduser(path_text))
    if not path.exists():
        return Line(
            "engines", label, FAIL, f"llama-cpp: llm.model '{m.model}' not found", "give the path of a .gguf file (llm.model)", needed=True
        )
    check_gguf(str(path))
    return _present(label, "llama-cpp", m.model or "SmolLM2-135M-Instruct (bundled)", path, where)


def _piper(cfg: Config, label: str) -> Line:
    import onnxruntime

    from voicechat import models

    t = cfg.tts
    providers = list(onnxruntime.get_available_providers())
    cuda = "CUDAExecutionProvider" in providers and t.device != "cpu"
    where = f"{'GPU' if cuda else 'CPU'} (onnxruntime: {', '.join(p.replace('ExecutionProvider', '') for p in providers)})"
    path_text = t.voice or models.piper_voice()
    if path_text is None:
        return Line("engines", label, FAIL, "piper: the bundled en_US-joe-medium is missing", models.INSTALL_HINT["piper"], needed=True)
    path = Path(os.path.expanduser(path_text))
    if not path.is_file() or path.suffix != ".onnx":
        return Line(
            "engines",
            label,
            FAIL,
            f"piper: tts.voice '{t.voice}' not found",
            "give the path of a voice .onnx file (tts.voice)",
            needed=True,
        )
    if not Path(f"{path}.json").is_file():
        return Line(
            "engines", label, FAIL, f"piper: {path}.json is missing", "put the voice's .onnx.json beside the .onnx file", needed=True
        )
    return _present(label, "piper", t.voice or "en_US-joe-medium (bundled)", path, where)


def _espeak(cfg: Config, label: str) -> Line:
    program = shutil.which("espeak-ng") or shutil.which("espeak")
    if program is None:
        return Line("engines", label, FAIL, "espeak: the espeak-ng program is missing", "sudo apt-get install espeak-ng", needed=True)
    return Line("engines", label, OK, f"espeak: {program}, voice {cfg.tts.voice or 'en-us'}")


def _present(label: str, engine: str, name: str, path: Path, where: str) -> Line:
    size = size_of(path)
    data = {"engine": engine, "model": name, "path": str(path), "bytes": size, "device": where}
    return Line("engines", label, OK, f"{engine}: {name}, {human(size)}, {where}", data=data)


def load(cfg: Config) -> list[Line]:
    """Make each engine as talk does, time it, and close it (one at a time: the memory of one)."""
    from voicechat.engines import registry
    from voicechat.errors import VoicechatError

    lines = []
    for kind in ("stt", "llm", "tts"):
        label = {"stt": "speech-to-text", "llm": "chat", "tts": "voice"}[kind]
        started = time.perf_counter()
        engine: Any = None
        try:
            engine = registry.create(kind, cfg)
        except VoicechatError as e:
            lines.append(Line("load", label, FAIL, str(e), "", needed=True))
            continue
        finally:
            seconds = time.perf_counter() - started
        try:
            name = engine.model_name or getattr(cfg, kind).engine
        finally:
            engine.close()
        lines.append(Line("load", label, OK, f"{name} loaded in {seconds:.1f} s", data={"seconds": round(seconds, 2)}))
    return lines
