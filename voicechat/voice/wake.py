"""The wake word: the session sleeps until it is heard (openWakeWord's models, bundled in the package
pyopen-wakeword, run offline), then takes one request, or stays awake ``stay_s`` after the last turn."""

from __future__ import annotations

from typing import Any

from voicechat.errors import VoicechatError

WORDS = ("alexa", "hey_jarvis", "hey_mycroft", "hey_rhasspy", "okay_nabu")  # the models inside pyopen-wakeword
LISTEN_S = 8.0  # after the wake word, this long to start speaking


def word_name(word: str) -> str:
    """A user's spelling ("hey jarvis", "Hey-Jarvis") as a model name; unknown words are an error naming the choices."""
    name = word.strip().lower().replace(" ", "_").replace("-", "_")
    if name not in WORDS:
        raise VoicechatError(f"no wake word '{word}'; choose one of {', '.join(WORDS)}")
    return name


class WakeWord:
    """A detector: feed 16 kHz int16 frames, get True once the word's probability reaches the threshold."""

    def __init__(self, word: str, threshold: float = 0.5) -> None:
        try:
            from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures
        except ImportError:
            raise VoicechatError("--wake needs the package pyopen-wakeword; install it with `pip install pyopen-wakeword`") from None
        self.word = word_name(word)
        self.threshold = threshold
        self._features = OpenWakeWordFeatures.from_builtin()
        self._model = OpenWakeWord.from_builtin(Model(self.word))

    def heard(self, frame: bytes) -> bool:
        hit = False
        for features in self._features.process_streaming(frame):
            for p in self._model.process_streaming(features):
                hit = hit or p >= self.threshold
        return hit

    def reset(self) -> None:
        self._features.reset()
        self._model.reset()

    def close(self) -> None:
        self._model.close()
        self._features.close()


class WakeGate:
    """Asleep or awake, for the listener. Awake: from the wake word until LISTEN_S pass without a turn
    starting, and while a turn is heard or answered; then ``stay_s`` more after the last turn."""

    def __init__(self, detector: Any, stay_s: float) -> None:
        self.detector, self.stay_s = detector, stay_s
        self.awake = False
        self._until = 0.0
        self._busy = False  # a turn is being heard or answered

    def feed(self, frame: bytes, now: float) -> bool:
        """While asleep: True when this frame completes the wake word (the gate is then awake)."""
        if self.detector.heard(frame):
            self.detector.reset()
            self.awake, self._busy, self._until = True, False, now + max(LISTEN_S, self.stay_s)
            return True
        return False

    def still_awake(self, now: float, busy: bool) -> bool:
        """Called for each frame while awake; False when it falls asleep."""
        if busy:
            self._busy = True
            return True
        if self._busy:  # the last turn is over: stay_s from now (0: one request)
            self._busy = False
            self._until = now + self.stay_s
        if now >= self._until:
            self.awake = False
        return self.awake
