"""`voicechat doctor`: the lines, the verdict and the exit code.

Fast tier: the verdict, the rendering (one line per check, secrets removed, JSON), the sound and GPU
lines from what a probe found, and the bound on a check that hangs. End to end (one run each, side by
side): the PulseAudio test card with the bundled models; no sound server and a missing model; a broken
config; an unreachable server, a server that refuses the key and an unreachable PostgreSQL.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from tests.helpers import run_clis
from tests.servers import LoopbackServer
from tests.soundcard import PulseCard
from voicechat.doctor import gpu, sound
from voicechat.doctor.report import FAIL, OK, SKIP, WARN, Line, exit_code, render_json, render_text, verdict
from voicechat.doctor.runner import Group, run_groups

KEY = "sk-doctor-test-0123456789abcdef"
PASSWORD = "pg-secret-4321"


@pytest.mark.fast
def test_verdict_exit_code_and_rendering():
    from voicechat.errors import register_secret

    register_secret(KEY)
    fine = [
        Line("system", "python", OK, "3.11"),
        Line("history", "store", WARN, "not writable", "chmod"),
        Line("remote", "x", SKIP, "none"),
    ]
    assert exit_code(fine) == 0 and verdict(fine).startswith("talk can run")
    assert exit_code(fine + [Line("gpu", "chat", FAIL, "x", "y")]) == 0  # a failure talk does not need
    broken = fine + [Line("sound", "microphone", FAIL, f"refused {KEY}\nsecond line", "connect one", needed=True)]
    assert exit_code(broken) == 1 and "sound microphone" in verdict(broken)
    text = render_text(broken)
    lines = text.splitlines()
    assert len(lines) == len(broken) + 1  # one line per check, then the verdict
    assert lines[0].split() == ["ok", "system", "python:", "3.11"]
    assert lines[1].endswith("not writable → chmod")
    assert lines[3].startswith("fail  sound") and "refused ***" in lines[3] and "second line → connect one" in lines[3]
    assert KEY not in text and KEY not in render_json(broken)
    doc = json.loads(render_json(broken))
    assert doc["exit_code"] == 1 and doc["talk_ready"] is False and doc["counts"] == {"ok": 1, "warn": 1, "fail": 1, "skip": 1}
    assert doc["checks"][3] == {
        "group": "sound",
        "name": "microphone",
        "status": "fail",
        "detail": "refused *** second line",
        "advice": "connect one",
        "needed_by_talk": True,
    }


@pytest.mark.fast
def test_sound_lines_from_what_the_probe_found():
    device = {"index": 1, "name": "default", "hostapi": "ALSA", "samplerate": 44100}
    none = sound.lines_from({"input": {"error": "no input sound device found; connect one"}, "output": {"device": None}})
    assert [(x.name, x.status, x.needed) for x in none] == [("microphone", FAIL, True), ("speaker", FAIL, True)]
    assert none[0].detail == "no input sound device found" and "connect a microphone" in none[0].advice
    good = {"input": {"device": device, "rate_ok": 16000}, "output": {"device": device, "rate_ok": 22050}}
    heard = sound.lines_from({**good, "microphone": {"frames": 20, "seconds": 0.6, "peak": 3000}})
    assert [x.status for x in heard] == [OK, OK, OK] and "-21 dBFS" in heard[2].detail
    muted = sound.lines_from({**good, "microphone": {"frames": 20, "seconds": 0.6, "peak": 0}})[2]
    assert muted.status == WARN and "muted" in muted.advice
    silent = sound.lines_from({**good, "microphone": {"frames": 0, "seconds": 0.6, "peak": 0}})[2]
    assert silent.status == FAIL and silent.needed
    rate = sound.lines_from({**good, "output": {"device": device, "rate_error": "22050 Hz: Invalid sample rate"}})[1]
    assert rate.status == FAIL and "22050 Hz" in rate.detail
    assert sound.lines_from({"error": "the PortAudio library is missing; install it"})[0].status == FAIL


@pytest.mark.fast
def test_gpu_lines_say_why_a_gpu_is_not_used():
    from voicechat.config import Config

    cfg = Config()
    [none] = gpu.lines_from(gpu.Facts(gpu=None), cfg)
    assert none.status == OK and "no NVIDIA GPU found" in none.detail
    engines = {"stt": "faster-whisper", "llm": "llama-cpp", "tts": "piper"}
    unused = {x.name: x for x in gpu.lines_from(gpu.Facts(gpu="RTX 4090", engines=engines), cfg)}
    assert unused["speech-to-text"].status == WARN and "cuDNN 9 not found" in unused["speech-to-text"].detail
    assert unused["chat"].status == WARN and "GGML_CUDA" in unused["chat"].advice
    used = gpu.Facts(gpu="RTX 4090", cudnn=True, cublas=True, ctranslate2_cuda=True, onnx_cuda=True, llama_offload=True, engines=engines)
    assert all(x.status == OK for x in gpu.lines_from(used, cfg))
    cfg.llm.gpu_layers = 0
    assert {x.name: x for x in gpu.lines_from(used, cfg)}["chat"].status == WARN


@pytest.mark.fast
def test_a_check_that_hangs_or_raises_is_one_failed_line():
    never = threading.Event()

    def hang() -> list[Line]:
        never.wait(60)
        return []

    def boom() -> list[Line]:
        raise RuntimeError("oops")

    lines = run_groups([Group("a", lambda: [Line("a", "x", OK, "fine")], 5.0), Group("b", hang, 0.01, needed=True), Group("c", boom, 5.0)])
    never.set()
    assert [(x.group, x.status) for x in lines] == [("a", OK), ("b", FAIL), ("c", FAIL)]
    assert "did not finish within 0.01 s" in lines[1].detail and lines[1].needed
    assert "RuntimeError: oops" in lines[2].detail and not lines[2].needed


class _RefusesKey(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"error": {"message": "Incorrect API key provided"}}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checks(result) -> dict[str, dict]:
    doc = json.loads(result.stdout)
    return {f"{c['group']} {c['name']}": c for c in doc["checks"]}


@pytest.mark.serial
@pytest.mark.skipif(not PulseCard.available(), reason="needs pulseaudio")
def test_doctor_end_to_end(tmp_path):
    closed = _closed_port()
    broken = tmp_path / "broken.yaml"
    broken.write_text("llm:\n  engine: [llama-cpp\n")
    remote = tmp_path / "remote.yaml"  # (made readable by others: doctor says to chmod it)
    nowhere = {"PULSE_SERVER": f"unix:{tmp_path}/no-such-socket", "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"}
    with PulseCard(tmp_path / "pulse"), LoopbackServer(_RefusesKey, "refuses-key") as refusing:
        remote.write_text(
            f"llm:\n  engine: openai\n  base_url: http://127.0.0.1:{closed}/v1\n"
            f"stt:\n  engine: openai\n  base_url: http://127.0.0.1:{refusing.port}/v1\n  api_key: {KEY}\n"
            f"history:\n  url: postgresql://voicechat:{PASSWORD}@127.0.0.1:{closed}/voicechat\n"
        )
        remote.chmod(0o644)
        card, missing, bad, servers = run_clis(
            {"args": ("doctor", "--json")},
            {"args": ("doctor", "--json"), "env": {**nowhere, "VOICECHAT_LLM_MODEL": str(tmp_path / "missing.gguf")}},
            {"args": ("--config", str(broken), "doctor")},
            {"args": ("--config", str(remote), "doctor")},
            workers=4,
        )
    # the test card and the bundled models: ready for talk (its microphone hears digital silence: a warning)
    assert card.returncode == 0, card.stdout.decode() + card.stderr.decode()
    c = _checks(card)
    assert c["sound microphone"]["status"] == OK and c["sound speaker"]["status"] == OK
    assert c["sound listening"]["status"] in (OK, WARN) and c["sound listening"]["data"]["frames"] > 0
    assert c["engines chat"]["status"] == OK and "SmolLM2" in c["engines chat"]["detail"]
    assert c["gpu gpu"]["detail"].startswith("no NVIDIA GPU found")
    # no sound server, and a model that is not there
    assert missing.returncode == 1
    m = _checks(missing)
    assert m["sound microphone"]["status"] == FAIL and m["sound speaker"]["status"] == FAIL
    assert m["engines chat"]["status"] == FAIL and "missing.gguf" in m["engines chat"]["detail"]
    assert m["engines voice"]["status"] == OK
    # a broken config: the loader's own error, on one line
    assert bad.returncode == 1
    out = bad.stdout.decode()
    assert "fail  config   file:" in out and "broken YAML at line" in out and "Traceback" not in bad.stderr.decode()
    # servers: one unreachable, one refusing the key; PostgreSQL unreachable; no secret printed
    assert servers.returncode == 1
    text = servers.stdout.decode()
    line = {x.split()[1] + " " + x.split()[2].rstrip(":"): x for x in text.splitlines() if x.startswith(("ok", "warn", "fail", "skip"))}
    assert line["remote llm"].startswith("fail") and f"cannot reach http://127.0.0.1:{closed}/v1" in line["remote llm"]
    assert line["remote stt"].startswith("fail") and "refused the API key (401)" in line["remote stt"]
    assert line["history store"].startswith("warn") and "cannot reach PostgreSQL" in line["history store"]
    assert line["config secrets"].startswith("warn") and f"chmod 600 {remote}" in line["config secrets"]
    assert KEY not in text and PASSWORD not in text and KEY[:20] not in text
