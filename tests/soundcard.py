"""A virtual sound card for tests: real PortAudio devices with no hardware.

``AlsaFileCard``: ALSA's ``file`` plugin. The microphone reads a raw S16_LE 16 kHz
mono file, the speaker writes one (48 kHz here, like a real card, so playback
goes through a rate conversion). Bit-exact and instant: not paced in real time.

``PulseCard``: a private PulseAudio server with two null sinks: ``vc_speaker``
(whose monitor we record) and ``vc_micfeed`` (whose monitor is the default
source, i.e. the microphone). Paced in real time, for latency and barge-in.

Both set the environment for the current process (and so its subprocesses) and
restart PortAudio so that sounddevice sees the new devices.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

SPEAKER_RATE = 48000

ALSA_CONF = """
pcm.vc_mic_file {
    type file
    slave.pcm "null"
    file "/dev/null"
    infile { @func getenv vars [ VC_MIC_FILE ] default "/dev/zero" }
    format "raw"
}
pcm.vc_mic {
    type plug
    slave { pcm "vc_mic_file" format S16_LE rate 16000 channels 1 }
    hint { show on description "voicechat test microphone" }
}
pcm.vc_speaker_file {
    type file
    slave.pcm "null"
    file { @func getenv vars [ VC_SPEAKER_FILE ] default "/dev/null" }
    format "raw"
}
pcm.vc_speaker {
    type plug
    slave { pcm "vc_speaker_file" format S16_LE rate %(rate)d channels 1 }
    hint { show on description "voicechat test speaker" }
}
pcm.!default {
    type asym
    playback.pcm "vc_speaker"
    capture.pcm "vc_mic"
}
"""


class _Environment:
    """Set a card's environment variables for this process (and its children); put them back after."""

    env: dict[str, str]

    def _apply_env(self) -> None:
        self._saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        _restart_portaudio()

    def _restore_env(self) -> None:
        for k, v in getattr(self, "_saved", {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved = {}
        _restart_portaudio()


def _restart_portaudio() -> None:
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


class AlsaFileCard(_Environment):
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "asound.conf"
        self.conf.write_text(ALSA_CONF % {"rate": SPEAKER_RATE})
        self.mic_file = self.dir / "mic.raw"
        self.speaker_file = self.dir / "speaker.raw"
        self.set_mic(np.zeros(16000, dtype=np.float32))

    @property
    def env(self) -> dict[str, str]:
        return {
            "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.conf}",
            "VC_MIC_FILE": str(self.mic_file),
            "VC_SPEAKER_FILE": str(self.speaker_file),
        }

    def set_mic(self, audio: np.ndarray, pad_s: float = 5.0) -> None:
        """What the microphone will hear (16 kHz float), then silence (capture past the end repeats stale data)."""
        pcm = np.concatenate([audio, np.zeros(int(16000 * pad_s), dtype=np.float32)])
        self.mic_file.write_bytes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())

    def speaker_audio(self) -> np.ndarray:
        """Everything played so far, as float32 at SPEAKER_RATE."""
        if not self.speaker_file.exists():
            return np.zeros(0, dtype=np.float32)
        data = self.speaker_file.read_bytes()
        return np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.float32) / 32768.0

    def clear_speaker(self) -> None:
        self.speaker_file.unlink(missing_ok=True)

    def __enter__(self) -> AlsaFileCard:
        self._apply_env()
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore_env()


PULSE_CONF = """
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=vc_speaker rate=48000 channels=1 sink_properties=device.description=vc_speaker
load-module module-null-sink sink_name=vc_micfeed rate=16000 channels=1 sink_properties=device.description=vc_micfeed
set-default-sink vc_speaker
set-default-source vc_micfeed.monitor
"""


ROOM_CONF = """
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=vc_speaker rate=48000 channels=1 sink_properties=device.description=vc_speaker
load-module module-null-sink sink_name=vc_micfeed rate=16000 channels=1 sink_properties=device.description=vc_micfeed
load-module module-null-sink sink_name=vc_room rate=16000 channels=1 sink_properties=device.description=vc_room
load-module module-loopback source=vc_speaker.monitor sink=vc_room latency_msec=%(delay)d sink_input_properties=media.name=vc_echo
load-module module-loopback source=vc_micfeed.monitor sink=vc_room latency_msec=20 sink_input_properties=media.name=vc_voice
set-default-sink vc_speaker
set-default-source vc_room.monitor
"""


class PulseCard(_Environment):
    """A private PulseAudio server; PortAudio reaches it through ALSA's pulse plugin (device "pulse").

    With ``room_ms``, a room: what the speaker plays reaches the microphone ``room_ms`` later at
    ``room_volume`` (a loopback), mixed with what ``feed_mic`` plays (the user's voice)."""

    def __init__(self, directory: Path, *, room_ms: int | None = None, room_volume: float = 1.0) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.runtime = self.dir / "run"
        self.runtime.mkdir(mode=0o700, exist_ok=True)
        self.room_ms, self.room_volume = room_ms, room_volume
        (self.dir / "default.pa").write_text(PULSE_CONF if room_ms is None else ROOM_CONF % {"delay": room_ms})
        self.proc: subprocess.Popen | None = None
        self._rec: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("pulseaudio") is not None and shutil.which("pacat") is not None

    @property
    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.dir),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "PULSE_SERVER": f"unix:{self.runtime}/pulse/native",
            "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf",
        }

    def _run_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        return env

    def __enter__(self) -> PulseCard:
        self.proc = subprocess.Popen(
            [
                "pulseaudio",
                "-n",
                "-F",
                str(self.dir / "default.pa"),
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--use-pid-file=no",
                "--system=false",
            ],
            env=self._run_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if subprocess.run(["pactl", "info"], env=self._run_env(), capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            self.__exit__()
            raise RuntimeError("PulseAudio did not start")
        if self.room_ms is not None and self.room_volume != 1.0:
            self._set_echo_volume()
        self._apply_env()
        return self

    def _set_echo_volume(self) -> None:
        listing = subprocess.run(["pactl", "list", "sink-inputs"], env=self._run_env(), capture_output=True, text=True).stdout
        for block in listing.split("Sink Input #")[1:]:
            if "vc_echo" in block:
                index = block.split()[0]
                subprocess.run(
                    ["pactl", "set-sink-input-volume", index, f"{int(self.room_volume * 65536)}"], env=self._run_env(), check=True
                )
                return
        raise RuntimeError(f"the room's echo loopback is missing: {listing}")

    def __exit__(self, *exc: object) -> None:
        self.stop_recording()
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        self._restore_env()

    def feed_mic(self, audio: np.ndarray) -> subprocess.Popen:
        """Play 16 kHz float audio into the microphone, in real time (returns the player process)."""
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        proc = subprocess.Popen(
            ["pacat", "--playback", "--device=vc_micfeed", "--format=s16le", "--rate=16000", "--channels=1", "--latency-msec=20"],
            stdin=subprocess.PIPE,
            env=self._run_env(),
        )
        assert proc.stdin is not None
        proc.stdin.write(pcm)
        proc.stdin.close()
        return proc

    def start_recording(self) -> None:
        self._rec_path = self.dir / "speaker.raw"
        self._rec_file = open(self._rec_path, "wb")
        self._rec = subprocess.Popen(
            ["parec", "--device=vc_speaker.monitor", "--format=s16le", "--rate=48000", "--channels=1", "--latency-msec=20"],
            stdout=self._rec_file,
            env=self._run_env(),
        )
        time.sleep(0.2)

    def stop_recording(self) -> np.ndarray:
        if self._rec is None:
            return np.zeros(0, dtype=np.float32)
        self._rec.terminate()
        self._rec.wait(5)
        self._rec_file.close()
        self._rec = None
        data = self._rec_path.read_bytes()
        return np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.float32) / 32768.0
