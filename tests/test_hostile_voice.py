"""Hostile clients of the live protocols (issue 21): the voice WebSocket and Wyoming, against one real
`voicechat serve` on loopback with the bundled models; and `talk --server` when its server is killed.

Each test is a row of the hostile table: what a prober did, and what a robust server does instead.
- session ids: random (128 bits), resumed by that id only; a wrong, unknown, malformed, overlong or
  deleted id gets one and the same answer, which names no id (no oracle for enumeration);
- a client that floods (bad frames, typed turns, commands) or does not read is closed, and the
  server's memory stays bounded (peak RSS of the server process, /proc/PID/status VmHWM);
- live sessions are bounded by serve.max_sessions;
- Wyoming: a streamed text is bounded by serve.max_text_chars; every out-of-order event is answered
  at once (a transcript or an error), never left to the idle timeout;
- `talk --server` whose server is killed says so in one line with the turns done and the id to resume.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import VOICECHAT, speak, write_wav
from tests.serveproc import ServeProcess, free_port
from tests.voiceclient import VoiceClient
from voicechat.serve.voice_ws import SESSION_REFUSED

MAX_SESSIONS = 2


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    port = free_port()
    with ServeProcess(
        tmp_path_factory.mktemp("hostile-voice"),
        "--wyoming",
        f"tcp://127.0.0.1:{port}",
        config=f"llm:\n  max_tokens: 24\nserve:\n  max_sessions: {MAX_SESSIONS}\n",
    ) as server:
        server.wyoming_port = port
        yield server
    assert "Traceback" not in server.log_text(), server.log_text()


def db(server: ServeProcess) -> sqlite3.Connection:
    return sqlite3.connect(server.workdir / "history.sqlite3")


def wait_sessions_closed(server: ServeProcess) -> None:
    """The live-session gauge back at 0 (the previous test's sessions have wound down)."""
    for _ in range(1200):
        if server.metric("voicechat_active_sessions") == 0:
            return
        time.sleep(0.05)
    raise AssertionError("voice sessions still open")


def one_turn(server: ServeProcess, text: str = "Say hello.") -> str:
    """A session with one typed turn; the id the server gave for it."""
    wait_sessions_closed(server)
    c = VoiceClient(server.url)
    try:
        hello = c.wait_for(lambda e: e["type"] == "session")
        c.send({"type": "text", "text": text})
        reply = c.wait_for(lambda e: e["type"] == "reply", after=hello)
        return c.wait_for(lambda e: e["type"] == "session" and e.get("id"), after=reply)["id"]
    finally:
        c.close()


def refusal(server: ServeProcess, session: str) -> tuple[int | None, str, str]:
    """(close code, error message, close reason) for ?session=<session>."""
    from urllib.parse import quote

    wait_sessions_closed(server)
    c = VoiceClient(server.url, query=f"session={quote(session, safe='')}")
    try:
        code = c.closed()
        errors = c.of("error")
        assert not c.of("session"), c.events  # no session was opened for it
        return code, errors[0]["message"] if errors else "", c.close_reason
    finally:
        c.close()


# --- session ids --------------------------------------------------------------------------------------


def test_session_ids_are_random_and_a_wrong_one_says_nothing(served):
    public = one_turn(served)
    with db(served) as d:
        row, stored = d.execute("SELECT id, public_id FROM sessions WHERE public_id = ?", (public,)).fetchone()
    assert re.fullmatch(r"[0-9a-f]{32}", public) and public == stored  # 128 random bits, not the row number
    again = VoiceClient(served.url, query=f"session={public}")
    try:
        hello = again.wait_for(lambda e: e["type"] == "session")
        assert hello["id"] == public and hello["resumed_turns"] == 1
    finally:
        again.close()

    deleted = one_turn(served, "Name a colour.")
    with db(served) as d:
        d.execute("DELETE FROM sessions WHERE public_id = ?", (deleted,))
    log_before = served.log_text()
    answer = refusal(served, deleted)  # a session that existed: the reference answer
    assert answer == (1008, SESSION_REFUSED, SESSION_REFUSED[:120]), answer
    wrong = {
        "the row number of a live session": str(row),
        "another row number": "2",
        "30 digits (OverflowError before)": "9" * 30,
        "a well-formed id nobody was given": "0123456789abcdef0123456789abcdef",
        "the real id with one character changed": public[:-1] + ("0" if public[-1] != "0" else "1"),
        "the real id in capitals": public.upper(),
        "a path": "../../etc/passwd",
        "SQL": "1' OR '1'='1",
        "overlong": "a" * 5000,
        "a negative number": "-1",
        "unicode": "sessión-ünïcode-ﾃｽﾄ-0000000000",
        "NUL and newline": "abc\x00def\nghi0123456789",
    }
    for what, value in wrong.items():
        got = refusal(served, value)
        assert got == answer, (what, got)  # same close code, same message: nothing to tell them apart
        assert value[:8] not in got[1] and value[:8] not in got[2], what  # no id echoed
    added = served.log_text()[len(log_before) :]
    assert "Traceback" not in added and "OverflowError" not in added, added
    assert len(added.splitlines()) <= 1, added


# --- bounded per-connection queues ----------------------------------------------------------------------


def peak_reset(pid: int) -> int:
    """Reset the process's peak RSS to its current RSS (Linux: clear_refs 5); returns that RSS in kB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status_kb(pid, "VmRSS")


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def flood(server: ServeProcess, messages, *, read: bool) -> tuple[int, int | None, str]:
    """Send the messages as fast as the socket takes them (the client reads nothing when ``read`` is
    false); returns (sent, close code, close reason) once the server has closed the connection."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    # without permessage-deflate: what is measured is the server's own queues, not the compression ratio of a burst
    # (a compressed burst is inflated into uvicorn's receive queue before the app sees it)
    ws = connect(
        server.url.replace("http://", "ws://") + "/v1/voice",
        subprotocols=["voicechat"],
        max_queue=4,
        open_timeout=20,
        close_timeout=5,
        ping_interval=None,
        compression=None,
    )
    sent = 0
    reader = None
    if read:

        def drop_all() -> None:
            try:
                for _ in ws:
                    pass
            except ConnectionClosed:
                pass

        reader = threading.Thread(target=drop_all, daemon=True)  # read and drop everything
        reader.start()
    ws.socket.settimeout(10)  # a server that has stopped reading us (it closed the session): stop sending
    log_start = len(server.log_text())
    done = threading.Event()  # the sending has ended

    def cut_once_closed() -> None:
        """A client that does not read never sees the close: once the server has said that it closed this
        client (it reads nothing more from it), end the send that waits for room in a second, not after the
        socket's timeout."""
        while not done.is_set():
            if "closed a client" in server.log_text()[log_start:]:
                if not done.wait(1.0):  # (still sending a second later)
                    try:
                        ws.socket.shutdown(socket.SHUT_WR)  # the blocked send fails: websockets closes and raises
                    except OSError:
                        pass
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=cut_once_closed, daemon=True)
    if not read:
        watcher.start()
    try:
        for message in messages:
            ws.send(message)
            sent += 1
    except (ConnectionClosed, TimeoutError):
        pass
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join(5)
    if reader is not None:  # it reads up to the close (one reader only: websockets refuses two at once)
        reader.join(60)
    else:
        try:  # now read what is left, up to the close
            for _ in ws:
                pass
        except ConnectionClosed:
            pass
    code = ws.protocol.close_rcvd.code if ws.protocol.close_rcvd is not None else None
    reason = ws.protocol.close_rcvd.reason if ws.protocol.close_rcvd is not None else ""
    ws.close()
    return sent, code, reason


def test_floods_and_clients_that_do_not_read_are_closed_and_memory_stays_bounded(served):
    pid = served.proc.pid
    long_text = "word " * 1600  # 8 000 characters
    one_turn(served, long_text)  # the chat model's cache holds a long prompt once (resident from now on): not the flood's cost
    rows = {}

    def row(what: str, messages, *, read: bool = False) -> None:
        wait_sessions_closed(served)
        log_before = len(served.log_text())
        before = peak_reset(pid)
        sent, code, reason = flood(served, messages, read=read)
        wait_sessions_closed(served)
        rows[what] = {
            "sent": sent,
            "code": code,
            "reason": reason,
            "grew_mb": round((status_kb(pid, "VmHWM") - before) / 1024, 1),
            "log": served.log_text()[log_before:].strip(),
        }

    text = json.dumps({"type": "text", "text": long_text})
    row("typed turns, never reading", (text for _ in range(20_000)))  # before: every one queued, +134 MB
    row("odd-length frames, never reading", (b"\x01\x02\x03" for _ in range(300_000)))  # before: an error queued per frame
    echoed = json.dumps({"type": "command", "line": "/" + "x" * 8000})  # answered with an 8 KB notice, never read
    row("answers never read", (echoed for _ in range(20_000)))  # before: every answer queued, +160 MB
    row("odd-length frames, reading", (b"\x01\x02\x03" for _ in range(300_000)), read=True)
    print(json.dumps(rows, indent=1))

    for what, r in rows.items():
        assert r["grew_mb"] < 40, (what, rows)  # a bound, not a time: before the fix these grew with every message
        assert len(r["log"].splitlines()) == 1, (what, rows)  # one line says why the client was closed
    assert "refused" in rows["typed turns, never reading"]["log"] and "refused" in rows["odd-length frames, never reading"]["log"]
    assert "not reading" in rows["answers never read"]["log"]
    reading = rows["odd-length frames, reading"]
    assert reading["code"] == 1008 and "refused" in reading["reason"], reading  # a client that reads is told why

    # a client that sends a few bad frames but reads is told about each (coalesced while unread), and goes on
    c = VoiceClient(served.url)
    try:
        c.wait_for(lambda e: e["type"] == "session")
        for _ in range(20):
            c.send(b"\x01\x02\x03")
        c.send({"type": "text", "text": "Say hello."})
        c.wait_for(lambda e: e["type"] == "reply")
        errors = c.of("error")
        assert errors and sum(1 + e.get("repeats", 0) for e in errors) == 20, errors
    finally:
        c.close()
    assert served.status("/healthz") == 200


def test_typed_turns_waiting_for_an_answer_are_bounded(served):
    wait_sessions_closed(served)
    c = VoiceClient(served.url)
    try:
        c.wait_for(lambda e: e["type"] == "session")
        for n in range(12):
            c.send({"type": "text", "text": f"Say the number {n}."})
        refused = c.wait_for(lambda e: e["type"] == "error" and "waiting for an answer" in e["message"])
        assert "dropped" in refused["message"]
        c.send({"type": "end"})
        c.closed(300)
        users = [e for e in c.of("user") if e["source"] == "typed"]
        assert 1 <= len(users) <= 4 + 1, users  # the waiting ones (and one answered meanwhile at most), not twelve
    finally:
        c.close()


def test_mode_messages_are_checked(served):
    wait_sessions_closed(served)
    c = VoiceClient(served.url)
    try:
        hello = c.wait_for(lambda e: e["type"] == "session")
        for bad in ("banana", None, 3, ["ptt"], "PTT"):
            c.send({"type": "mode", "mode": bad})
            c.wait_for(lambda e: e["type"] == "error" and "vad" in e["message"] and "ptt" in e["message"], after=hello)
        c.send({"type": "mode", "mode": "ptt"})
        c.wait_for(lambda e: e["type"] == "status" and e["state"] == "idle", after=hello)  # push-to-talk: idle until a key
        c.send({"type": "text", "text": "Say hello."})
        c.wait_for(lambda e: e["type"] == "reply")
        assert len(c.of("error")) <= 5
    finally:
        c.close()


def test_live_sessions_are_bounded_by_max_sessions(served):
    wait_sessions_closed(served)
    held = [VoiceClient(served.url) for _ in range(MAX_SESSIONS)]
    try:
        for c in held:
            c.wait_for(lambda e: e["type"] == "session")
        extra = VoiceClient(served.url)
        assert extra.closed() == 1013 and "max_sessions" in extra.close_reason
        assert served.status("/v1/models") == 200  # the HTTP routes still answer
    finally:
        for c in held:
            c.close()
    wait_sessions_closed(served)
    again = VoiceClient(served.url)
    try:
        again.wait_for(lambda e: e["type"] == "session")
    finally:
        again.close()


# --- Wyoming ------------------------------------------------------------------------------------------


def wyoming(server: ServeProcess, events: list, *, until=None, timeout: float = 60) -> list:
    """Send the events with the wyoming package's own client; the events answered, up to ``until``(event)
    or the close. A wait past ``timeout`` is a hang (what the fix removes), reported as a failure."""
    from wyoming.client import AsyncTcpClient

    async def go() -> list:
        c = AsyncTcpClient("127.0.0.1", server.wyoming_port)
        await c.connect()
        got = []
        try:
            for event in events:
                await c.write_event(event.event())
            while True:
                try:
                    event = await asyncio.wait_for(c.read_event(), timeout)
                except asyncio.TimeoutError:
                    raise AssertionError(f"no answer (a hang); got {[e.type for e in got]}") from None
                if event is None:
                    return got
                got.append(event)
                if until is not None and until(event):
                    return got
        finally:
            await c.disconnect()

    return asyncio.run(go())


def test_wyoming_streamed_text_is_bounded_by_max_text_chars(served):
    from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop

    text = "This is a sentence. " * 3000  # 60 000 characters (before: 782 s of audio)
    got = wyoming(served, [SynthesizeStart(), SynthesizeChunk(text=text), SynthesizeStop()])
    assert [e.type for e in got][:1] == ["error"] and "max_text_chars" in got[0].data["text"], [e.type for e in got]
    assert not [e for e in got if e.type == "audio-chunk"]


@pytest.mark.parametrize(
    "case",
    [
        "transcribe, audio-stop, no audio",
        "audio-chunk before audio-start",
        "audio-stop alone",
        "audio-start twice",
        "synthesize-stop alone",
        "synthesize-start twice",
    ],
)
def test_wyoming_events_out_of_order_are_answered_at_once(served, case):
    from wyoming.asr import Transcribe
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop

    fmt = {"rate": 16000, "width": 2, "channels": 1}
    pcm = (speak("Good morning.") * 32767).astype("<i2").tobytes()
    if case == "transcribe, audio-stop, no audio":
        got = wyoming(served, [Transcribe(language="en"), AudioStop()], until=lambda e: e.type in ("transcript", "error"))
        assert got[-1].type == "transcript" and got[-1].data["text"] == ""
    elif case == "audio-chunk before audio-start":
        got = wyoming(served, [AudioChunk(audio=pcm[:3200], **fmt)] * 5, until=lambda e: e.type == "error")
        assert "before audio-start" in got[-1].data["text"]
    elif case == "audio-stop alone":
        got = wyoming(served, [AudioStop()], until=lambda e: e.type in ("transcript", "error"))
        assert got[-1].type == "error" and "without audio-start" in got[-1].data["text"]
    elif case == "audio-start twice":  # said, and the second stream is transcribed
        events = [Transcribe(language="en"), AudioStart(**fmt), AudioChunk(audio=pcm[:6400], **fmt), AudioStart(**fmt)]
        events += [AudioChunk(audio=pcm[i : i + 4096], **fmt) for i in range(0, len(pcm), 4096)] + [AudioStop()]
        got = wyoming(served, events, until=lambda e: e.type == "transcript")
        assert [e.type for e in got if e.type in ("error", "transcript")] == ["error", "transcript"]
        assert "morning" in got[-1].data["text"].lower()
    elif case == "synthesize-stop alone":
        got = wyoming(served, [SynthesizeStop()], until=lambda e: e.type in ("error", "synthesize-stopped"))
        assert got[-1].type == "error" and "without synthesize-start" in got[-1].data["text"]
    else:
        events = [
            SynthesizeStart(),
            SynthesizeChunk(text="Unfinished words"),
            SynthesizeStart(),
            SynthesizeChunk(text="Hello."),
            SynthesizeStop(),
        ]
        got = wyoming(served, events, until=lambda e: e.type == "synthesize-stopped")
        assert got[0].type == "error" and "synthesize-start inside" in got[0].data["text"]
        assert [e for e in got if e.type == "audio-chunk"]  # the second stream is spoken


# --- talk --server when the server dies ------------------------------------------------------------------


def test_talk_server_says_when_its_server_is_killed(tmp_path):
    question = np.concatenate(
        [np.zeros(8000, dtype=np.float32), speak("What is the capital of France?"), np.zeros(16000 * 60, dtype=np.float32)]
    )
    wav = write_wav(tmp_path / "question.wav", question)
    with ServeProcess(tmp_path / "s", config="llm:\n  max_tokens: 24\n") as server:
        proc = subprocess.Popen(
            [VOICECHAT, "talk", "--server", server.url, "--input", str(wav), "--output", str(tmp_path / "out.wav"), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "VOICECHAT_SERVE_RECONNECT_S": "1"},  # the server stays dead: give up after 1 s of retries
        )
        events = []
        assert proc.stdout is not None
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["type"] == "turn_stats":
                break
        time.sleep(1.0)  # the turn is committed just after its stats (the server's "session" event follows)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(30)
        out, err = proc.communicate(timeout=120)
        with db(server) as d:
            public = d.execute("SELECT public_id FROM sessions").fetchone()[0]
    events += [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    stderr = err.decode()
    assert proc.returncode != 0, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("voicechat: error:")]
    assert len(errors) == 1, stderr
    assert server.url in errors[0] and "went away" in errors[0] and "1 turn completed" in errors[0], errors
    assert f"--resume {public}" in errors[0], (errors, public)
    summary = [e for e in events if e["type"] == "summary"]
    assert summary and summary[-1]["turns"] == 1 and summary[-1]["session_id"] == public


# --- a tool call the model was not offered (the root is fixed in voicechat/conversation/chat.py) ----------------------


def test_a_tool_call_not_offered_leaves_the_voice_session_alive(tmp_path):
    from tests.servers import OpenAILikeServer, ToolCalls

    with OpenAILikeServer() as llm:
        llm.script = [ToolCalls(("calculator", '{"expression": "6 * 7"}')), "It is 42.", "Still here."]
        config = f"llm:\n  engine: openai\n  base_url: {llm.base_url}\n  model: test-model\n  retries: 0\ntools:\n  enabled: false\n"
        with ServeProcess(tmp_path / "s", config=config) as server:
            c = VoiceClient(server.url)
            try:
                hello = c.wait_for(lambda e: e["type"] == "session")
                c.send({"type": "text", "text": "What is six times seven?"})
                first = c.wait_for(lambda e: e["type"] == "reply", after=hello)
                c.send({"type": "text", "text": "Are you there?"})
                second = c.wait_for(lambda e: e["type"] == "reply", after=first)
            finally:
                c.close()
            log = server.log_text()
    assert "42" in first["text"] and second["text"] == "Still here."
    assert not [e for e in c.of("error") if "internal error" in e["message"]], c.events
    assert "Traceback" not in log
