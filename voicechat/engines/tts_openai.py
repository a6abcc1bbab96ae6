"""Text to speech through any OpenAI-compatible /v1/audio/speech endpoint, read as a stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from voicechat.engines.base import AudioChunk, TextToSpeech
from voicechat.engines.openai_client import make_client, translate

if TYPE_CHECKING:
    from voicechat.config import Config

PCM_RATE = 24000  # OpenAI's raw "pcm" format: 24 kHz, 16-bit signed little-endian, mono
VOICES = ["alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"]


class OpenAITTS(TextToSpeech):
    name = "openai"

    def __init__(self, config: Config) -> None:
        cfg = config.tts
        self.base_url = config.openai_base_url(cfg)
        self.client = make_client(self.base_url, config.openai_api_key(cfg), timeout=config.llm.timeout, retries=config.llm.retries)
        self.voice = cfg.voice or "alloy"
        self.model = cfg.model or "tts-1"
        self.speed = cfg.speed

    @property
    def model_name(self) -> str:
        return f"{self.model}/{self.voice}"

    def voices(self) -> list[str]:
        return VOICES

    def installed_voices(self) -> dict[str, str]:
        """The server's voices by name (this one first); another is the same engine with tts.voice set to it."""
        return {self.voice: self.voice, **{v: v for v in VOICES}}

    def synthesize(self, text: str, *, speed: float | None = None) -> Iterator[AudioChunk]:  # (changes_speed is False)
        import openai

        block = PCM_RATE // 5 * 2  # 200 ms of audio per chunk
        try:
            with self.client.audio.speech.with_streaming_response.create(
                model=self.model, voice=self.voice, input=text, response_format="pcm", speed=self.speed
            ) as response:
                pending = b""
                for data in response.iter_bytes(block):
                    pending += data
                    usable = len(pending) // 2 * 2
                    if usable:
                        yield AudioChunk(np.frombuffer(pending[:usable], "<i2").astype(np.float32) / 32768.0, PCM_RATE, text)
                        pending = pending[usable:]
        except openai.OpenAIError as e:
            raise translate(e, f"speech with '{self.model}' voice '{self.voice}'", self.base_url) from e


def create(config: Config) -> OpenAITTS:
    return OpenAITTS(config)
