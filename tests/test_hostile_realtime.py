"""`/v1/realtime` against hostile clients (issue 23): events too big, audio faster than real time, malformed events,
floods of them, a client that leaves mid-response or says nothing, and a server that shuts down. One real
`voicechat serve` for the module; raw WebSocket messages where the SDK would not send them."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest

from tests.serveproc import ServeProcess
from voicechat.serve import realtime_events as rt

KEY = "hostile-realtime-key"
IDLE_S = 15
MAX_TOKENS = 300
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    config = f"llm:\n  max_tokens: {MAX_TOKENS}\nserve:\n  api_key: {KEY}\n  idle_timeout_s: {IDLE_S}\n  max_tokens: {MAX_TOKENS}\n"
    with ServeProcess(tmp_path_factory.mktemp("hostile-realtime"), config=config) as server:
        yield server
    assert "Traceback" not in server.log_text(), server.log_text()


def connect(server: ServeProcess):
    from websockets.sync.client import connect as ws_connect

    ws = ws_connect(server.url.replace("http", "ws") + "/v1/realtime?model=x", additional_headers=AUTH, max_size=None)
    assert json.loads(ws.recv())["type"] == "session.created"
    return ws


def events(ws, until: str) -> list[dict]:
    got = []
    while True:
        doc = json.loads(ws.recv(timeout=300))
        assert doc["type"] != "error", doc
        got.append(doc)
        if doc["type"] == until:
            return got


def test_bad_events_each_get_an_error_naming_them_and_the_connection_goes_on(served):
    second = np.zeros(rt.RATE * 9, dtype="<i2").tobytes()  # 9 s at once: more than may wait to be heard
    bad = [
        ("e1", "{not json"),
        ("e2", json.dumps({"type": "session.update", "session": [], "event_id": "e2"})),
        ("e3", json.dumps({"type": "input_audio_buffer.append", "audio": "@@@", "event_id": "e3"})),
        ("e4", json.dumps({"type": "input_audio_buffer.append", "audio": 5, "event_id": "e4"})),
        ("e5", json.dumps({"type": "conversation.item.create", "item": 5, "event_id": "e5"})),
        ("e6", json.dumps({"type": "response.create", "response": 7, "event_id": "e6"})),
        ("e7", json.dumps({"type": "conversation.item.truncate", "item_id": "x", "audio_end_ms": "x", "event_id": "e7"})),
        ("e8", json.dumps({"type": "teleport", "event_id": "e8"})),
        ("e9", json.dumps({"type": "session.update", "session": {"instructions": "x" * (1 << 20)}, "event_id": "e9"})),
        ("e10", json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(second).decode(), "event_id": "e10"})),
    ]
    with connect(served) as ws:
        for _, text in bad:
            ws.send(text)
        errors = [json.loads(ws.recv(timeout=60)) for _ in bad]
        assert [e["type"] for e in errors] == ["error"] * len(bad)
        assert [e["error"]["event_id"] for e in errors] == [None, *[name for name, _ in bad[1:8]], None, "e10"]
        assert "too large" in errors[8]["error"]["message"] and errors[9]["error"]["code"] == "input_audio_buffer_full"
        ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}))
        assert json.loads(ws.recv(timeout=60))["session"]["output_modalities"] == ["text"]  # it goes on


def test_too_many_refused_events_close_the_connection(served):
    from websockets.exceptions import ConnectionClosed

    with connect(served) as ws:
        for _ in range(1002):
            ws.send("{")
        close = None
        try:
            while True:
                ws.recv(timeout=120)
        except ConnectionClosed as e:  # the close
            close = e
    assert getattr(getattr(close, "rcvd", None), "code", None) == 1008


def test_a_client_that_leaves_mid_response_stops_the_model(served):
    tokens = lambda: served.metric("voicechat_chat_tokens_total", AUTH)  # noqa: E731
    before = tokens()
    with connect(served) as ws:
        story = "Write a very long story, at least a thousand words, about a dragon who learns to bake bread."
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": story}]}
        ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        ws.send(json.dumps({"type": "response.create"}))
        events(ws, "response.output_audio.delta")
    deadline = time.monotonic() + 60
    while served.metric("voicechat_active_sessions", AUTH) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    from openai import OpenAI

    # the model is one: this answer waits for it to be free, so the story's tokens are all counted by then
    OpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0).chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Hi"}], max_tokens=1
    )
    written = tokens() - before
    assert 0 < written < MAX_TOKENS // 2, written  # cut near its first sentence, not written to the end


def test_a_silent_client_is_closed_after_the_idle_timeout(served):
    with connect(served) as ws:
        doc = json.loads(ws.recv(timeout=IDLE_S * 10))
        assert doc["type"] == "error" and "idle_timeout_s" in doc["error"]["message"]
        from websockets.exceptions import ConnectionClosed

        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)


def test_a_shutdown_closes_realtime_sessions_cleanly_with_the_restart_code(served):
    with connect(served) as ws:
        served.terminate()
        from websockets.exceptions import ConnectionClosed

        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=120)
    rcvd = getattr(closed.value, "rcvd", None)
    assert rcvd is not None and rcvd.code == 1012 and "shutting down" in rcvd.reason
    assert served.proc is not None
    # drained, not forced, and not crashed: an engine is freed only once no session is inside it (it exited -11 when
    # llama.cpp was freed under a reply still being made for the client that left mid-response)
    assert served.proc.wait(120) == 0
