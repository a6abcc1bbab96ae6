"""The sound checks, run in a child process (``python -m voicechat.doctor.sound_probe SETTINGS_JSON``) so
that a sound system that hangs in C can be killed at the doctor's deadline. Prints one JSON object."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

FIRST_S = 3.0  # the most the first frame may take to come
MIC_S = 0.6  # how long the microphone is then listened to
VOICE_RATE = 22050  # what the bundled Piper voice plays at


def probe(settings: dict[str, Any]) -> dict[str, Any]:
    from voicechat.audio import find_device, list_devices, sd
    from voicechat.errors import VoicechatError

    out: dict[str, Any] = {}
    try:
        lib = sd()
        rows = list_devices()
    except VoicechatError as e:
        return {"error": str(e)}
    out["devices"] = rows
    for kind in ("input", "output"):
        entry: dict[str, Any] = {}
        out[kind] = entry
        try:
            index = find_device(settings.get(f"{kind}_device"), kind)
        except VoicechatError as e:
            entry["error"] = str(e)
            continue
        if index is None:
            index = next((d["index"] for d in rows if d[f"default_{kind}"]), None)
        device = next((d for d in rows if d["index"] == index), None)
        if device is None:  # PortAudio names no default: its first device of the kind is used
            device = next((d for d in rows if d["inputs" if kind == "input" else "outputs"] > 0), None)
        entry["device"] = device
        rate = 16000 if kind == "input" else VOICE_RATE
        try:
            check = lib.check_input_settings if kind == "input" else lib.check_output_settings
            check(device=index, samplerate=rate, channels=1, dtype="int16")
            entry["rate_ok"] = rate
        except Exception as e:  # PortAudio's errors are of several kinds
            entry["rate_error"] = f"{rate} Hz: {str(e)[:160]}"
    if "device" in out["input"]:
        out["microphone"] = _listen(settings)
    out["canceller"] = _canceller(settings.get("aec_engine", "dual"))
    if settings.get("echo") and "device" in out["input"] and "device" in out["output"]:
        try:
            from voicechat.voice.echo_check import check_echo

            report = check_echo(settings.get("input_device"), settings.get("output_device"), settings["aec_engine"], settings["latency"])
            out["echo"] = report.to_dict()
        except VoicechatError as e:
            out["echo"] = {"error": str(e)}
    return out


def _listen(settings: dict[str, Any]) -> dict[str, Any]:
    """Open the microphone as talk does, wait up to FIRST_S for its first frame (a loaded machine starts a
    stream late), then count the frames of the next MIC_S and their peak level."""
    import numpy as np

    from voicechat.audio import Microphone
    from voicechat.errors import VoicechatError

    frames = 0
    peak = 0
    try:
        with Microphone(settings.get("input_device"), frame_ms=30, latency=settings.get("latency", "low")) as mic:
            first = mic.read(FIRST_S)
            if first is None:
                return {"frames": 0, "seconds": FIRST_S, "peak": 0}
            until = time.monotonic() + MIC_S
            frame: bytes | None = first
            while True:
                if frame is not None:
                    frames += 1
                    peak = max(peak, int(np.abs(np.frombuffer(frame, dtype="<i2").astype(np.int32)).max(initial=0)))
                left = until - time.monotonic()
                if left <= 0:
                    break
                frame = mic.read(min(0.2, left))
    except VoicechatError as e:
        return {"error": str(e)}
    return {"frames": frames, "seconds": MIC_S, "peak": peak}


def _canceller(name: str) -> dict[str, Any]:
    """Whether the echo canceller talk would use can be made (its library loads)."""
    from voicechat.errors import VoicechatError
    from voicechat.voice.echo import make_canceller

    try:
        return {"name": make_canceller(name).name}
    except (VoicechatError, ImportError, OSError) as e:
        return {"error": str(e)[:200]}


def main() -> None:
    settings = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    try:
        result = probe(settings)
    except Exception as e:  # reported by the parent as one line
        result = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    # Done: no interpreter teardown. livekit's runtime (the webrtc canceller) can abort the process while it
    # winds down, which would only add noise; the devices were closed by their context managers.
    os._exit(0)


if __name__ == "__main__":
    main()
