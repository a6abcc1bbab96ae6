"""`voicechat serve`: every route through real clients (the openai SDK, LangChain, a WebSocket client) against
the real server on loopback with the bundled models; auth, limits, malformed input, disconnects, SIGTERM."""

from __future__ import annotations

import io
import json
import socket
import sqlite3
import time
from itertools import pairwise

import numpy as np
import pytest

from tests.helpers import speak, wer, write_wav
from tests.serveproc import ServeProcess
from tests.voiceclient import VoiceClient

QUESTION = "What is the capital of France?"
LONG_TEXT = "Good morning. This second sentence is a good deal longer than the first one, so it takes a while to say."
COUNTING = "Count from one to two hundred, writing every number as a word, separated by commas."


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16000 * seconds), dtype=np.float32)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with ServeProcess(tmp_path_factory.mktemp("serve"), config="llm:\n  max_tokens: 64\n") as server:
        yield server


@pytest.fixture(scope="module")
def client(served):
    import openai

    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("q") / "question.wav", np.concatenate([speak(QUESTION), silence(0.5)]))


def decode_bytes(data: bytes) -> tuple[np.ndarray, int]:
    import av

    with av.open(io.BytesIO(data)) as c:
        rate = c.streams.audio[0].rate
        frames = [f.to_ndarray().astype(np.float32).reshape(-1) for f in c.decode(audio=0)]
    audio = np.concatenate(frames)
    if np.abs(audio).max() > 2:  # integer samples
        audio = audio / 32768.0
    return audio, rate


# --- OpenAI-compatible routes ----------------------------------------------------------------------


def test_transcriptions_in_every_format_through_the_openai_sdk(client, question_wav):
    with open(question_wav, "rb") as f:
        assert wer(QUESTION, client.audio.transcriptions.create(model="whisper-1", file=f).text) <= 0.2
    with open(question_wav, "rb") as f:
        text = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="text")
    assert wer(QUESTION, text) <= 0.2
    with open(question_wav, "rb") as f:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
    assert verbose.language == "english" and 2.0 < verbose.duration < 4.0
    assert [w.word.strip(",.?").lower() for w in verbose.words][:3] == ["what", "is", "the"]
    assert all(a.end <= b.start + 0.01 for a, b in pairwise(verbose.words))
    assert verbose.segments and verbose.segments[0].end > verbose.segments[0].start
    for fmt, marker in (("srt", "00:00:00,"), ("vtt", "WEBVTT")):
        with open(question_wav, "rb") as f:
            body = client.audio.transcriptions.create(model="whisper-1", file=f, response_format=fmt)
        assert marker in body and "capital" in body.lower()


def test_streamed_transcription_sends_deltas_then_done(client, tmp_path):
    two = write_wav(
        tmp_path / "two.wav",
        np.concatenate(
            [speak("The first sentence is about the weather."), silence(1.2), speak("The second one is about a cat."), silence(0.5)]
        ),
    )
    with open(two, "rb") as f:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=f, stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.delta") >= 1
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert deltas.strip() == events[-1].text
    assert wer("The first sentence is about the weather. The second one is about a cat.", events[-1].text) <= 0.2


def test_speech_in_every_format_is_the_text_spoken(client, hear):
    for fmt in ("wav", "flac", "mp3", "opus", "aac"):
        data = client.audio.speech.create(model="tts-1", voice="alloy", input="The weather is lovely today.", response_format=fmt).read()
        audio, rate = decode_bytes(data)
        assert 1.0 < len(audio) / rate < 4.0, fmt
        assert wer("The weather is lovely today.", hear(audio, rate)) <= 0.2, fmt
    pcm = client.audio.speech.create(model="tts-1", voice="alloy", input="The weather is lovely today.", response_format="pcm").read()
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    assert wer("The weather is lovely today.", hear(audio, 24000)) <= 0.2  # raw pcm is 24 kHz, as OpenAI sends it


def test_speech_streams_sentence_by_sentence_and_speed_changes_the_length(client):
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=LONG_TEXT, response_format="pcm") as r:
        parts = [len(b) for b in r.iter_bytes(chunk_size=None)] if hasattr(r, "iter_bytes") else []
    assert len(parts) >= 2  # the first sentence leaves before the rest is synthesized
    first_sentence = len(client.audio.speech.create(model="tts-1", voice="x", input="Good morning.", response_format="pcm").read())
    assert parts[0] <= first_sentence * 1.2
    normal = len(client.audio.speech.create(model="tts-1", voice="x", input="Good morning to you.", response_format="pcm").read())
    fast = len(client.audio.speech.create(model="tts-1", voice="x", input="Good morning to you.", response_format="pcm", speed=2.0).read())
    assert fast < normal * 0.7


def test_chat_completions_streamed_and_not_with_usage(client):
    reply = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "Say hello."}])
    assert reply.choices[0].message.content.strip() and reply.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="any",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    usage = [c.usage for c in chunks if c.usage]
    assert usage and usage[-1].completion_tokens > 0 and usage[-1].prompt_tokens > 0
    models = client.models.list().data
    assert {m.id for m in models} and len(models) == 3


def test_langchain_chat_openai_against_the_chat_route(served):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=served.url + "/v1", api_key="unused", model="voicechat", max_retries=0, timeout=120)
    assert llm.invoke("Say hello.").content.strip()
    assert "".join(c.content for c in llm.stream("Name a fruit.")).strip()


def test_health_readiness_metrics_docs(served, client):
    assert served.status("/healthz") == 200
    ready = served.get_json("/readyz")
    assert ready["ready"] is True and "tiny.en" in ready["engines"]["stt"]
    assert 503 in served.readiness  # not ready while the engines were loading
    client.models.list()
    assert served.metric("voicechat_requests_total", route="/v1/models", status="200") >= 1
    text = served.metrics()
    for name in ("voicechat_request_seconds_bucket", "voicechat_queue_depth", "voicechat_active_sessions", "voicechat_ready 1.0"):
        assert name in text
    assert served.status("/docs") == 200 and served.status("/openapi.json") == 200


def test_bad_requests_get_openai_shaped_errors(client, served, tmp_path):
    import openai

    notes = tmp_path / "notes.wav"
    notes.write_text("this is not audio\n" * 20)
    with pytest.raises(openai.BadRequestError, match="not an audio file|not audio"):
        client.audio.transcriptions.create(model="whisper-1", file=open(notes, "rb"))
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.audio.speech.create(model="tts-1", voice="x", input="hi", response_format="ogg-vorbis")
    with pytest.raises(openai.BadRequestError, match="input"):
        client.audio.speech.create(model="tts-1", voice="x", input="   ")
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(model="x", messages=[{"role": "wizard", "content": "hi"}])
    import urllib.request

    req = urllib.request.Request(served.url + "/v1/chat/completions", data=b"{not json", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400 and "JSON" in json.loads(e.value.read())["error"]["message"]
    assert served.status("/healthz") == 200


# --- the voice session over the WebSocket --------------------------------------------------------------


def test_spoken_question_over_the_websocket(served, hear):
    c = VoiceClient(served.url)
    try:
        hello = c.wait_for(lambda e: e["type"] == "session")
        assert hello["input"] == {"sample_rate": 16000, "format": "s16le", "channels": 1}
        c.stream(np.concatenate([silence(0.5), speak(QUESTION), silence(2.0)]))
        user = c.wait_for(lambda e: e["type"] == "user")
        reply = c.wait_for(lambda e: e["type"] == "reply")
        stats = c.wait_for(lambda e: e["type"] == "turn_stats")
        assert wer(QUESTION, user["text"]) <= 0.2 and user["source"] == "voice"
        assert c.of("partial"), "partial transcripts while the question was spoken"
        assert reply["text"].strip() and not reply["interrupted"]
        assert {"voice_to_voice", "first_audio", "first_token"} <= set(stats["latency"])
        audio = c.reply_audio(1)
        assert wer(reply["text"], hear(audio, c.rate)) <= 0.35
        deltas = "".join(e["text"] for e in c.of("reply_delta"))
        assert reply["text"].split()[0] in deltas
        session = c.wait_for(lambda e: e["type"] == "session" and e.get("id"), after=hello)
        # the same event schema as `talk --json`
        from voicechat.voice.events import EVENT_NAMES

        known = set(EVENT_NAMES.values()) | {"session", "audio", "audio_end", "audio_stop", "closing"}
        assert {e["type"] for e in c.events} <= known
        c.send({"type": "text", "text": "And what about Germany?"})
        typed = c.wait_for(lambda e: e["type"] == "user" and e["source"] == "typed")
        c.wait_for(lambda e: e["type"] == "reply", after=typed)
        c.send({"type": "command", "line": "/tokens"})
        assert "token" in c.wait_for(lambda e: e["type"] == "notice", after=typed)["message"].lower()
    finally:
        c.close()
    # resume on a new connection: the history has both turns and the memory comes back
    again = VoiceClient(served.url, query=f"session={session['id']}")
    try:
        hello = again.wait_for(lambda e: e["type"] == "session")
        assert hello["id"] == session["id"] and hello["resumed_turns"] == 2
    finally:
        again.close()
    with sqlite3.connect(served.workdir / "history.sqlite3") as db:
        rows = db.execute(
            "SELECT user_text, assistant_text FROM turns WHERE session_id = (SELECT id FROM sessions WHERE public_id = ?) ORDER BY id",
            (session["id"],),
        ).fetchall()
    assert [r[0] for r in rows] == [user["text"], "And what about Germany?"]
    assert rows[0][1] == reply["text"]


def test_history_keeps_only_what_the_client_played_when_interrupted(served):
    c = VoiceClient(served.url, instant=False)
    try:
        c.send({"type": "text", "text": "Tell me a long story about a dragon and a knight."})
        c.wait_for(lambda e: e["type"] == "audio")
        c.send({"type": "interrupt", "played": 0.4})
        reply = c.wait_for(lambda e: e["type"] == "reply")
        assert reply["interrupted"]
        session = c.wait_for(lambda e: e["type"] == "session" and e.get("id"))
    finally:
        c.close()
    written = "".join(e["text"] for e in c.of("reply_delta"))
    assert len(reply["text"].split()) <= 3 and len(written.split()) > len(reply["text"].split())
    with sqlite3.connect(served.workdir / "history.sqlite3") as db:
        ((kept, interrupted),) = db.execute(
            "SELECT assistant_text, interrupted FROM turns WHERE session_id = (SELECT id FROM sessions WHERE public_id = ?)",
            (session["id"],),
        )
    assert kept == reply["text"] and interrupted


def test_malformed_messages_get_error_events_and_the_session_goes_on(served):
    c = VoiceClient(served.url)
    try:
        c.wait_for(lambda e: e["type"] == "session")
        c.send(b"\x01\x02\x03")  # odd length: not 16-bit PCM
        assert "16-bit" in c.wait_for(lambda e: e["type"] == "error")["message"]
        c.send_raw("{not json")
        c.send_raw(json.dumps(["a list"]))
        c.send({"type": "launch-missiles"})
        c.send({"type": "text", "text": 42})
        c.send({"type": "played", "reply": "x", "seconds": "all"})
        c.send({"type": "text", "text": "x" * 100_000})
        c.wait_for(lambda e: e["type"] == "error" and "unknown message type" in e["message"])
        c.wait_for(lambda e: e["type"] == "error" and "characters" in e["message"])
        assert c.wait_for(lambda e: e["type"] == "error" and "non-empty string" in e["message"])
        rng = np.random.default_rng(1)
        c.stream(rng.uniform(-1, 1, 16000 * 2).astype(np.float32) * 0.05, realtime=False)  # noise, not speech
        c.send({"type": "text", "text": "Say hello."})
        c.wait_for(lambda e: e["type"] == "reply")
        assert not [e for e in c.of("user") if e["source"] == "voice"]  # noise never became a turn
    finally:
        c.close()
    unknown = VoiceClient(served.url, query="session=99999")  # (tests/test_hostile_voice.py tries every kind of wrong id)
    assert unknown.closed() == 1008 and "99999" not in unknown.wait_for(lambda e: e["type"] == "error")["message"]
    bad = VoiceClient(served.url, query="mode=banana")
    assert bad.closed() == 1008
    # a half-open client: a TCP connection that starts a handshake and goes silent
    with socket.create_connection(("127.0.0.1", served.port)) as raw:
        raw.sendall(b"GET /v1/voice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        assert served.status("/healthz") == 200


def test_a_client_that_leaves_mid_reply_stops_the_model(served):
    before = served.metric("voicechat_chat_tokens_total")
    c = VoiceClient(served.url)
    c.send({"type": "text", "text": COUNTING})
    c.wait_for(lambda e: e["type"] == "reply_delta")
    c.ws.close()  # gone without a word
    deadline = time.monotonic() + 30
    while served.metric("voicechat_active_sessions") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served.metric("voicechat_active_sessions") == 0
    settled = served.metric("voicechat_chat_tokens_total")
    time.sleep(1.0)
    assert served.metric("voicechat_chat_tokens_total") == settled  # nothing is still being written
    assert settled - before < 64  # the reply (max_tokens 64) was cut short
    # and over HTTP: a streamed chat whose client leaves
    import httpx

    before = served.metric("voicechat_chat_tokens_total")
    with httpx.stream(
        "POST",
        served.url + "/v1/chat/completions",
        timeout=60,
        json={"model": "x", "stream": True, "messages": [{"role": "user", "content": COUNTING}]},
    ) as r:
        for line in r.iter_lines():
            if '"content"' in line and '""' not in line:
                break
    time.sleep(1.5)
    settled = served.metric("voicechat_chat_tokens_total")
    time.sleep(1.0)
    assert served.metric("voicechat_chat_tokens_total") == settled and settled - before < 64
    assert served.metric("voicechat_active_requests") == 0
