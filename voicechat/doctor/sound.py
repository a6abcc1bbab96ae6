"""Sound devices: the default (or configured) input and output, the rates talk uses, and a short listen
that proves the microphone delivers frames. The devices are opened in a child process
(:mod:`voicechat.doctor.sound_probe`) killed at the deadline: a sound server that hangs cannot hang doctor."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from voicechat.doctor.report import FAIL, OK, SKIP, WARN, Line

if TYPE_CHECKING:
    from voicechat.config import Config

SECONDS = 15.0  # PortAudio's start, the device queries and MIC_S of listening, on a loaded machine
ECHO_SECONDS = 15.0  # the echo check plays 3 s and listens to the tail
DEVICES = "check them with `voicechat devices`, or pick others with audio.input_device / audio.output_device"


def settings(cfg: Config, echo: bool) -> dict[str, Any]:
    a = cfg.audio
    return {
        "input_device": a.input_device,
        "output_device": a.output_device,
        "latency": a.latency,
        "aec_engine": a.aec_engine,
        "echo": echo,
    }


def check(cfg: Config, echo: bool = False) -> list[Line]:
    timeout = SECONDS + (ECHO_SECONDS if echo else 0.0)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "voicechat.doctor.sound_probe", json.dumps(settings(cfg, echo))],
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:  # (subprocess.run kills the child)
        return [
            Line(
                "sound",
                "devices",
                FAIL,
                f"the sound system did not answer within {timeout:g} s",
                f"restart it (PulseAudio, PipeWire); {DEVICES}",
                needed=True,
            )
        ]
    try:
        result = json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (IndexError, ValueError):
        err = " ".join(done.stderr.decode("utf-8", "replace").split())[-200:]
        return [
            Line(
                "sound",
                "devices",
                FAIL,
                f"the device check ended without a result (exit {done.returncode}) {err}".strip(),
                DEVICES,
                needed=True,
            )
        ]
    return lines_from(result, echo)


def _name(device: dict[str, Any] | None) -> str:
    if not device:
        return "PortAudio's default"
    return f"{device['index']}: {device['name']} ({device['hostapi']}, {device['samplerate']} Hz)"


def lines_from(result: dict[str, Any], echo: bool = False) -> list[Line]:
    """The lines for what the child found (see sound_probe.probe for its shape)."""
    if "error" in result:
        return [Line("sound", "devices", FAIL, str(result["error"]), DEVICES, needed=True)]
    lines: list[Line] = []
    for kind, label, rate, advice in (
        ("input", "microphone", 16000, "connect a microphone (talk takes typed messages without one)"),
        ("output", "speaker", 22050, "connect a speaker or headphones (talk prints replies without one)"),
    ):
        entry = result.get(kind) or {}
        if "error" in entry:  # the error's first half says what is wrong; the advice here says what to do
            lines.append(Line("sound", label, FAIL, str(entry["error"]).split("; ")[0], advice, needed=True))
            continue
        device = entry.get("device")
        if device is None:
            lines.append(Line("sound", label, FAIL, f"no {kind} device found", advice, needed=True))
            continue
        if "rate_error" in entry:
            lines.append(
                Line(
                    "sound", label, FAIL, f"{_name(device)} refuses {entry['rate_error']}", f"choose another device; {DEVICES}", needed=True
                )
            )
            continue
        lines.append(Line("sound", label, OK, f"{_name(device)}; {rate} Hz mono accepted", data={"device": device}))
    mic = result.get("microphone")
    if mic is not None:
        lines.append(_listening(mic))
    if echo:
        lines.append(_echo(result.get("echo")))
    elif "canceller" in result:
        lines.append(_canceller(result["canceller"]))
    return lines


def _canceller(found: dict[str, Any]) -> Line:
    if "error" in found:
        return Line(
            "sound",
            "echo",
            WARN,
            f"echo cancellation cannot start ({found['error']})",
            "set audio.aec_engine to another, or use headphones",
        )
    return Line(
        "sound",
        "echo",
        OK,
        f"echo cancellation available ({found.get('name')}); measure it with `voicechat doctor --echo` (plays a 3 s sound)",
    )


def _listening(mic: dict[str, Any]) -> Line:
    if "error" in mic:
        return Line("sound", "listening", FAIL, str(mic["error"]), DEVICES, needed=True)
    frames, seconds, peak = int(mic.get("frames", 0)), float(mic.get("seconds", 0)), int(mic.get("peak", 0))
    data = {"frames": frames, "seconds": seconds, "peak": peak}
    if frames == 0:
        return Line(
            "sound",
            "listening",
            FAIL,
            f"the microphone opened but gave no sound in {seconds:g} s",
            f"is it in use or suspended? {DEVICES}",
            needed=True,
            data=data,
        )
    level = f"peak {20 * math.log10(peak / 32768):.0f} dBFS" if peak else "digital silence"
    detail = f"{frames} frames of 30 ms in {seconds:g} s, {level}"
    if peak == 0:
        return Line(
            "sound", "listening", WARN, detail, "the microphone may be muted: check its level in the system's sound settings", data=data
        )
    return Line("sound", "listening", OK, detail, data=data)


def _echo(echo: dict[str, Any] | None) -> Line:
    if echo is None:
        return Line("sound", "echo", SKIP, "not measured: no microphone or no speaker")
    if "error" in echo:
        return Line("sound", "echo", WARN, str(echo["error"]), "try another audio.aec_engine, or use headphones")
    if not echo.get("echo_heard"):
        return Line("sound", "echo", OK, f"the microphone did not hear the speaker ({echo.get('engine')}): no echo to remove", data=echo)
    erle = echo.get("erle_db")
    detail = (
        f"echo heard {echo.get('delay_ms')} ms after playing, at {echo.get('echo_level_db')} dB; {echo.get('engine')} removed {erle} dB"
    )
    if erle is not None and erle < 10:
        return Line("sound", "echo", WARN, detail, "little echo removed: use headphones, or try another audio.aec_engine", data=echo)
    return Line("sound", "echo", OK, detail, data=echo)
