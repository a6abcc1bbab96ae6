"""Speech to text through any OpenAI-compatible /v1/audio/transcriptions endpoint."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from voicechat.engines.base import Segment, SpeechToText
from voicechat.engines.openai_client import make_client, translate

if TYPE_CHECKING:
    import numpy as np

    from voicechat.config import Config


class OpenAISTT(SpeechToText):
    name = "openai"

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.cfg = config.stt
        self.base_url = config.openai_base_url(config.stt)
        self.client = make_client(self.base_url, config.openai_api_key(config.stt), timeout=config.llm.timeout, retries=config.llm.retries)
        self.model = self.cfg.model or "whisper-1"

    @property
    def model_name(self) -> str:
        return self.model

    def transcribe(self, audio: np.ndarray, *, language: str | None = None) -> Iterator[Segment]:
        import openai
        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, audio, self.sample_rate, format="WAV", subtype="PCM_16")
        duration = len(audio) / self.sample_rate
        kwargs: dict[str, Any] = {
            "model": self.model,
            "file": ("audio.wav", buf.getvalue(), "audio/wav"),
            "response_format": "verbose_json",
        }
        if language or self.cfg.language:
            kwargs["language"] = language or self.cfg.language
        try:
            result = self.client.audio.transcriptions.create(**kwargs)
        except openai.OpenAIError as e:
            raise translate(e, f"transcription with '{self.model}'", self.base_url) from e
        self.info.language = getattr(result, "language", None)
        self.info.duration = float(getattr(result, "duration", None) or duration)
        segments = getattr(result, "segments", None) or []
        if segments:
            for s in segments:
                get = s.get if isinstance(s, dict) else (lambda k, d=None, s=s: getattr(s, k, d))
                yield Segment(
                    start=float(get("start", 0.0)),
                    end=float(get("end", 0.0)),
                    text=str(get("text", "")).strip(),
                    no_speech_prob=float(get("no_speech_prob", 0.0) or 0.0),
                    avg_logprob=float(get("avg_logprob", 0.0) or 0.0),
                )
        elif getattr(result, "text", "").strip():
            yield Segment(start=0.0, end=duration, text=result.text.strip())


def create(config: Config) -> OpenAISTT:
    return OpenAISTT(config)
