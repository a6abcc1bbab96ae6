"""Cut a stream of 16 kHz mono int16 frames into utterances with webrtcvad.

Rules (``listen`` config):
- pre-roll: the frames before speech starts are kept, so the first syllable is not cut;
- start: speech begins when ``start_ratio`` of the frames in a ``start_window_ms`` window are voiced;
- pauses: once speech has started, every run of silence is reported as it reaches ``pause_ms`` (the
  moment to transcribe what was said so far and to judge whether the turn is over);
- end: whoever drives the segmenter ends the utterance (:meth:`Segmenter.finish`) when its turn
  policy says so; the segmenter itself ends it only at ``max_utterance_s``;
- bursts with less than ``min_speech_ms`` of voiced frames (a cough, a click) are dropped.
A frame also counts as silence when it is quieter than ``ENERGY_FLOOR_DBFS`` whatever the VAD says.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.config import ListenConfig

RATE = 16000
ENERGY_FLOOR_DBFS = -50.0
TRAILING_KEEP_MS = 150


@dataclass
class SpeechStarted:
    frame_index: int


@dataclass
class Pause:
    """Silence inside an utterance has lasted ``pause_ms``; ``last_voiced_frame`` is where speech stopped."""

    last_voiced_frame: int


@dataclass
class Utterance:
    audio: np.ndarray  # float32, 16 kHz: from the pre-roll to the end of speech plus a short tail
    last_voiced_frame: int  # index of the last voiced frame (end of speech)
    end_frame: int  # index of the frame at which the utterance was ended


@dataclass
class UtteranceDropped:
    reason: str


class Segmenter:
    def __init__(self, cfg: ListenConfig, pause_ms: int = 150) -> None:
        import webrtcvad

        if cfg.frame_ms not in (10, 20, 30):
            raise VoicechatError(f"listen.frame_ms is {cfg.frame_ms}; webrtcvad takes 10, 20 or 30")
        if not 0 <= cfg.aggressiveness <= 3:
            raise VoicechatError(f"listen.aggressiveness is {cfg.aggressiveness}; use 0 (lenient) to 3 (strict)")
        self.cfg = cfg
        self.frame_ms = cfg.frame_ms
        self.vad = webrtcvad.Vad(cfg.aggressiveness)
        self.frame_bytes = RATE * cfg.frame_ms // 1000 * 2
        self.window_n = max(1, cfg.start_window_ms // cfg.frame_ms)
        self.history: deque[tuple[bytes, bool]] = deque(maxlen=self.window_n + cfg.preroll_ms // cfg.frame_ms)
        # a pause is reported no sooner than the kept tail, so the utterance's audio stops growing from then on
        self.pause_n = max(1, pause_ms // cfg.frame_ms, TRAILING_KEEP_MS // cfg.frame_ms)
        self.max_n = int(cfg.max_utterance_s * 1000 / cfg.frame_ms)
        self.min_voiced_n = max(1, cfg.min_speech_ms // cfg.frame_ms)
        self.index = -1
        self.reset()

    def reset(self) -> None:
        self.active = False
        self.frames: list[bytes] = []
        self.voiced = 0
        self.silence_run = 0
        self.last_voiced = -1
        self.history.clear()

    @property
    def silence_ms(self) -> int:
        """Silence since the last voiced frame of the utterance in progress."""
        return self.silence_run * self.frame_ms

    def is_voiced(self, frame: bytes) -> bool:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        rms = float(np.sqrt(np.mean(samples * samples))) / 32768.0 if samples.size else 0.0
        if rms <= 10 ** (ENERGY_FLOOR_DBFS / 20):
            return False
        return bool(self.vad.is_speech(frame, RATE))

    def push(self, frame: bytes, detect: bytes | None = None) -> list[SpeechStarted | Pause | Utterance | UtteranceDropped]:
        """One frame in; ``detect``, when given, is the same moment as the start of speech should be judged on (an
        echo canceller's more suppressed output) while ``frame`` is what is kept, and what an utterance in
        progress is judged on (the suppressed view would clip the voice of someone talking over the echo)."""
        if len(frame) != self.frame_bytes:
            raise ValueError(f"frame of {len(frame)} bytes; expected {self.frame_bytes}")
        self.index += 1
        voiced = self.is_voiced(frame if detect is None or self.active else detect)
        events: list[SpeechStarted | Pause | Utterance | UtteranceDropped] = []
        if not self.active:
            self.history.append((frame, voiced))
            window = list(self.history)[-self.window_n :]
            if len(window) == self.window_n and sum(v for _, v in window) >= self.cfg.start_ratio * self.window_n:
                self.active = True
                self.frames = [f for f, _ in self.history]
                self.voiced = sum(v for _, v in self.history)
                self.silence_run = 0
                self.last_voiced = self.index
                self.history.clear()
                events.append(SpeechStarted(self.index))
            return events
        self.frames.append(frame)
        if voiced:
            self.voiced += 1
            self.silence_run = 0
            self.last_voiced = self.index
        else:
            self.silence_run += 1
            if self.silence_run == self.pause_n:
                events.append(Pause(self.last_voiced))
        if len(self.frames) >= self.max_n:
            events.append(self.finish())
        return events

    def audio(self) -> np.ndarray:
        """The utterance so far, up to the end of speech plus a short tail (float32)."""
        keep_tail = TRAILING_KEEP_MS // self.frame_ms
        frames = self.frames[: len(self.frames) - max(0, self.silence_run - keep_tail)]
        return np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float32) / 32768.0

    @property
    def speech_enough(self) -> bool:
        """The utterance so far holds enough voiced frames to be speech, not a click or a cough."""
        return self.voiced >= self.min_voiced_n

    def finish(self) -> Utterance | UtteranceDropped:
        """End the utterance in progress now."""
        audio, enough = self.audio(), self.speech_enough
        last_voiced, end = self.last_voiced, self.index
        self.reset()
        if not enough:
            return UtteranceDropped("too short")
        return Utterance(audio, last_voiced, end)

    def flush(self) -> Utterance | UtteranceDropped | None:
        """End of input: finish an utterance in progress."""
        return self.finish() if self.active else None
