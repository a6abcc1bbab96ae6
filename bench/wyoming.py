"""voicechat's Wyoming server against the servers people run today, side by side in one run.

    python bench/wyoming.py [--rounds 3] [--clients 1,2,4]

wyoming-faster-whisper and wyoming-piper are installed into their own virtualenvs under bench/out
(first run: a minute of pip) and run with the same bundled Whisper tiny.en model (int8, beam 5) and
the same Piper voice. Each round streams the same clips in real time (1024-sample chunks, as Home
Assistant sends them) to each server in turn and measures, from the client:
- transcript latency: `audio-stop` sent -> `transcript` received, and the word error rate;
- first audio: `synthesize` sent -> first `audio-chunk`; total: -> `audio-stop`;
- several clients at once: latency after `audio-stop`, p50/p95, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# this file is named like the protocol's package: keep its own folder off the path so `import wyoming` finds the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bench.common import OUT, PARAGRAPH, med, p95, speech
from tests.helpers import wer
from tests.serveproc import ServeProcess, free_port

SHORT = "Turn on the lights in the living room and set the temperature to twenty one degrees."
MORE = (
    "In sports, the home team won the final match by two goals, and the fans celebrated late into the night. "
    "Traffic on the main roads is light this morning."
)
SAYS = [
    "Good morning.",
    "The living room lights are now on, and the heating is set to twenty one degrees. Is there anything else you need?",
]


def venv(name: str, package: str) -> Path:
    env = OUT / name
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", package], check=True)
    return python


async def connect(port: int, timeout: float = 120):
    from wyoming.client import AsyncTcpClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            c = AsyncTcpClient("127.0.0.1", port)
            await c.connect()
            return c
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def wait_up(port: int) -> None:
    from wyoming.info import Describe

    c = await connect(port)
    await c.write_event(Describe().event())
    await c.read_event()
    await c.disconnect()


async def transcribe(port: int, audio: np.ndarray) -> tuple[str, float]:
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    c = await connect(port)
    try:
        await c.write_event(Transcribe(language="en").event())
        await c.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        start = time.perf_counter()
        for n, i in enumerate(range(0, len(pcm), 2048)):
            await c.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=pcm[i : i + 2048]).event())
            await asyncio.sleep(max(0.0, start + (n + 1) * 1024 / 16000 - time.perf_counter()))
        stopped = time.perf_counter()
        await c.write_event(AudioStop().event())
        while True:
            event = await c.read_event()
            if event is None:
                raise RuntimeError("closed before the transcript")
            if Transcript.is_type(event.type):
                return Transcript.from_event(event).text, time.perf_counter() - stopped
    finally:
        await c.disconnect()


async def synthesize(port: int, text: str) -> tuple[float, float]:
    from wyoming.tts import Synthesize

    c = await connect(port)
    try:
        t = time.perf_counter()
        await c.write_event(Synthesize(text=text).event())
        first = None
        while True:
            event = await c.read_event()
            if event is None:
                raise RuntimeError("closed before audio-stop")
            if event.type == "audio-chunk" and first is None:
                first = time.perf_counter() - t
            if event.type == "audio-stop":
                return first or float("nan"), time.perf_counter() - t
    finally:
        await c.disconnect()


async def concurrent(port: int, audio: np.ndarray, n: int) -> tuple[list[float], int]:
    results = await asyncio.gather(*(transcribe(port, audio) for _ in range(n)), return_exceptions=True)
    ok = [r[1] for r in results if not isinstance(r, BaseException)]
    return ok, n - len(ok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="1,2,4")
    args = ap.parse_args()
    from voicechat import models

    whisper_dir, voice = models.whisper_model(), models.piper_voice()
    work = Path(tempfile.mkdtemp(prefix="bench-wyoming-"))
    voices = work / "voices"
    voices.mkdir()
    shutil.copy(voice, voices / "en_US-joe-medium.onnx")
    shutil.copy(voice + ".json", voices / "en_US-joe-medium.onnx.json")
    wfw = venv("wyoming-faster-whisper", "wyoming-faster-whisper")
    wp = venv("wyoming-piper", "wyoming-piper")
    short = np.concatenate([speech(SHORT), np.zeros(8000, np.float32)])
    long_text = PARAGRAPH + " " + MORE
    long = np.concatenate([speech(long_text), np.zeros(8000, np.float32)])
    ports = {"voicechat": free_port(), "wyoming-faster-whisper": free_port(), "wyoming-piper": free_port()}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VOICECHAT_CONFIG_DIR": str(work / "cfg"), "VOICECHAT_DATA_DIR": str(work / "data")}
    procs = [
        subprocess.Popen(
            [
                str(wfw),
                "-m",
                "wyoming_faster_whisper",
                "--uri",
                f"tcp://127.0.0.1:{ports['wyoming-faster-whisper']}",
                "--model",
                whisper_dir,
                "--data-dir",
                str(work / "wfw"),
                "--compute-type",
                "int8",
                "--beam-size",
                "5",
                "--language",
                "en",
                "--local-files-only",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(work / "wfw.log", "wb"),
            env=env,
        ),
        subprocess.Popen(
            [
                str(wp),
                "-m",
                "wyoming_piper",
                "--uri",
                f"tcp://127.0.0.1:{ports['wyoming-piper']}",
                "--voice",
                "en_US-joe-medium",
                "--data-dir",
                str(voices),
                "--local-files-only",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(work / "wp.log", "wb"),
            env=env,
        ),
    ]
    server = ServeProcess(
        work / "voicechat", "--wyoming", f"tcp://127.0.0.1:{ports['voicechat']}", env=env, config="serve:\n  max_sessions: 16\n"
    )
    try:
        server.start()
        for name in ("wyoming-faster-whisper", "wyoming-piper"):
            asyncio.run(wait_up(ports[name]))
        for name in ("wyoming-faster-whisper", "voicechat"):  # first use of each server is not measured
            asyncio.run(transcribe(ports[name], short))
        for name in ("wyoming-piper", "voicechat"):
            asyncio.run(synthesize(ports[name], SAYS[0]))

        stt = {k: {"short": [], "long": [], "wer_short": [], "wer_long": []} for k in ("voicechat", "wyoming-faster-whisper")}
        tts = {k: {"first0": [], "total0": [], "first1": [], "total1": []} for k in ("voicechat", "wyoming-piper")}
        for r in range(args.rounds):  # each round alternates who goes first; a pause lets the other's threads settle
            for clip, audio, ref in (("short", short, SHORT), ("long", long, long_text)):
                for name in list(stt) if r % 2 == 0 else list(stt)[::-1]:
                    time.sleep(0.5)
                    text, latency = asyncio.run(transcribe(ports[name], audio))
                    stt[name][clip].append(latency)
                    stt[name][f"wer_{clip}"].append(wer(ref, text))
            for i, text in enumerate(SAYS):
                for name in list(tts) if r % 2 == 0 else list(tts)[::-1]:
                    time.sleep(0.5)
                    first, total = asyncio.run(synthesize(ports[name], text))
                    tts[name][f"first{i}"].append(first)
                    tts[name][f"total{i}"].append(total)

        print(f"== transcript latency after audio-stop (streamed in real time; {args.rounds} rounds, medians) ==")
        print(f"{'clip':22s} {'voicechat':>10s} {'wyoming-faster-whisper':>23s} {'ratio':>7s}   WER voicechat / wfw")
        for clip, seconds in (("short", len(short) / 16000), ("long", len(long) / 16000)):
            a, b = med(stt["voicechat"][clip]), med(stt["wyoming-faster-whisper"][clip])
            wa, wb = med(stt["voicechat"][f"wer_{clip}"]), med(stt["wyoming-faster-whisper"][f"wer_{clip}"])
            print(
                f"{clip + f' ({seconds:.1f} s)':22s} {a * 1000:8.0f}ms {b * 1000:21.0f}ms {a / b:7.2f}x   {wa * 100:.1f}% / {wb * 100:.1f}%"
            )
        print("\n== speech: synthesize -> first audio-chunk / -> audio-stop (medians) ==")
        print(f"{'text':22s} {'voicechat':>10s} {'wyoming-piper':>14s} {'ratio':>7s}")
        for i, text in enumerate(SAYS):
            label = f"{len(text)} chars"
            for what in ("first", "total"):
                a, b = med(tts["voicechat"][f"{what}{i}"]), med(tts["wyoming-piper"][f"{what}{i}"])
                print(
                    f"{label + ' ' + what:22s} {a * 1000:8.0f}ms {b * 1000:12.0f}ms {a / b:7.2f}x   "
                    f"samples {[round(x * 1000) for x in tts['voicechat'][f'{what}{i}']]} vs {[round(x * 1000) for x in tts['wyoming-piper'][f'{what}{i}']]}"
                )
        print("\n== several clients at once (short clip, each streamed in real time) ==")
        print(f"{'server':24s} {'clients':>7s} {'p50':>8s} {'p95':>8s} {'errors':>7s}")
        for n in [int(x) for x in args.clients.split(",")]:
            for name in stt:
                ok, errors = asyncio.run(concurrent(ports[name], short, n))
                print(
                    f"{name:24s} {n:7d} {med(ok) * 1000 if ok else float('nan'):6.0f}ms {p95(ok) * 1000 if ok else float('nan'):6.0f}ms {errors:7d}"
                )
    finally:
        server.stop()
        for p in procs:
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    main()
