"""`voicechat serve` against the same work in process, and under load.

    python bench/serve.py [--rounds 3] [--clients 1,2,4,8] [--requests 6]

1. One client, ratios against the in-process baseline measured in the same run:
   - transcription of a 30 s file over HTTP (upload + decode + transcribe) vs the engine in process
     (decode + transcribe, as `voicechat transcribe` does);
   - time to the first speech byte over HTTP vs the in-process engine's first sentence;
   - a spoken turn over the WebSocket vs the same turn in local `voicechat talk --input` (voice-to-voice as
     each reports it; the WebSocket one also from the client's side: last speech sample sent -> first reply
     audio received).
2. 1, 2, 4 and 8 concurrent clients (transcription of a 3 s clip, and a short chat): requests per second,
   p50/p95, errors by status, with serve.max_active 2 and serve.max_queued 4: past that only 503s.
   The server's peak RSS (VmHWM) at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import BIN, PARAGRAPH, med, p95, speech
from tests.serveproc import ServeProcess
from tests.voiceclient import VoiceClient

QUESTION = "What is the capital of France?"
SAY = "Good morning. The weather today is mild, with a light breeze from the west and a few clouds."


def write(path: Path, audio: np.ndarray) -> Path:
    import soundfile as sf

    sf.write(str(path), audio, 16000, subtype="PCM_16")
    return path


class InProcess:
    """The same engines voicechat configures, called in this process."""

    def __init__(self) -> None:
        from voicechat.config import resolve
        from voicechat.engines import registry

        self.cfg = resolve(environ={})
        self.stt = registry.create("stt", self.cfg)
        self.tts = registry.create("tts", self.cfg)
        self.stt.warm_up()
        self.tts.warm_up()

    def transcribe(self, path: Path) -> float:
        from voicechat.decode import open_audio
        from voicechat.transcription.longform import transcribe_windows, windows

        t = time.perf_counter()
        with open_audio(path) as audio:
            list(transcribe_windows(self.stt, windows(iter(audio)), no_speech_threshold=self.cfg.stt.no_speech_threshold))
        return time.perf_counter() - t

    def first_speech(self, text: str) -> float:
        from voicechat import sentences

        t = time.perf_counter()
        first = next(sentences.chunks(text, self.cfg.tts.first_chunk_words))
        next(iter(self.tts.synthesize(first)))
        return time.perf_counter() - t


def http_transcribe(http, path: Path) -> float:
    t = time.perf_counter()
    with open(path, "rb") as f:
        r = http.post("/v1/audio/transcriptions", files={"file": ("long.wav", f, "audio/wav")}, data={"model": "whisper-1"})
    r.raise_for_status()
    return time.perf_counter() - t


def http_first_speech(http, text: str) -> float:
    t = time.perf_counter()
    with http.stream("POST", "/v1/audio/speech", json={"input": text, "response_format": "pcm", "voice": "x"}) as s:
        for _ in s.iter_raw():
            return time.perf_counter() - t
    return float("nan")


def ws_turn(server: ServeProcess, question: np.ndarray, rounds: int) -> tuple[list[float], list[float]]:
    server_side, client_side = [], []
    for _ in range(rounds):
        c = VoiceClient(server.url)
        c.wait_for(lambda e: e["type"] == "session")
        lead = np.zeros(8000, dtype=np.float32)
        c.stream(lead)
        c.stream(question)
        speech_end = time.perf_counter()
        c.stream(np.zeros(16000 * 3, dtype=np.float32))
        stats = c.wait_for(lambda e: e["type"] == "turn_stats", timeout=60)
        if c.audio_at:
            client_side.append(c.audio_at[0] - speech_end)
        server_side.append(stats["latency"]["voice_to_voice"])
        c.close()
    return server_side, client_side


def local_talk(question_wav: Path, rounds: int, env: dict) -> list[float]:
    out = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run(
                [str(BIN / "voicechat"), "talk", "--input", str(question_wav), "--output", f"{d}/a.wav", "--json", "--no-log"],
                capture_output=True,
                env=env,
                timeout=300,
            )
        stats = [json.loads(line) for line in r.stdout.decode().splitlines() if '"turn_stats"' in line]
        if stats:
            out.append(stats[0]["latency"]["voice_to_voice"])
    return out


def load(server: ServeProcess, clip: Path, clients: int, per_client: int, route: str) -> dict:
    import httpx

    lat: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()

    def one(http: httpx.Client) -> tuple[int, float]:
        t = time.perf_counter()
        if route == "transcribe":
            with open(clip, "rb") as f:
                r = http.post("/v1/audio/transcriptions", files={"file": ("clip.wav", f, "audio/wav")}, data={"model": "whisper-1"})
        else:
            r = http.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "Name a colour."}]})
        return r.status_code, time.perf_counter() - t

    def worker() -> None:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            for _ in range(per_client):
                try:
                    code, seconds = one(http)
                except Exception:
                    code, seconds = -1, 0.0
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                    if code == 200:
                        lat.append(seconds)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = codes.get(200, 0)
    return {
        "clients": clients,
        "route": route,
        "ok_per_s": ok / wall,
        "p50": med(lat) if lat else None,
        "p95": p95(lat) if lat else None,
        "codes": codes,
        "alive": server.status("/healthz") == 200,
    }


def vm_hwm(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--requests", type=int, default=4, help="requests per client in the load test")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    env = {
        **os.environ,
        "VOICECHAT_CONFIG_DIR": str(work / "cfg"),
        "VOICECHAT_DATA_DIR": str(work / "data"),
        "VOICECHAT_LLM_TEMPERATURE": "0",
        "VOICECHAT_LLM_MAX_TOKENS": "48",
        "HF_HUB_OFFLINE": "1",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith(("VOICECHAT_", "HF_"))})
    para = speech(PARAGRAPH)
    long_audio = np.concatenate([para, np.zeros(8000, dtype=np.float32)])
    while len(long_audio) < 30 * 16000:
        long_audio = np.concatenate([long_audio, para])
    long_wav = write(work / "long.wav", long_audio[: 30 * 16000])
    question = speech(QUESTION)
    question_wav = write(
        work / "question.wav", np.concatenate([np.zeros(8000, dtype=np.float32), question, np.zeros(16000 * 3, dtype=np.float32)])
    )
    clip = write(work / "clip.wav", np.concatenate([question, np.zeros(8000, dtype=np.float32)]))

    print("== one client: the server against the same work in process (alternating, round by round) ==")
    import httpx

    local = InProcess()
    talk: list[float] = []
    config = "serve:\n  max_active: 2\n  max_queued: 4\n  max_sessions: 8\nllm:\n  max_tokens: 48\n"
    with ServeProcess(work / "serve", config=config, env=env) as server:
        times: dict[str, list[float]] = {k: [] for k in ("t_local", "t_http", "s_local", "s_http")}
        ws_server: list[float] = []
        ws_client: list[float] = []
        with httpx.Client(base_url=server.url, timeout=300) as http:
            http_first_speech(http, SAY)  # the first request of a connection pays for the connection
            for r in range(args.rounds):  # who goes first alternates; a pause lets the other's threads stop spinning
                jobs = [("t_local", lambda: local.transcribe(long_wav)), ("t_http", lambda: http_transcribe(http, long_wav))]
                jobs += [("s_local", lambda: local.first_speech(SAY)), ("s_http", lambda: http_first_speech(http, SAY))] * 3
                for key, job in jobs if r % 2 == 0 else jobs[::-1]:
                    time.sleep(0.5)
                    times[key].append(job())
                talk += local_talk(question_wav, 1, env)
                a, b = ws_turn(server, question, 1)
                ws_server += a
                ws_client += b
        rows = [
            ("transcribe 30 s file", times["t_local"], times["t_http"]),
            ("first speech byte", times["s_local"], times["s_http"]),
            ("voice turn (voice-to-voice)", talk, ws_server),
        ]
        print(f"{'':32s} {'in process':>11s} {'server':>9s} {'ratio':>7s}")
        for name, a, b in rows:
            print(
                f"{name:32s} {med(a):10.3f}s {med(b):8.3f}s {med(b) / med(a):7.2f}x   samples {[round(x, 3) for x in a]} vs {[round(x, 3) for x in b]}"
            )
        if ws_client:
            print(
                f"{'  websocket, client side':32s} {'':11s} {med(ws_client):8.3f}s  (last speech sample sent -> first reply audio received)"
            )
        print("\n== concurrent clients (serve.max_active 2, serve.max_queued 4) ==")
        print(f"{'route':11s} {'clients':>7s} {'ok/s':>6s} {'p50':>7s} {'p95':>7s}  statuses            alive")
        for route in ("transcribe", "chat"):
            for n in [int(x) for x in args.clients.split(",")]:
                r = load(server, clip, n, args.requests, route)
                p50 = f"{r['p50']:.2f}s" if r["p50"] else "-"
                p95_ = f"{r['p95']:.2f}s" if r["p95"] else "-"
                print(f"{route:11s} {n:7d} {r['ok_per_s']:6.2f} {p50:>7s} {p95_:>7s}  {json.dumps(r['codes']):18s}  {r['alive']}")
        print(f"\nserver peak RSS (VmHWM): {vm_hwm(server.proc.pid):.0f} MB")


if __name__ == "__main__":
    main()
