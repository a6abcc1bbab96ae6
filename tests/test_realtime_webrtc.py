"""OpenAI's Realtime API over WebRTC (issue 23): ``POST /v1/realtime/calls`` and ``/v1/realtime/client_secrets``.

A Python WebRTC client (aiortc, as a page would: one microphone track and the ``oai-events`` data channel)
and Debian's chromium through Playwright, with a fake microphone, hold a spoken turn with a real
`voicechat serve` on loopback; the reply comes back on the audio track and the bundled Whisper hears it.
The official SDK mints the ephemeral key and posts the offer. Fast tier: the reply audio's bookkeeping and
the key store, with an injected clock.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.chromium import CHROMIUM, with_microphone
from tests.helpers import speak, wer, write_wav
from tests.serveproc import ServeProcess
from voicechat.serve import client_secrets as cs
from voicechat.serve import realtime_events as rt
from voicechat.serve.webrtc_audio import FRAME, RATE, Note, ReplyAudio

KEY = "webrtc-test-key"
QUESTION = "What is the capital of France?"


# --- fast: the reply audio's bookkeeping, and the key store -------------------------------------------


@pytest.mark.fast
def test_reply_audio_goes_out_in_frames_and_says_what_each_reply_played():
    audio = ReplyAudio()
    assert audio.push(1, np.ones(FRAME * 3 // 2, dtype=np.int16))
    first, notes = audio.take()
    assert notes == [Note("started", 1)] and (first == 1).all()
    second, notes = audio.take()
    assert notes == [] and (second[: FRAME // 2] == 1).all() and (second[FRAME // 2 :] == 0).all()  # the rest is silence
    assert audio.end(1) == [Note("stopped", 1, 1.5 * FRAME / RATE)]  # all of it was played: stopped at once
    assert audio.push(2, np.full(FRAME * 10, 2, dtype=np.int16))
    _, notes = audio.take()
    assert notes == [Note("started", 2)]
    assert audio.clear(2) == [Note("cleared", 2, FRAME / RATE)]  # cut after one frame: that much was heard
    assert not audio.push(2, np.ones(FRAME, dtype=np.int16))  # a cut reply's late audio is dropped
    silent, notes = audio.take()
    assert notes == [] and not silent.any()
    audio.push(3, np.full(FRAME, 3, dtype=np.int16))
    assert audio.end(3) == []  # queued, not played yet: it stops when played
    _, notes = audio.take()
    assert notes == [Note("started", 3), Note("stopped", 3, FRAME / RATE)]
    assert audio.end(4) == [Note("stopped", 4, 0.0)]  # a reply with no audio at all


@pytest.mark.fast
def test_reply_audio_is_bounded_and_a_waiting_speaker_has_a_way_out():
    audio = ReplyAudio(max_s=0.1)
    assert audio.push(1, np.ones(int(0.08 * RATE), dtype=np.int16))
    stop = threading.Event()
    stop.set()
    assert not audio.push(1, np.ones(int(0.08 * RATE), dtype=np.int16), stop)  # no room, and told to stop: gives up
    done: list[bool] = []
    waiting = threading.Thread(target=lambda: done.append(audio.push(1, np.ones(int(0.08 * RATE), dtype=np.int16))))
    waiting.start()
    audio.close()  # the call ends: the waiting speaker is let go
    waiting.join(5)
    assert done == [False]


def defaults() -> rt.Settings:
    return rt.Settings(model="voicechat", voice="joe", instructions="Be brief.", silence_ms=600)


@pytest.mark.fast
def test_client_secrets_mint_use_expire_and_refuse():
    now = [1_000_000.0]
    store = cs.ClientSecrets(clock=lambda: now[0])
    doc = store.mint(
        {"expires_after": {"anchor": "created_at", "seconds": 60}, "session": {"type": "realtime", "instructions": "Speak French."}},
        defaults(),
    )
    key = doc["value"]
    assert key.startswith("ek_") and doc["expires_at"] == 1_000_060
    assert doc["session"]["instructions"] == "Speak French." and doc["session"]["type"] == "realtime"
    grant = store.grant(key)
    assert grant is not None and grant.start == {"type": "realtime", "instructions": "Speak French."}
    assert store.grant(key) is not None  # a secret may open several sessions until it expires
    now[0] += 59
    assert store.grant(key) is not None
    now[0] += 1
    assert store.grant(key) is None  # expired
    assert store.grant("ek_" + "x" * 32) is None and store.grant(KEY) is None and store.grant(None) is None
    assert key not in repr(store.__dict__)  # only a hash is kept
    assert store.mint(None, defaults())["expires_at"] == int(now[0]) + cs.DEFAULT_S


@pytest.mark.fast
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"expires_after": {"seconds": 5}}, "expires_after.seconds"),
        ({"expires_after": {"seconds": 7201}}, "expires_after.seconds"),
        ({"expires_after": {"anchor": "now", "seconds": 60}}, "expires_after.anchor"),
        ({"session": {"type": "realtime", "output_modalities": ["video"]}}, "session.output_modalities"),
        ({"session": {"type": "chat"}}, "session.type"),
        ([], "body"),
    ],
)
def test_a_mint_request_this_server_cannot_honour_is_refused_by_name(body, param):
    store = cs.ClientSecrets()
    with pytest.raises(cs.Refused) as e:
        store.mint(body, defaults())
    assert e.value.param == param
    assert not store._live  # nothing minted


@pytest.mark.fast
def test_the_oldest_secrets_go_past_the_bound():
    store = cs.ClientSecrets(max_live=2)
    keys = [store.mint({}, defaults())["value"] for _ in range(3)]
    assert store.grant(keys[0]) is None and store.grant(keys[1]) and store.grant(keys[2])


@pytest.mark.fast
@pytest.mark.parametrize("server_key", [KEY, ""])
def test_realtime_routes_take_the_server_key_or_a_live_ephemeral_key_and_judge_an_ek_as_one(server_key):
    from types import SimpleNamespace

    from voicechat.serve.realtime_webrtc import access

    now = [0.0]
    store = cs.ClientSecrets(clock=lambda: now[0])
    state = SimpleNamespace(cfg=SimpleNamespace(serve=SimpleNamespace(api_key=server_key)))
    app = SimpleNamespace(state=SimpleNamespace(client_secrets=store))
    ek = store.mint({"expires_after": {"seconds": 10}, "session": {"instructions": "Hi."}}, defaults())["value"]

    def bearer(key: str) -> dict:
        return {"authorization": f"Bearer {key}"}

    assert access(state, app, bearer(KEY)) == (True, None)
    allowed, grant = access(state, app, {}, ek)  # (the WebSocket subprotocol's key)
    assert allowed and grant is not None and grant.start == {"instructions": "Hi."}
    assert access(state, app, bearer("wrong"))[0] == (not server_key)  # no server key: every route is open
    now[0] = 10
    assert access(state, app, bearer(ek)) == (False, None)  # expired: refused, server key or not
    assert access(state, app, bearer("ek_unknown")) == (False, None)


# --- a real server ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with ServeProcess(
        tmp_path_factory.mktemp("webrtc"), config=f"llm:\n  max_tokens: 24\nserve:\n  api_key: {KEY}\n  idle_timeout_s: 60\n"
    ) as server:
        yield server
    log = server.log_text()
    assert "Traceback" not in log, log
    assert "ek_" not in log  # the minted keys never reach the log


def sdk(server: ServeProcess, key: str = KEY):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def mint(server: ServeProcess, **session) -> str:
    secret = sdk(server).realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120}, session={"type": "realtime", **session}
    )
    assert secret.value.startswith("ek_") and secret.expires_at > time.time()
    return secret.value


def question_audio(rate: int, lead_s: float = 1.0, tail_s: float = 3.0) -> np.ndarray:
    return np.concatenate([np.zeros(int(rate * lead_s)), speak(QUESTION, sample_rate=rate), np.zeros(int(rate * tail_s))]).astype(
        np.float32
    )


def trimmed(audio: np.ndarray, rate: int) -> np.ndarray:
    """The stretch of ``audio`` that is not silence (reply audio comes with silence around it)."""
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    if not len(loud):
        return audio[:0]
    return audio[max(0, loud[0] - rate // 10) : loud[-1] + rate // 10]


async def call(url: str, key: str, question: np.ndarray, speech_end: int, typed: str | None = None, join: str | None = None) -> dict:
    """A spoken turn over WebRTC as a page makes it: offer (microphone track + oai-events), answer, speak, listen.
    With ``typed``: that message is answered first, and the question is spoken over its reply (a barge-in).
    With ``join`` (the server's key): a server joins the call with the SDK's realtime.connect(call_id=...)."""
    from fractions import Fraction

    from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from av import AudioFrame
    from openai import AsyncOpenAI

    events: list[dict] = []
    seen: dict[str, int] = {}
    heard: list[np.ndarray] = []
    spoken = asyncio.Event()
    done = asyncio.Event()
    sent_at: dict[str, float] = {}

    class Microphone(MediaStreamTrack):
        """The question, paced in real time from the moment the session is created; silence before and after."""

        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.pcm = (question * 32767).astype(np.int16)
            self.at, self.start, self.t0 = 0, 0, time.monotonic()

        async def recv(self) -> AudioFrame:
            wait = self.t0 + self.at / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            piece = self.pcm[self.at - self.start : self.at - self.start + FRAME] if spoken.is_set() else self.pcm[:0]
            if spoken.is_set() and self.at - self.start + FRAME >= speech_end and "question_end" not in sent_at:
                sent_at["question_end"] = time.perf_counter()
            frame = AudioFrame.from_ndarray(np.pad(piece, (0, FRAME - len(piece))).reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, self.at, Fraction(1, RATE)
            self.at += FRAME
            return frame

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    mic = Microphone()
    pc.addTrack(mic)
    channel = pc.createDataChannel("oai-events")
    resampler = None

    @channel.on("message")
    def on_message(data: str) -> None:
        event = json.loads(data)
        events.append(event)
        kind = event["type"]
        if kind == "session.created" and typed is not None:
            item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": typed}]}
            channel.send(json.dumps({"type": "conversation.item.create", "item": item}))
            channel.send(json.dumps({"type": "response.create"}))
        elif kind == ("session.created" if typed is None else "output_audio_buffer.started") and not spoken.is_set():
            mic.start = mic.at
            spoken.set()
        seen[kind] = seen.get(kind, 0) + 1
        turns = 1 if typed is None else 2
        over = seen.get("output_audio_buffer.stopped", 0) + seen.get("output_audio_buffer.cleared", 0)
        if seen.get("response.done", 0) >= turns and over >= turns:  # (played to the end, and the response over)
            done.set()

    async def listen(track) -> None:
        nonlocal resampler
        from av import AudioResampler

        resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1).astype(np.float32) / 32768
                if "first_audio" not in sent_at and "question_end" in sent_at and np.abs(samples).max() > 0.01:
                    sent_at["first_audio"] = time.perf_counter()
                heard.append(samples)

    @pc.on("track")
    def on_track(track) -> None:
        asyncio.ensure_future(listen(track))

    await pc.setLocalDescription(await pc.createOffer())
    client = AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    offered = time.perf_counter()
    answer = await client.realtime.calls.with_raw_response.create(sdp=pc.localDescription.sdp)
    answered = time.perf_counter()
    location = answer.headers.get("location")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.content.decode(), type="answer"))
    closed = asyncio.Event()
    channel.on("close", closed.set)
    joined: list = []

    async def sideband() -> None:
        server = AsyncOpenAI(base_url=url + "/v1", api_key=join, max_retries=0)
        async with server.realtime.connect(call_id=location.rsplit("/", 1)[-1]) as conn:
            async for event in conn:
                joined.append(event)
                if event.type == "response.done":
                    return

    watcher = asyncio.ensure_future(sideband()) if join else None
    try:
        await asyncio.wait_for(done.wait(), 240)
        if watcher is not None:
            await asyncio.wait_for(watcher, 30)
        await client.realtime.calls.hangup(location.rsplit("/", 1)[-1])  # the session ends: the server closes the call
        await asyncio.wait_for(closed.wait(), 60)
    finally:
        await pc.close()
    return {
        "status": answer.status_code,
        "location": location,
        "events": events,
        "audio": np.concatenate(heard) if heard else np.zeros(0, np.float32),
        "offer_to_answer": answered - offered,
        "sideband": joined,
        "voice_to_voice": sent_at.get("first_audio", 0) - sent_at.get("question_end", 0),
    }


def test_a_python_webrtc_client_speaks_a_question_and_hears_the_reply_on_the_track(served, hear):
    ek = mint(served, instructions="You are a helpful assistant. Answer in one short sentence.")
    question = question_audio(RATE, tail_s=3)
    out = asyncio.run(asyncio.wait_for(call(served.url, ek, question, len(question) - 3 * RATE, join=KEY), 300))
    print(f"\noffer to answer {out['offer_to_answer'] * 1000:.0f} ms; voice to voice {out['voice_to_voice'] * 1000:.0f} ms")
    assert out["status"] == 201 and out["location"].startswith("/v1/realtime/calls/rtc_")
    events = out["events"]
    types = [e["type"] for e in events]
    assert types[0] == "session.created" and types[1] == "session.updated"  # the ephemeral key's configuration, applied
    assert events[1]["session"]["instructions"].startswith("You are a helpful assistant")
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "output_audio_buffer.started",
        "response.output_audio_transcript.done",
        "response.done",
    ]
    assert [types.index(t) for t in order] == sorted(types.index(t) for t in order), types
    assert "response.output_audio.delta" not in types and all("event_id" in e for e in events)  # the audio is on the track
    asked = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")["transcript"]
    assert wer(QUESTION, asked) <= 0.2
    response = next(e for e in events if e["type"] == "response.created")["response"]["id"]
    for name in ("output_audio_buffer.started", "output_audio_buffer.stopped"):  # (stopped: when it has been played)
        assert next(e for e in events if e["type"] == name)["response_id"] == response
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    reply = trimmed(out["audio"], RATE)
    assert transcript.strip() and len(reply) > RATE // 2
    assert wer(transcript, hear(reply, RATE)) <= 0.35  # what came over Opus says what the transcript says
    joined = out["sideband"]  # a server beside the call saw the same response
    assert joined and joined[-1].type == "response.done" and joined[-1].response.id == response
    deadline = time.monotonic() + 60
    while served.metric("voicechat_active_sessions", {"Authorization": f"Bearer {KEY}"}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served.metric("voicechat_active_sessions", {"Authorization": f"Bearer {KEY}"}) == 0  # and its session with it


def test_calls_refuse_bad_keys_bodies_and_an_expired_or_unknown_ephemeral_key(served):
    import httpx

    offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    url = served.url + "/v1/realtime/calls"

    def post(key: str, body: str = offer, kind: str = "application/sdp") -> httpx.Response:
        return httpx.post(url, content=body, headers={"Authorization": f"Bearer {key}", "Content-Type": kind}, timeout=30)

    for key in ("wrong", "ek_" + "a" * 32):
        r = post(key)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.post(url, content=offer, headers={"Authorization": f"Bearer {KEY}", "Origin": "https://evil.example"}, timeout=30)
    assert r.status_code == 403  # a page from another origin (serve.allowed_origins), as on every route
    r = post(KEY, "hello", "text/plain")
    assert r.status_code == 415 and "application/sdp" in r.json()["error"]["message"]
    r = post(KEY, "not sdp")
    assert r.status_code == 400 and r.json()["error"]["param"] == "sdp"
    r = post(KEY, offer)  # an SDP without ICE or DTLS: aiortc refuses it, said in one line
    assert r.status_code == 400 and r.json()["error"]["param"] == "sdp"
    r = post(KEY, "v=0\r\nm=audio " + "x" * 70_000)
    assert r.status_code == 413
    ek = mint(served)
    r = httpx.post(
        served.url + "/v1/realtime/client_secrets", json={}, headers={"Authorization": f"Bearer {ek}"}, timeout=30
    )  # an ephemeral key mints nothing
    assert r.status_code == 401
    r = httpx.post(
        served.url + "/v1/realtime/client_secrets",
        json={"expires_after": {"seconds": 3}},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "expires_after.seconds"
    r = httpx.get(served.url + "/v1/models", headers={"Authorization": f"Bearer {ek}"}, timeout=30)
    assert r.status_code == 401  # an ephemeral key opens the realtime routes only
    from websockets.sync.client import connect

    ws_url = served.url.replace("http", "ws") + "/v1/realtime?model=x"
    with connect(ws_url, subprotocols=["realtime", f"openai-insecure-api-key.{ek}"]) as ws:  # a browser on the WebSocket route
        assert json.loads(ws.recv())["type"] == "session.created"
    with connect(ws_url, subprotocols=["realtime", "openai-insecure-api-key.ek_unknown"]) as ws:
        assert "key" in json.loads(ws.recv())["error"]["message"]
    with connect(ws_url + "&call_id=rtc_unknown", additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
        assert "no live call" in json.loads(ws.recv())["error"]["message"]  # joining a call: only a live one
    with connect(ws_url + "&call_id=rtc_unknown", subprotocols=["realtime", f"openai-insecure-api-key.{ek}"]) as ws:
        assert "server's key" in json.loads(ws.recv())["error"]["message"]  # and never with the page's key


def test_speech_over_a_reply_cuts_it_and_the_history_keeps_what_the_track_played(served):
    """Over WebRTC the server plays the reply, so it knows what was heard: no conversation.item.truncate needed."""
    import sqlite3

    story = "Tell me a long story about a brave dragon and a small village."
    question = question_audio(RATE, lead_s=0.3, tail_s=3)
    out = asyncio.run(asyncio.wait_for(call(served.url, KEY, question, len(question) - 3 * RATE, typed=story), 300))
    events = out["events"]
    types = [e["type"] for e in events]
    first, second = [e["response"] for e in events if e["type"] == "response.done"][:2]
    assert first["status"] == "cancelled" and second["status"] == "completed"
    cleared = next(e for e in events if e["type"] == "output_audio_buffer.cleared")
    assert cleared["response_id"] == first["id"] and types.index("input_audio_buffer.speech_started") < types.index(
        "output_audio_buffer.cleared"
    )
    heard = first["output"][0]["content"][0]["transcript"]
    asked = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")["transcript"]
    assert wer(QUESTION, asked) <= 0.2
    with sqlite3.connect(served.workdir / "history.sqlite3") as db:
        rows = db.execute("SELECT user_text, assistant_text, interrupted FROM turns ORDER BY id DESC LIMIT 2").fetchall()
    (user, said, interrupted) = rows[1]
    assert user == story and interrupted and said == heard  # only what went out on the track before the cut
    assert len(said.split()) < 20


# --- Debian's chromium, with a fake microphone ------------------------------------------------------------

PAGE = """<!doctype html><meta charset="utf-8"><title>voicechat WebRTC</title>
<style>body{font:14px sans-serif;margin:16px} li{font-family:monospace}</style>
<h1>voicechat over WebRTC</h1><p id="status">starting</p><ol id="events"></ol><script>
const EK = KEY_VALUE;
window.result = {events: [], done: false};
function show(s) { document.getElementById("status").textContent = s; }
(async () => {
  const pc = new RTCPeerConnection();
  const player = document.createElement("audio"); player.autoplay = true; document.body.appendChild(player);
  const heard = [];
  pc.ontrack = e => {
    player.srcObject = e.streams[0];
    const ctx = new AudioContext({sampleRate: 48000});
    const source = ctx.createMediaStreamSource(e.streams[0]);
    const tap = ctx.createScriptProcessor(4096, 1, 1);
    tap.onaudioprocess = a => heard.push(new Float32Array(a.inputBuffer.getChannelData(0)));
    source.connect(tap); tap.connect(ctx.destination);
  };
  const mic = await navigator.mediaDevices.getUserMedia({audio: true});
  pc.addTrack(mic.getTracks()[0]);
  const dc = pc.createDataChannel("oai-events");
  dc.onmessage = m => {
    const e = JSON.parse(m.data); window.result.events.push(e);
    const li = document.createElement("li"); li.textContent = e.type + (e.transcript ? ": " + e.transcript : ""); document.getElementById("events").appendChild(li);
    if (e.type === "output_audio_buffer.stopped") setTimeout(keep, 1500);  // (the tail is still in the jitter buffer)
  };
  function keep() {  // what the page played, as base64 16-bit PCM at 48 kHz
    const n = heard.reduce((a, b) => a + b.length, 0), all = new Int16Array(n);
    let at = 0; for (const b of heard) { for (let i = 0; i < b.length; i++) all[at + i] = Math.max(-1, Math.min(1, b[i])) * 32767; at += b.length; }
    let s = ""; const bytes = new Uint8Array(all.buffer); for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
    window.result.audio = btoa(s); window.result.done = true; show("reply heard");
  }
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch("/v1/realtime/calls", {method: "POST", body: pc.localDescription.sdp,
    headers: {"Authorization": "Bearer " + EK, "Content-Type": "application/sdp"}});
  window.result.status = r.status;
  await pc.setRemoteDescription({type: "answer", sdp: await r.text()});
  show("connected: speak");
})().catch(e => { window.result.error = String(e); show(String(e)); });
</script>"""


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh)")
    wav = write_wav(tmp_path_factory.mktemp("mic") / "question.wav", question_audio(48000, lead_s=2.5, tail_s=30), 48000)
    with with_microphone(wav) as browser:
        yield browser


@pytest.mark.serial
def test_chromium_negotiates_a_call_speaks_with_a_fake_microphone_and_hears_the_reply(served, chromium, hear, tmp_path):
    ek = mint(served, instructions="You are a helpful assistant. Answer in one short sentence.")
    page = chromium.new_context().new_page()
    url = served.url + "/webrtc-test"  # the page comes from the server's own origin (as the page at / would)
    page.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE.replace("KEY_VALUE", json.dumps(ek))))
    page.goto(url)
    page.wait_for_function("window.result.done || window.result.error", timeout=240_000)
    result = page.evaluate("window.result")
    page.screenshot(path=str(tmp_path / "webrtc.png"), full_page=True)
    assert "error" not in result, result.get("error")
    assert result["status"] == 201
    types = [e["type"] for e in result["events"]]
    assert types[0] == "session.created" and "response.output_audio.delta" not in types
    asked = next(e for e in result["events"] if e["type"] == "conversation.item.input_audio_transcription.completed")["transcript"]
    assert wer(QUESTION, asked) <= 0.2
    transcript = next(e for e in result["events"] if e["type"] == "response.output_audio_transcript.done")["transcript"]
    audio = np.frombuffer(base64.b64decode(result["audio"]), dtype="<i2").astype(np.float32) / 32768
    assert wer(transcript, hear(trimmed(audio, 48000), 48000)) <= 0.35  # the browser played what the transcript says
