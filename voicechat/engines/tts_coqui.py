"""Text to speech with Coqui TTS (package coqui-tts): a model by path + config, or by name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from voicechat.engines.base import AudioChunk, TextToSpeech
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.config import Config


class Coqui(TextToSpeech):
    name = "coqui"

    def __init__(self, config: Config) -> None:
        cfg = config.tts
        if not cfg.voice:
            raise VoicechatError(
                "the coqui engine needs a model: set tts.voice to a checkpoint path (and tts.model to its config.json) "
                "or to a Coqui model name such as tts_models/en/ljspeech/vits"
            )
        from TTS.api import TTS

        device = cfg.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        path = os.path.expanduser(cfg.voice)
        try:
            if os.path.exists(path):
                config_path = os.path.expanduser(cfg.model) if cfg.model else os.path.join(os.path.dirname(path), "config.json")
                if not os.path.isfile(config_path):
                    raise VoicechatError(f"Coqui config '{config_path}' not found; set tts.model to the model's config.json")
                self.tts = TTS(model_path=path, config_path=config_path, progress_bar=False).to(device)
            else:
                self.tts = TTS(model_name=cfg.voice, progress_bar=False).to(device)
        except VoicechatError:
            raise
        except Exception as e:
            raise VoicechatError(f"cannot load Coqui model '{cfg.voice}': {e}") from e
        self._label = cfg.voice
        self.speaker = cfg.speaker
        self.speed = cfg.speed
        self.rate = int(self.tts.synthesizer.output_sample_rate)
        self.sample_rate = self.rate

    @property
    def model_name(self) -> str:
        return self._label

    def voices(self) -> list[str]:
        return self.speakers or [self._label]

    @property
    def speakers(self) -> list[str]:
        return list(self.tts.speakers or [])

    def synthesize(self, text: str, *, speed: float | None = None) -> Iterator[AudioChunk]:  # (changes_speed is False)
        kwargs = {"text": text, "split_sentences": False}
        if self.speaker:
            kwargs["speaker"] = self.speaker
        if self.speed != 1.0:
            kwargs["speed"] = self.speed
        wav = self.tts.tts(**kwargs)
        yield AudioChunk(np.asarray(wav, dtype=np.float32), self.rate, text)


def create(config: Config) -> Coqui:
    return Coqui(config)
