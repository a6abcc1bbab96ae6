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

Room noise (a fan, a crowd, a street) that webrtcvad calls speech would keep a turn open forever: on the voice
panel's pink noise at 10 dB and babble at 15 dB it called 77-91 % of the frames after the speech voiced. So where
the room has a noise floor (:class:`NoiseFloor`), a frame is speech only when its level (smoothed over
``SMOOTH_FRAMES``) also stands well above that floor, and inside a silence a voiced blip shorter than
``BLIP_FRAMES`` does not end the silence. In a quiet room (a floor below ``NOISY_FROM_DBFS``) neither applies.
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
NOISY_FROM_DBFS = -55.0  # a room whose quietest moments are louder than this has a noise floor to judge speech against
NOISE_WINDOW_S = 6.0  # the floor and the speech level are read over this much of the recent past
SMOOTH_FRAMES = 10  # levels are averaged over this many frames (300 ms at 30 ms)
ABOVE_FLOOR = 0.5  # in a noisy room, speech stands above the floor by at least this share of the recent range (floor to loud)
MIN_ABOVE_DB = 3.0
MIN_RANGE_DB = (
    6.0  # a room is judged noisy only once something louder than its floor was heard (a steady sound alone is not told from a voice)
)
BLIP_FRAMES = 3  # in a noisy room, voiced frames fewer than this in a row do not end a silence


class NoiseFloor:
    """The room's noise floor and the recent speech level, from the levels of the frames heard (pure; no VAD).

    ``loud_enough(level)``: whether a frame at this level (dBFS) can be speech: always in a quiet room; in a noisy
    one, when its smoothed level is above the floor by ``ABOVE_FLOOR`` of the range from the floor to the loud
    frames of the last few seconds (the 90th percentile), and by ``MIN_ABOVE_DB`` at least. A room is noisy when
    its floor is above ``NOISY_FROM_DBFS`` and something ``MIN_RANGE_DB`` louder was heard over it lately: a
    steady sound from the start (a hum, or a test's buzz) is left to the VAD."""

    def __init__(self, frame_ms: int) -> None:
        self.levels: deque[float] = deque(maxlen=max(1, int(NOISE_WINDOW_S * 1000 / frame_ms)))
        self.powers: deque[float] = deque(maxlen=SMOOTH_FRAMES)
        self.floor = -120.0
        self.loud = -120.0

    def push(self, level_db: float) -> float:
        """A frame's level in; its smoothed level out."""
        self.powers.append(10 ** (level_db / 10))
        smooth = 10 * float(np.log10(sum(self.powers) / len(self.powers) + 1e-12))
        self.levels.append(smooth)
        self.floor = min(self.levels)
        self.loud = float(np.percentile(np.fromiter(self.levels, float), 90)) if self.floor > NOISY_FROM_DBFS else self.floor
        return smooth

    @property
    def noisy(self) -> bool:
        return self.floor > NOISY_FROM_DBFS and self.loud - self.floor >= MIN_RANGE_DB

    def loud_enough(self, smooth_db: float) -> bool:
        if not self.noisy:
            return True
        return smooth_db > self.floor + max(MIN_ABOVE_DB, ABOVE_FLOOR * (self.loud - self.floor))


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
        self.room = NoiseFloor(cfg.frame_ms)  # (kept across utterances: the room does not change with them)
        self.index = -1
        self.reset()

    def reset(self) -> None:
        self.active = False
        self.frames: list[bytes] = []
        self.voiced = 0
        self.silence_run = 0
        self.blip = 0  # voiced frames in a row inside a silence, not yet enough to end it (noisy rooms)
        self.last_voiced = -1
        self.history.clear()

    @property
    def silence_ms(self) -> int:
        """Silence since the last voiced frame of the utterance in progress."""
        return self.silence_run * self.frame_ms

    def is_voiced(self, frame: bytes) -> bool:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        rms = float(np.sqrt(np.mean(samples * samples))) / 32768.0 if samples.size else 0.0
        smooth = self.room.push(20 * float(np.log10(rms + 1e-9)))
        if rms <= 10 ** (ENERGY_FLOOR_DBFS / 20):
            return False
        return bool(self.vad.is_speech(frame, RATE)) and self.room.loud_enough(smooth)

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
        if voiced and self.silence_run and self.room.noisy and self.blip + 1 < BLIP_FRAMES:
            self.blip += 1  # (a blip of noise, until it lasts: the silence goes on meanwhile)
            voiced = False
        elif not voiced:
            self.blip = 0
        if voiced:
            self.voiced += 1 + self.blip
            self.blip = 0
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
