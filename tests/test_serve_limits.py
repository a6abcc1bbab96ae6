"""`voicechat serve` under hostile and heavy use: keys, every limit, SIGTERM draining, and the terminal as its client."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time

import numpy as np
import pytest

from tests.helpers import VOICECHAT, assert_one_line_error, run_clis, speak, wer, write_wav
from tests.serveproc import ServeProcess, free_port
from tests.voiceclient import VoiceClient

KEY = "vc-test-key-0123456789abcdef"
COUNTING = "Count from one to two hundred, writing every number as a word, separated by commas."


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16000 * seconds), dtype=np.float32)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """One server with an API key, for the tests of the key (one start-up instead of one per test)."""
    with ServeProcess(tmp_path_factory.mktemp("keyed"), "--api-key", KEY) as server:
        yield server


def test_api_key_guards_every_route_and_the_websocket_and_never_shows(keyed):
    import openai

    server = keyed
    assert server.status("/healthz") == 200 and server.status("/readyz") == 200  # a balancer's probes stay open
    assert server.status("/v1/models") == 401 and server.status("/metrics") == 401
    assert server.status("/v1/models", {"Authorization": "Bearer wrong"}) == 401
    assert server.status("/v1/models", {"Authorization": f"Bearer {KEY}"}) == 200
    assert server.status("/v1/models", {"X-API-Key": KEY}) == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).models.list()
    good = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
    assert good.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi."}]).choices[0].message.content
    refused = VoiceClient(server.url)
    assert refused.closed() == 1008
    header = VoiceClient(server.url, headers={"Authorization": f"Bearer {KEY}"})
    header.wait_for(lambda e: e["type"] == "session")
    header.close()
    browser = VoiceClient(server.url, key=KEY)  # the key as a subprotocol, as the web page sends it
    browser.wait_for(lambda e: e["type"] == "session")
    browser.close()
    metrics = server.metrics({"Authorization": f"Bearer {KEY}"})
    assert KEY not in metrics
    assert KEY not in server.log_text()


def test_binding_beyond_loopback_warns_and_a_slow_request_times_out(tmp_path):
    import httpx

    server = ServeProcess(tmp_path / "s", "--host", "0.0.0.0", config="serve:\n  request_timeout_s: 1\nllm:\n  max_tokens: 400\n")
    server.url = f"http://127.0.0.1:{server.port}"
    with server:
        r = httpx.post(
            server.url + "/v1/chat/completions", timeout=60, json={"model": "x", "messages": [{"role": "user", "content": COUNTING}]}
        )
        assert r.status_code == 504 and "request_timeout_s" in r.json()["error"]["message"]
        assert server.status("/healthz") == 200
    assert "without an API key" in server.log_text()


LIMITS = """
serve:
  max_upload_mb: 0.2
  max_audio_s: 5
  max_text_chars: 200
  max_sessions: 1
  max_active: 1
  max_queued: 0
  idle_timeout_s: 3
llm:
  max_tokens: 200
"""


def test_every_limit_answers_with_its_status_and_the_server_keeps_serving(tmp_path):
    import openai

    big = write_wav(tmp_path / "big.wav", np.zeros(16000 * 8, dtype=np.float32))  # 256 kB > 0.2 MB
    long = tmp_path / "long.flac"
    import soundfile as sf

    sf.write(str(long), np.concatenate([speak("This recording is longer than the server takes."), silence(6)]), 16000)
    with ServeProcess(tmp_path / "s", config=LIMITS) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=60)
        with pytest.raises(openai.APIStatusError) as e:
            client.audio.transcriptions.create(model="whisper-1", file=open(big, "rb"))
        assert e.value.status_code == 413 and "max_upload_mb" in str(e.value)
        with pytest.raises(openai.APIStatusError) as e:
            client.audio.transcriptions.create(model="whisper-1", file=open(long, "rb"))
        assert e.value.status_code == 413 and "up to 5 s" in str(e.value)
        with pytest.raises(openai.APIStatusError) as e:
            client.audio.speech.create(model="tts-1", voice="x", input="word " * 100)
        assert e.value.status_code == 413 and "up to 200" in str(e.value)
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="x", messages=[{"role": "user", "content": "word " * 100}])
        assert e.value.status_code == 413

        # one engine slot and no queue: of three long requests at once, the extra ones get 503 + Retry-After
        import httpx

        results: list[tuple[int, str | None]] = []

        def ask() -> None:
            r = httpx.post(
                server.url + "/v1/chat/completions", timeout=120, json={"model": "x", "messages": [{"role": "user", "content": COUNTING}]}
            )
            results.append((r.status_code, r.headers.get("retry-after")))

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.2)
        for t in threads:
            t.join(180)
        codes = sorted(code for code, _ in results)
        assert codes.count(200) >= 1 and set(codes) <= {200, 503} and 503 in codes, results
        assert all(retry for code, retry in results if code == 503)
        assert server.metric("voicechat_refused_total", what="request") >= 1

        # one voice session at a time; the next one is told to come back later (close code 1013)
        first = VoiceClient(server.url)
        first.wait_for(lambda e: e["type"] == "session")
        second = VoiceClient(server.url)
        assert second.closed() == 1013 and "max_sessions" in second.close_reason
        # and a session that goes quiet is closed after serve.idle_timeout_s
        first.wait_for(lambda e: e["type"] == "error" and "idle_timeout_s" in e["message"], timeout=30)
        assert first.closed() == 1000
        third = VoiceClient(server.url)  # the slot is free again
        third.wait_for(lambda e: e["type"] == "session")
        third.close()
        assert server.status("/healthz") == 200


def test_sigterm_drains_requests_and_sessions_and_keeps_every_turn(tmp_path):
    import httpx

    with ServeProcess(tmp_path / "s", config="llm:\n  max_tokens: 60\n") as server:
        c = VoiceClient(server.url)
        c.wait_for(lambda e: e["type"] == "session")
        c.send({"type": "text", "text": "Tell me about the sea."})
        c.wait_for(lambda e: e["type"] == "reply_delta")
        speech: dict = {}

        def long_speech() -> None:
            r = httpx.post(server.url + "/v1/audio/speech", timeout=120, json={"input": "One sentence. " * 12, "response_format": "wav"})
            speech["status"], speech["bytes"] = r.status_code, len(r.content)

        t = threading.Thread(target=long_speech)
        t.start()
        time.sleep(0.3)
        server.terminate()
        closing = c.wait_for(lambda e: e["type"] == "closing", timeout=30)
        reply = c.wait_for(lambda e: e["type"] == "reply", timeout=60)
        assert c.closed(60) == 1012  # "service restart": reconnect, elsewhere
        t.join(120)
        code = server.proc.wait(60)
    assert code == 0, server.log_text()
    assert speech["status"] == 200 and speech["bytes"] > 22050 * 2 * 3  # the in-flight request finished whole
    assert "Traceback" not in server.log_text()
    with sqlite3.connect(tmp_path / "s" / "history.sqlite3") as db:
        rows = db.execute("SELECT user_text, assistant_text FROM turns").fetchall()
    assert rows == [("Tell me about the sea.", reply["text"])]
    with sqlite3.connect(tmp_path / "s" / "history.sqlite3") as db:
        public = db.execute("SELECT public_id FROM sessions").fetchall()
    assert closing["session"] in (None, *(p for (p,) in public))


@pytest.mark.serial
def test_talk_server_through_the_sound_card(tmp_path, hear):
    """`talk --server`: the microphone and the speaker here (a PulseAudio card), the session on the server."""
    import json
    import os

    from tests.soundcard import PulseCard

    question = "What is the capital of France?"
    with ServeProcess(tmp_path / "s", config="llm:\n  max_tokens: 40\n") as server, PulseCard(tmp_path / "pulse") as card:
        card.start_recording()
        proc = subprocess.Popen(
            [VOICECHAT, "talk", "--server", server.url, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **card.env},
        )
        events = []
        lines = iter(proc.stdout)
        for line in lines:
            events.append(json.loads(line))
            if events[-1] == {"type": "status", "state": "listening"}:
                break
        card.feed_mic(np.concatenate([speak(question), silence(1.0)])).wait()
        for line in lines:
            events.append(json.loads(line))
            if events[-1]["type"] == "turn_stats":
                break
        time.sleep(1.0)
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
        events += [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        played = card.stop_recording()
    assert proc.returncode == 0, err.decode()
    users = [e for e in events if e["type"] == "user"]
    replies = [e for e in events if e["type"] == "reply"]
    assert users and wer(question, users[0]["text"]) <= 0.2
    assert replies and replies[0]["text"].strip() and not replies[0]["interrupted"]
    summary = [e for e in events if e["type"] == "summary"]
    assert summary and summary[-1]["turns"] == 1
    with sqlite3.connect(tmp_path / "s" / "history.sqlite3") as db:
        assert summary[-1]["session_id"] == db.execute("SELECT public_id FROM sessions").fetchone()[0]  # what --resume takes
    assert wer(replies[0]["text"], hear(played, 48000)) <= 0.35  # the reply came out of this machine's speaker
    with sqlite3.connect(tmp_path / "s" / "history.sqlite3") as db:
        rows = db.execute("SELECT user_text, assistant_text FROM turns").fetchall()
    assert rows == [(users[0]["text"], replies[0]["text"])]  # the history is the server's


def test_talk_server_errors_are_one_line(keyed):
    port = free_port()
    unreachable, ftp, model, unkeyed = run_clis(
        {"args": ("talk", "--server", f"http://127.0.0.1:{port}", "--json"), "timeout": 60},
        {"args": ("talk", "--server", "ftp://x"), "timeout": 60},
        {"args": ("talk", "--server", "http://127.0.0.1:1", "--llm-model", "x.gguf"), "timeout": 60},
        {"args": ("talk", "--server", keyed.url, "--json"), "timeout": 60},
    )
    assert unreachable.returncode == 1
    assert_one_line_error(unreachable.stderr.decode(), "cannot reach", "voicechat serve")
    assert_one_line_error(ftp.stderr.decode(), "not a server address")
    assert_one_line_error(model.stderr.decode(), "--llm-model", "does not apply with --server")
    assert_one_line_error(unkeyed.stderr.decode(), "API key")
    assert KEY not in unkeyed.stderr.decode()
