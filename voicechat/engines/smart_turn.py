"""The audio turn model: Smart Turn v3 (BSD-2), which ships inside the ``pipecat-ai`` wheel.

It reads the last 8 s of 16 kHz audio as Whisper log-mel features and returns the probability
that the speaker has finished their turn, from how the voice sounds (pitch, pace, a trailing
breath), not from the words. Run once per pause on one thread: 0.1-0.3 s a call in `talk` on two
cores beside the transcription, which is why it starts before the pause (turn.audio_model_ms).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voicechat.errors import VoicechatError

RATE = 16000  # Smart Turn hears 16 kHz mono, as voicechat.voice.io frames are

if TYPE_CHECKING:
    from voicechat.config import TurnConfig

WINDOW_S = 8
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"


def bundled_model() -> Path | None:
    """The model inside the installed pipecat-ai package, without importing pipecat."""
    import importlib.util

    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(list(spec.submodule_search_locations)[0]) / "audio" / "turn" / "smart_turn" / "data"
    found = sorted(data.glob("smart-turn-v3*.onnx")) if data.is_dir() else []
    preferred = data / MODEL_FILE
    return preferred if preferred.exists() else (found[-1] if found else None)


class SmartTurn:
    def __init__(self, path: str | None = None, threads: int = 1) -> None:
        model = Path(os.path.expanduser(path)) if path else bundled_model()
        if model is None or not model.exists():
            missing = f"turn.model {model} does not exist" if path else "the Smart Turn model is not installed"
            raise VoicechatError(
                f"{missing}; install it with `pip install --no-deps pipecat-ai`, set turn.model to a Smart Turn "
                ".onnx file, or set turn.audio_model: false"
            )
        import faster_whisper  # noqa: F401 - the package first: importing only its submodule while another thread imports the
        import onnxruntime as ort

        # package (the speech-to-text engine, loading at the same time) deadlocks Python's import locks
        from faster_whisper.feature_extractor import FeatureExtractor

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise VoicechatError(f"cannot load the turn model {model}: {e}") from e
        self.input_name = self.session.get_inputs()[0].name
        self.features = FeatureExtractor(feature_size=80, chunk_length=WINDOW_S)
        self.path = model

    def complete_probability(self, audio: np.ndarray) -> float:
        """P(the turn is complete) for 16 kHz float32 audio that ends at the pause."""
        n = WINDOW_S * RATE
        x = np.asarray(audio[-n:], dtype=np.float32)
        if len(x) < n:  # the model was trained on audio padded at the start
            x = np.concatenate([np.zeros(n - len(x), dtype=np.float32), x])
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)  # zero mean, unit variance, as in training
        mel = self.features(x, padding=0)[:, : n // 160]
        out = self.session.run(None, {self.input_name: mel[None].astype(np.float32)})[0]
        return float(np.asarray(out).reshape(-1)[0])


def load_turn_model(cfg: TurnConfig) -> tuple[SmartTurn | None, str | None]:
    """The audio turn model when the config asks for it, and a notice when it was asked for but is missing."""
    if cfg.detector != "meaning" or not cfg.audio_model:
        return None, None
    if cfg.model is None and bundled_model() is None:
        return None, ("turn detection uses the words only: the audio turn model is not installed (`pip install --no-deps pipecat-ai`)")
    return SmartTurn(cfg.model), None
