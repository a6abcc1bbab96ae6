"""`/v1/realtime` (OpenAI's Realtime API over a WebSocket and over WebRTC) against `/v1/voice`: the same spoken
turn, same server, same engines, same run (issue 23's bar: at most 1.05x over the WebSocket, 1.15x over WebRTC).

    python bench/realtime.py [--rounds 6] [--sessions 1,2,4,8] [--routes voice,realtime,webrtc]

Each session connects, streams 0.5 s of silence, a spoken question (piper) and 3 s of silence at real-time pace
in 40 ms blocks (the API counts audio_start_ms/audio_end_ms from the audio received, as a microphone sends it),
waits for the whole reply, and closes. The same question goes to both routes: 24 kHz PCM16 in base64
``input_audio_buffer.append`` events to /v1/realtime, 16 kHz PCM16 binary messages to /v1/voice, and 48 kHz
20 ms frames on the microphone track of a WebRTC call (aiortc, as a page would: the offer posted to
/v1/realtime/calls, events on the ``oai-events`` data channel, the reply heard on the incoming track, Opus both
ways). Measured on the client's clock:

- end of turn -> reply: first ``response.output_audio.delta`` after ``input_audio_buffer.speech_stopped``
  (/v1/voice: first reply audio after ``{"type": "speech", "phase": "ended"}``; WebRTC: the first non-silent
  reply sample decoded from the track after ``speech_stopped`` on the data channel);
- voice to voice: the last speech block (frame) sent -> the first reply audio received (includes the silence
  the turn policy waits for, the same on every route).

1, 2, 4 and 8 sessions at once (serve.max_sessions 8), each doing ``--rounds`` turns, a new connection (call) per
turn; the order of the routes rotates round by round so machine noise hits them alike. p50/p95 per route and
the ratio of each realtime route to /v1/voice. /v1/voice runs with barge_in=true by default, as a realtime
session always does (speech over a reply stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import med, p95, speech
from tests.serveproc import ServeProcess

QUESTION = "What is the capital of France?"
BLOCK_S = 0.04
RATE_RT = 24000  # audio/pcm as the Realtime API defines it
RATE_VOICE = 16000  # /v1/voice's input
RATE_RTC = 48000  # Opus on a WebRTC track
FRAME_RTC = RATE_RTC // 50  # 20 ms frames, as a browser sends them
LOUD = 0.01  # a decoded reply sample above this is audio (Opus makes near-zero noise of silence)
RATIO_NAME = {"realtime": "ws/voice", "webrtc": "rtc/voice"}


@dataclass
class Turn:
    stopped_to_audio: float | None  # end of turn (the server's) -> first reply audio
    voice_to_voice: float | None  # last speech block sent -> first reply audio
    error: str | None = None


def pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


class Take:
    """One spoken turn at one rate: silence, speech, silence, as 16-bit PCM blocks; which block ends the speech."""

    def __init__(self, question: np.ndarray, rate: int) -> None:
        lead, tail = np.zeros(rate // 2, dtype=np.float32), np.zeros(rate * 3, dtype=np.float32)
        data = pcm(np.concatenate([lead, question, tail]))
        step = int(rate * BLOCK_S) * 2
        self.blocks = [data[i : i + step] for i in range(0, len(data), step)]
        self.last_speech = (len(lead) + len(question)) * 2 // step  # the block holding the last speech sample
        self.last_speech_sample = len(lead) + len(question)


async def stream(take: Take, send, marks: dict[str, float]) -> None:
    """Send the blocks at real-time pace; note when the last speech block went."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n, block in enumerate(take.blocks):
        await send(block)
        if n == take.last_speech:
            marks["speech_sent"] = time.perf_counter()
        await asyncio.sleep(max(0.0, start + (n + 1) * BLOCK_S - loop.time()))


def result(marks: dict[str, float], error: str | None = None) -> Turn:
    audio, stopped, sent = marks.get("audio"), marks.get("stopped"), marks.get("speech_sent")
    return Turn(
        audio - stopped if audio is not None and stopped is not None else None,
        audio - sent if audio is not None and sent is not None else None,
        error if error is not None else (None if audio is not None else "no reply audio"),
    )


async def realtime_turn(url: str, take: Take, timeout: float) -> Turn:
    from websockets.asyncio.client import connect

    marks: dict[str, float] = {}
    async with connect(url.replace("http", "ws") + "/v1/realtime?model=gpt-realtime", max_size=1 << 24) as ws:
        first = json.loads(await ws.recv())
        if first.get("type") != "session.created":
            return Turn(None, None, f"refused: {first}")

        async def send(block: bytes) -> None:
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(block).decode()}))

        sender = asyncio.create_task(stream(take, send, marks))
        error = None
        try:
            async with asyncio.timeout(timeout):
                async for message in ws:
                    doc = json.loads(message)
                    kind = doc.get("type")
                    if kind == "input_audio_buffer.speech_stopped":
                        marks.setdefault("stopped", time.perf_counter())
                    elif kind == "response.output_audio.delta" and "stopped" in marks:
                        marks.setdefault("audio", time.perf_counter())
                    elif kind == "error":
                        error = doc["error"]["message"]
                    elif kind == "response.done":
                        break
        except TimeoutError:
            error = "timed out"
        sender.cancel()
    return result(marks, error)


async def voice_turn(url: str, take: Take, timeout: float, query: str = "") -> Turn:
    from websockets.asyncio.client import connect

    marks: dict[str, float] = {}
    async with connect(
        url.replace("http", "ws") + "/v1/voice" + (f"?{query}" if query else ""), subprotocols=["voicechat"], max_size=1 << 24
    ) as ws:
        first = json.loads(await ws.recv())
        if first.get("type") != "session":
            return Turn(None, None, f"refused: {first}")
        sender = asyncio.create_task(stream(take, ws.send, marks))
        error = None
        samples: dict[int, int] = {}
        rate = 22050
        try:
            async with asyncio.timeout(timeout):
                async for message in ws:
                    if isinstance(message, bytes):
                        if "stopped" in marks:
                            marks.setdefault("audio", time.perf_counter())
                        continue
                    doc = json.loads(message)
                    kind = doc.get("type")
                    if kind == "speech" and doc.get("phase") == "ended":
                        marks.setdefault("stopped", time.perf_counter())
                    elif kind == "audio":
                        rate = int(doc["sample_rate"])
                        samples[doc["reply"]] = samples.get(doc["reply"], 0) + int(doc.get("samples", 0))
                    elif kind == "audio_end":  # a player that plays at once, as the realtime client is treated
                        played = {"type": "played", "reply": doc["reply"], "seconds": samples.get(doc["reply"], 0) / rate, "done": True}
                        await ws.send(json.dumps(played))
                    elif kind == "error":
                        error = doc.get("message")
                    elif kind == "turn_stats":
                        break
        except TimeoutError:
            error = "timed out"
        sender.cancel()
    return result(marks, error)


async def webrtc_turn(url: str, take: Take, timeout: float) -> Turn:
    """The turn over a WebRTC call: the take's PCM on the microphone track from session.created on, in real time."""
    from fractions import Fraction

    import httpx
    from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from av import AudioFrame, AudioResampler

    marks: dict[str, float] = {}
    pcm16 = np.frombuffer(b"".join(take.blocks), dtype="<i2")
    speech_end = take.last_speech_sample
    speaking = asyncio.Event()
    over = asyncio.Event()
    error: list[str] = []

    class Microphone(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.at, self.start, self.t0 = 0, 0, time.monotonic()

        async def recv(self) -> AudioFrame:
            wait = self.t0 + self.at / RATE_RTC - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            pos = self.at - self.start
            piece = pcm16[pos : pos + FRAME_RTC] if speaking.is_set() else pcm16[:0]
            if speaking.is_set() and pos + FRAME_RTC >= speech_end:
                marks.setdefault("speech_sent", time.perf_counter())
            frame = AudioFrame.from_ndarray(np.pad(piece, (0, FRAME_RTC - len(piece))).reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE_RTC, self.at, Fraction(1, RATE_RTC)
            self.at += FRAME_RTC
            return frame

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    mic = Microphone()
    pc.addTrack(mic)
    channel = pc.createDataChannel("oai-events")

    @channel.on("message")
    def on_message(data: str) -> None:
        doc = json.loads(data)
        kind = doc.get("type")
        if kind == "session.created" and not speaking.is_set():
            mic.start = mic.at
            speaking.set()
        elif kind == "input_audio_buffer.speech_stopped":
            marks.setdefault("stopped", time.perf_counter())
        elif kind == "error":
            error.append(doc["error"]["message"])
        elif kind == "response.done":
            over.set()

    async def listen(track: Any) -> None:
        resampler = AudioResampler(format="s16", layout="mono", rate=RATE_RTC)
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            for out in resampler.resample(frame):
                if "stopped" in marks and "audio" not in marks and np.abs(out.to_ndarray()).max() > LOUD * 32768:
                    marks["audio"] = time.perf_counter()

    listeners: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: listeners.append(asyncio.ensure_future(listen(track))))
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            r = await http.post("/v1/realtime/calls", content=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"})
            if r.status_code != 201:
                return Turn(None, None, f"refused: {r.status_code} {r.text[:200]}")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
            try:
                async with asyncio.timeout(timeout):
                    await over.wait()
                    while "audio" not in marks and "stopped" in marks:  # (the track lags the events a little)
                        await asyncio.sleep(0.01)
            except TimeoutError:
                error.append("timed out")
            await http.post(r.headers["location"] + "/hangup")
    finally:
        for task in listeners:
            task.cancel()
        await pc.close()
    return result(marks, error[0] if error else None)


async def round_of(route: str, url: str, take: Take, sessions: int, timeout: float, query: str = "") -> list[Turn]:
    if route == "realtime":
        turns = [realtime_turn(url, take, timeout) for _ in range(sessions)]
    elif route == "webrtc":
        turns = [webrtc_turn(url, take, timeout) for _ in range(sessions)]
    else:
        turns = [voice_turn(url, take, timeout, query) for _ in range(sessions)]
    done = await asyncio.gather(*turns, return_exceptions=True)
    return [t if isinstance(t, Turn) else Turn(None, None, f"{type(t).__name__}: {t}") for t in done]


def server_figures(db: Path, rounds: list[tuple[str, int]]) -> dict[str, list[dict[str, float]]] | None:
    """The server's own timing of each turn (the history's latency column), by route: turns are recorded in the
    order the rounds ran (one round at a time). None when the counts do not match (a turn failed)."""
    import sqlite3

    with sqlite3.connect(db) as con:
        rows = [json.loads(r[0] or "{}") for r in con.execute("SELECT latency FROM turns ORDER BY id")]
    if len(rows) != sum(n for _, n in rounds):
        return None
    out: dict[str, list[dict[str, float]]] = {}
    at = 0
    for route, n in rounds:
        out.setdefault(route, []).extend(rows[at : at + n])
        at += n
    return out


def stats(values: list[float]) -> str:
    return f"{med(values) * 1000:6.0f} {p95(values) * 1000:6.0f}" if values else f"{'-':>6s} {'-':>6s}"


def ratio(a: list[float], b: list[float], pick) -> str:
    return f"{pick(a) / pick(b):5.2f}x" if a and b else "    -"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6, help="turns per session at each concurrency")
    ap.add_argument("--sessions", default="1,2,4,8", help="concurrent sessions, comma-separated")
    ap.add_argument("--timeout", type=float, default=180, help="seconds one turn may take")
    ap.add_argument("--routes", default="voice,realtime,webrtc", help="routes to compare, comma-separated: voice is the reference")
    ap.add_argument(
        "--voice-query",
        default="barge_in=true",
        help="query for /v1/voice (default barge_in=true: a realtime session always has barge-in on; /v1/voice's own default is off)",
    )
    args = ap.parse_args()
    import soxr

    work = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    env = {
        "VOICECHAT_CONFIG_DIR": str(work / "cfg"),
        "VOICECHAT_DATA_DIR": str(work / "data"),
        "VOICECHAT_LLM_TEMPERATURE": "0",
        "HF_HUB_OFFLINE": "1",
    }
    question = speech(QUESTION, RATE_RT)  # one take, resampled for /v1/voice: the same speech on both routes
    takes = {
        "realtime": Take(question, RATE_RT),
        "voice": Take(soxr.resample(question, RATE_RT, RATE_VOICE), RATE_VOICE),
        "webrtc": Take(soxr.resample(question, RATE_RT, RATE_RTC), RATE_RTC),
    }
    routes = [r for r in args.routes.split(",") if r]
    if "voice" not in routes or not set(routes) <= set(takes):
        ap.error("--routes names voice and any of realtime, webrtc")
    levels = [int(x) for x in args.sessions.split(",")]
    print(f"load before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}  ({os.cpu_count()} CPUs)")
    config = "serve:\n  max_sessions: 8\nllm:\n  max_tokens: 32\n"
    with ServeProcess(work / "serve", config=config, env=env) as server:
        ran: list[tuple[str, int]] = []  # every round, in order: (route, turns)
        for route in routes:  # warm every route once
            asyncio.run(round_of(route, server.url, takes[route], 1, args.timeout, args.voice_query))
            ran.append(("warm", 1))
        voice = "/v1/voice" + (f"?{args.voice_query}" if args.voice_query else "")
        print(
            f"\nms, client clock; realtime = /v1/realtime (WebSocket), webrtc = /v1/realtime/calls, voice = {voice}; ratio = route / voice"
        )
        print(
            f"{'sessions':>8s} {'route':9s} {'n':>3s}  {'stop->audio p50':>15s} {'p95':>6s}  {'voice-to-voice p50':>18s} {'p95':>6s}  errors"
        )
        for n in levels:
            turns: dict[str, list[Turn]] = {route: [] for route in routes}
            for r in range(args.rounds):
                order = routes[r % len(routes) :] + routes[: r % len(routes)]
                for route in order:
                    time.sleep(0.5)
                    turns[route] += asyncio.run(round_of(route, server.url, takes[route], n, args.timeout, args.voice_query))
                    ran.append((f"{n}:{route}", n))
            got = {}
            for route in routes:
                ts = turns[route]
                stop = [t.stopped_to_audio for t in ts if t.stopped_to_audio is not None]
                v2v = [t.voice_to_voice for t in ts if t.voice_to_voice is not None]
                errors = sorted({t.error for t in ts if t.error})
                got[route] = (stop, v2v)
                print(f"{n:8d} {route:9s} {len(stop):3d}  {stats(stop):>22s}  {stats(v2v):>25s}  {len(errors) and errors}")
            vs, vv = got["voice"]
            for route in routes:
                if route != "voice":
                    rs, rv = got[route]
                    print(
                        f"{n:8d} {RATIO_NAME[route]:9s} {'':3s}  {ratio(rs, vs, med):>15s} {ratio(rs, vs, p95):>6s}  "
                        f"{ratio(rv, vv, med):>18s} {ratio(rv, vv, p95):>6s}"
                    )
            sys.stdout.flush()
        time.sleep(1)  # (the last turn's record)
        figures = server_figures(server.workdir / "history.sqlite3", ran)
    print(
        "\nthe server's own timing (history), p50/p95 ms: endpoint = end of speech -> turn judged complete, "
        "stt = turn complete -> final transcript,\nfirst_audio = turn complete -> first reply sample at the sink, "
        "v2v = end of speech -> first sample at the sink (the part every route shares)"
    )
    if figures is None:
        print("  (not shown: some turn was not recorded, so turns cannot be matched to routes)")
    else:
        print(f"{'sessions':>8s} {'route':9s}  {'endpoint':>13s}  {'stt':>13s}  {'first_audio':>13s}  {'v2v':>13s}")
        for n in levels:
            for route in routes:
                rows = figures.get(f"{n}:{route}", [])
                cols = [stats([r[k] for r in rows if k in r]) for k in ("endpoint", "stt", "first_audio", "voice_to_voice")]
                print(f"{n:8d} {route:9s}  " + "  ".join(f"{c:>13s}" for c in cols))
    print(f"\nload after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
