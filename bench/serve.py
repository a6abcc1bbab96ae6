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

from bench.common import BIN, PARAGRAPH, med, p95, speech  # noqa: E402
from tests.serveproc import ServeProcess  # noqa: E402
from tests.voiceclient import VoiceClient  # noqa: E402

QUESTION = "What is the capital of France?"
SAY = "Good morning. The weather today is mild, with a light breeze from the west and a few clouds."


def write(path: Path, audio: np.ndarray) -> Path:
    import soundfile as sf

    sf.write(str(path), audio, 16000, subtype="PCM_16")
    return path


def in_process(long_wav: Path, rounds: int) -> dict[str, list[float]]:
    from voicechat import sentences
    from voicechat.config import resolve
    from voicechat.decode import open_audio
    from voicechat.engines import registry
    from voicechat.longform import transcribe_windows, windows

    cfg = resolve(environ={})
    stt = registry.create("stt", cfg)
    tts = registry.create("tts", cfg)
    stt.warm_up()
    tts.warm_up()
    out: dict[str, list[float]] = {"transcribe": [], "first_speech": []}
    for _ in range(rounds):
        t = time.perf_counter()
        with open_audio(long_wav) as audio:
            text = " ".join(s.text for s in transcribe_windows(stt, windows(iter(audio)), no_speech_threshold=cfg.stt.no_speech_threshold))
        out["transcribe"].append(time.perf_counter() - t)
        t = time.perf_counter()
        first = next(sentences.chunks(SAY, cfg.tts.first_chunk_words))
        next(iter(tts.synthesize(first)))
        out["first_speech"].append(time.perf_counter() - t)
    out["text"] = [text]  # type: ignore[list-item]
    stt.close()
    tts.close()
    return out


def over_http(server: ServeProcess, long_wav: Path, rounds: int) -> dict[str, list[float]]:
    import httpx

    out: dict[str, list[float]] = {"transcribe": [], "first_speech": []}
    with httpx.Client(base_url=server.url, timeout=300) as http:
        for _ in range(rounds):
            t = time.perf_counter()
            with open(long_wav, "rb") as f:
                r = http.post("/v1/audio/transcriptions", files={"file": ("long.wav", f, "audio/wav")}, data={"model": "whisper-1"})
            r.raise_for_status()
            out["transcribe"].append(time.perf_counter() - t)
            t = time.perf_counter()
            with http.stream("POST", "/v1/audio/speech", json={"input": SAY, "response_format": "pcm", "voice": "x"}) as s:
                for _ in s.iter_raw():
                    out["first_speech"].append(time.perf_counter() - t)
                    break
    return out


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
            r = subprocess.run([str(BIN / "voicechat"), "talk", "--input", str(question_wav), "--output", f"{d}/a.wav", "--json", "--no-log"],
                               capture_output=True, env=env, timeout=300)
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
    return {"clients": clients, "route": route, "ok_per_s": ok / wall, "p50": med(lat) if lat else None, "p95": p95(lat) if lat else None,
            "codes": codes, "alive": server.status("/healthz") == 200}


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
    env = {**os.environ, "VOICECHAT_CONFIG_DIR": str(work / "cfg"), "VOICECHAT_DATA_DIR": str(work / "data"),
           "VOICECHAT_LLM_TEMPERATURE": "0", "VOICECHAT_LLM_MAX_TOKENS": "48", "HF_HUB_OFFLINE": "1"}
    os.environ.update({k: v for k, v in env.items() if k.startswith(("VOICECHAT_", "HF_"))})
    para = speech(PARAGRAPH)
    long_audio = np.concatenate([para, np.zeros(8000, dtype=np.float32)])
    while len(long_audio) < 30 * 16000:
        long_audio = np.concatenate([long_audio, para])
    long_wav = write(work / "long.wav", long_audio[: 30 * 16000])
    question = speech(QUESTION)
    question_wav = write(work / "question.wav", np.concatenate([np.zeros(8000, dtype=np.float32), question, np.zeros(16000 * 3, dtype=np.float32)]))
    clip = write(work / "clip.wav", np.concatenate([question, np.zeros(8000, dtype=np.float32)]))

    print("== one client: the server against the same work in process ==")
    base = in_process(long_wav, args.rounds)
    talk = local_talk(question_wav, args.rounds, env)
    config = "serve:\n  max_active: 2\n  max_queued: 4\n  max_sessions: 8\nllm:\n  max_tokens: 48\n"
    with ServeProcess(work / "serve", config=config, env=env) as server:
        http = over_http(server, long_wav, args.rounds)
        ws_server, ws_client = ws_turn(server, question, args.rounds)
        rows = [("transcribe 30 s file", med(base["transcribe"]), med(http["transcribe"])),
                ("first speech byte", med(base["first_speech"]), med(http["first_speech"])),
                ("voice turn (voice-to-voice)", med(talk) if talk else float("nan"), med(ws_server))]
        print(f"{'':32s} {'in process':>11s} {'server':>9s} {'ratio':>7s}")
        for name, a, b in rows:
            print(f"{name:32s} {a:10.3f}s {b:8.3f}s {b / a:7.2f}x")
        if ws_client:
            print(f"{'  websocket, client side':32s} {'':11s} {med(ws_client):8.3f}s  (last speech sample sent -> first reply audio received)")
        print(f"  samples: in-process transcribe {[round(x, 3) for x in base['transcribe']]}, http {[round(x, 3) for x in http['transcribe']]}")
        print(f"  first speech: in-process {[round(x, 3) for x in base['first_speech']]}, http {[round(x, 3) for x in http['first_speech']]}")
        print(f"  voice-to-voice: local talk {[round(x, 3) for x in talk]}, websocket {[round(x, 3) for x in ws_server]}")

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
