"""Text to speech with the espeak-ng program (called with an argument list, never a shell)."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from voicechat.engines.base import AudioChunk, TextToSpeech
from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.config import Config

DEFAULT_WPM = 175


class Espeak(TextToSpeech):
    name = "espeak"
    changes_speed = True

    def __init__(self, config: Config) -> None:
        cfg = config.tts
        program = shutil.which("espeak-ng") or shutil.which("espeak")
        if program is None:
            raise VoicechatError("espeak-ng is not installed; install it with `sudo apt-get install espeak-ng`")
        self.program = program
        self.voice = cfg.voice or "en-us"
        if cfg.speed <= 0:
            raise VoicechatError(f"tts.speed must be above 0 (got {cfg.speed})")
        self.wpm = max(80, min(500, int(DEFAULT_WPM * cfg.speed)))
        self.pitch = max(0, min(99, cfg.pitch))
        self.amplitude = max(0, min(200, int(100 * cfg.volume)))
        if self.voice not in self._voice_names():
            raise VoicechatError(f"espeak-ng has no voice '{self.voice}'; list them with `voicechat say --engine espeak --list-voices`")

    @property
    def model_name(self) -> str:
        return self.voice

    def _voice_names(self) -> set[str]:
        names: set[str] = set()
        for line in self.voices_table():
            names.update(line[:2])
        return names

    def voices_table(self) -> list[tuple[str, str]]:
        return voices_table(self.program)

    @property
    def languages(self) -> list[str]:
        """The language of the voice (its code in espeak-ng's table: "de", "fr-fr", "en-us")."""
        for code, name in self.voices_table():
            if self.voice in (code, name):
                return [code]
        return [self.voice]

    def voice_for(self, language: str) -> str | None:
        """espeak-ng's voice for a language (ISO 639-1), None when it has none."""
        from voicechat.languages import espeak_voice

        return espeak_voice(language, self.voices_table())

    def voices(self) -> list[str]:
        return [f"{code} ({name})" for code, name in self.voices_table()]

    def synthesize(self, text: str, *, speed: float | None = None) -> Iterator[AudioChunk]:
        """``speed`` (1.0 normal) multiplies the configured speed for this call."""
        wpm = max(80, min(900, round(self.wpm * speed))) if speed else self.wpm
        args = [self.program, "--stdout", "-v", self.voice, "-s", str(wpm), "-p", str(self.pitch), "-a", str(self.amplitude), "--stdin"]
        proc = subprocess.run(args, input=text.encode("utf-8"), capture_output=True, timeout=120)
        if proc.returncode != 0 or len(proc.stdout) < 44:
            raise VoicechatError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()[:200] or 'no audio'}")
        data = proc.stdout
        rate = int.from_bytes(data[24:28], "little")
        pcm = np.frombuffer(data[44 : 44 + (len(data) - 44) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
        if pcm.size:
            yield AudioChunk(pcm, rate, text)


@functools.lru_cache(maxsize=4)
def voices_table(program: str) -> list[tuple[str, str]]:
    """espeak-ng's voices as (language code, voice name) rows (read once per program)."""
    out = subprocess.run([program, "--voices"], capture_output=True, text=True, timeout=10).stdout
    rows = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4:
            rows.append((parts[1], parts[3]))  # language code, voice name
    return rows


def create(config: Config) -> Espeak:
    return Espeak(config)
