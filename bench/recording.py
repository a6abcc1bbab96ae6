"""What a person hears and says, recorded outside the process on a private PulseAudio card, on one clock.

The microphone feed and the speaker are recorded by ``parec`` from the moment the card is ready. Each
recording starts at its own moment, so a click played into both sinks at once (through a combined sink)
before the program under test starts gives the offset between them.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np

SPEAKER_RATE = 48000


def click_at(audio: np.ndarray, rate: int) -> float:
    hits = np.flatnonzero(np.abs(audio) > 0.2)
    if not len(hits):
        raise SystemExit("the sync click was not recorded")
    return hits[0] / rate


class Recordings:
    """Start recording the microphone feed (16 kHz) and the speaker (48 kHz), with the sync click; :meth:`stop`
    gives both as float32 arrays, the click blanked, and the offset (speaker time = mic time + offset)."""

    def __init__(self, env: dict, workdir: Path, mic_rate: int = 16000) -> None:
        self.env, self.workdir, self.mic_rate = env, workdir, mic_rate
        self.procs: dict[str, subprocess.Popen] = {}
        self.files = {}
        for name, device, rate in (("mic", "vc_micfeed.monitor", mic_rate), ("speaker", "vc_speaker.monitor", SPEAKER_RATE)):
            self.files[name] = open(workdir / f"{name}.raw", "wb")
            self.procs[name] = subprocess.Popen(
                ["parec", f"--device={device}", "--format=s16le", f"--rate={rate}", "--channels=1", "--latency-msec=20"],
                stdout=self.files[name],
                env=env,
            )
        time.sleep(0.5)
        module = subprocess.run(
            [
                "pactl",
                "load-module",
                "module-combine-sink",
                "sink_name=vc_both",
                "slaves=vc_speaker,vc_micfeed",
                "channels=1",
                f"rate={SPEAKER_RATE}",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        click = np.concatenate([np.zeros(4800), 0.8 * np.sin(2 * np.pi * 1000 * np.arange(960) / SPEAKER_RATE), np.zeros(9600)])
        player = subprocess.Popen(
            ["pacat", "--playback", "--device=vc_both", "--format=s16le", f"--rate={SPEAKER_RATE}", "--channels=1"],
            stdin=subprocess.PIPE,
            env=env,
        )
        player.communicate((click * 32767).astype("<i2").tobytes())
        time.sleep(0.5)
        subprocess.run(["pactl", "unload-module", module], env=env, check=True)

    def stop(self) -> tuple[np.ndarray, np.ndarray, float]:
        for name, proc in self.procs.items():
            proc.terminate()
            proc.wait(5)
            self.files[name].close()
        raw = {n: np.frombuffer((self.workdir / f"{n}.raw").read_bytes(), "<i2").astype(np.float32) / 32768.0 for n in self.procs}
        t_mic, t_spk = click_at(raw["mic"], self.mic_rate), click_at(raw["speaker"], SPEAKER_RATE)
        raw["mic"][: int(self.mic_rate * (t_mic + 0.1))] = 0  # blank the click itself
        raw["speaker"][: int(SPEAKER_RATE * (t_spk + 0.1))] = 0
        return raw["mic"], raw["speaker"], t_spk - t_mic
