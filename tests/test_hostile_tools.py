"""Hostile inputs for the decoder and the tools (issue 21, items 6, 7, 11 and 17), one row per case.

Audio: files built here byte by byte (a 1 Hz FLAC of a few hundred bytes that once grew a process by
gigabytes, WAVs with absurd rates or channel counts, PCM at 1 Hz in a video container, compressed
silence past what its size can hold) go through the decoder, `voicechat transcribe` (peak memory
measured) and a real `voicechat serve` (its peak RSS read from /proc). Tools: expressions that
would hold the interpreter for minutes, a tool stuck in one C call (the deadline kills its
process), zone names that are folders, paths or junk, and a model that calls tools it was not offered.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import VOICECHAT, assert_one_line_error, run_cli
from tests.hostile import EchoingServer, run_measured
from tests.servers import ToolCalls
from voicechat.config import resolve
from voicechat.conversation.chat import Conversation
from voicechat.decode import decode, open_audio
from voicechat.engines import registry
from voicechat.engines.base import ToolCall, ToolSpec
from voicechat.errors import VoicechatError
from voicechat.tools import calculator, clock
from voicechat.tools.base import Tool
from voicechat.tools.box import ToolBox

MEMORY_MB = 700  # `voicechat transcribe` with the bundled tiny model peaks near 300 MB; the bomb took 2.6 GB and more


# --- files built byte by byte --------------------------------------------------------------------
def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _utf8_number(n: int) -> bytes:
    return chr(n).encode("utf-8") if n < 0x110000 else b""


def flac(path: Path, rate: int, frames: int, block: int = 4096, total: int = 0, rate_codes: tuple[int, ...] = (0,)) -> Path:
    """A FLAC of constant (silent) mono frames: each is ten-odd bytes whatever its length. ``total`` is the
    sample count STREAMINFO declares (0: unknown). Frame n gives the rate code rate_codes[n % len]
    (0: STREAMINFO's rate, 4: 8000 Hz, 5: 16000 Hz...)."""
    info = block
    info = (info << 16) | block
    info = (info << 24) | 0
    info = (info << 24) | 0
    info = (info << 20) | rate
    info = (info << 3) | 0  # mono
    info = (info << 5) | 15  # 16 bits
    info = (info << 36) | total
    streaminfo = info.to_bytes(18, "big") + bytes(16)
    out = bytearray(b"fLaC" + bytes([0x80]) + len(streaminfo).to_bytes(3, "big") + streaminfo)
    for n in range(frames):
        # sync + fixed blocking; block size: 16 bits after the header; rate: from STREAMINFO; mono, 16 bits
        header = bytes([0xFF, 0xF8, 0x70 | rate_codes[n % len(rate_codes)], 0x08]) + _utf8_number(n) + (block - 1).to_bytes(2, "big")
        header += bytes([_crc8(header)])
        frame = header + b"\x00" + b"\x00\x00"  # CONSTANT subframe, value 0
        out += frame + _crc16(frame).to_bytes(2, "big")
    path.write_bytes(bytes(out))
    return path


def wav(path: Path, rate: int, channels: int = 1, data_bytes: int = 200_000, declared: int | None = None) -> Path:
    """A 16-bit PCM WAV with whatever header fields are asked for (and a data chunk of zeros)."""
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, 16)
    data_size = data_bytes if declared is None else declared
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_size) + bytes(data_bytes)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def matroska_pcm(path: Path, rate: int, seconds_of_samples: int = 50_000) -> Path:
    """PCM at ``rate`` in a Matroska (video) container, muxed by FFmpeg."""
    import av

    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        left = seconds_of_samples
        pts = 0
        while left > 0:
            n = min(left, 4096)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, n), dtype=np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, pts
            for packet in stream.encode(frame):
                out.mux(packet)
            pts += n
            left -= n
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def vorbis(path: Path, rate: int) -> Path:
    """An Ogg Vorbis of 20 s of noise whose identification header is then made to say ``rate`` (page CRC redone)."""
    import soundfile as sf

    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 16000 * 20).astype(np.float32)
    sf.write(str(path), noise, 16000, format="OGG", subtype="VORBIS")
    data = bytearray(path.read_bytes())
    at = data.index(b"\x01vorbis") + 12
    data[at : at + 4] = struct.pack("<I", rate)
    segments = data[26]
    end = 27 + segments + sum(data[27 : 27 + segments])
    data[22:26] = bytes(4)
    data[22:26] = struct.pack("<I", _ogg_crc(bytes(data[:end])))
    path.write_bytes(bytes(data))
    return path


BOMBS = {  # name: (builder, what the one line says)
    "flac_1hz": (lambda p: flac(p / "bomb.flac", rate=1, frames=37), "sample rate 1 Hz"),
    "wav_1hz": (lambda p: wav(p / "slow.wav", rate=1), "sample rate 1 Hz"),
    "wav_2g_hz": (lambda p: wav(p / "fast.wav", rate=2**31 - 1), "sample rate 2147483647 Hz"),
    "wav_1000_channels": (lambda p: wav(p / "wide.wav", rate=16000, channels=1000), "1000 audio channels"),
    "mkv_pcm_1hz": (lambda p: matroska_pcm(p / "video.mkv", rate=1), "sample rate 1 Hz"),
    "ogg_vorbis_1hz": (lambda p: vorbis(p / "slow.ogg", rate=1), "sample rate 1 Hz"),
    # 4000 Hz passes the floor, but 65535-sample silent frames are 16 s each in 12 bytes: more audio than bytes can hold
    "flac_dense_silence": (lambda p: flac(p / "dense.flac", rate=4000, frames=400, block=65535), "more audio than"),
}


@pytest.mark.fast
@pytest.mark.parametrize("case", sorted(BOMBS))
def test_decoder_refuses_a_bomb_before_resampling_it(tmp_path, case):
    build, needle = BOMBS[case]
    path = build(tmp_path)
    with pytest.raises(VoicechatError) as e:
        with open_audio(path) as audio:
            for _ in audio:
                pass
    assert needle in e.value.message and "\n" not in e.value.message, e.value.message
    assert str(path.name) in e.value.message


@pytest.mark.fast
def test_a_long_declared_length_decodes_what_is_there(tmp_path):
    """A FLAC that declares 2**36-1 samples (49 days) but holds 10 s is not a reason to allocate for 49 days."""
    path = flac(tmp_path / "claims.flac", rate=16000, frames=40, block=4000, total=2**36 - 1)
    with open_audio(path) as audio:
        assert audio.duration and audio.duration > 4_000_000
        with pytest.raises(VoicechatError, match="truncated audio"):
            for _ in audio:
                pass
    assert audio.samples == 160_000


@pytest.mark.fast
def test_a_rate_that_changes_mid_stream_is_followed(tmp_path):
    """Frames at 16000 Hz, then 8000 Hz, then 16000 Hz again: each part is resampled at its own rate."""
    path = flac(tmp_path / "changing.flac", rate=16000, frames=30, block=4000, rate_codes=(5,) * 10 + (4,) * 10 + (5,) * 10)
    audio = decode(path)
    assert abs(audio.size - (10 * 4000 + 10 * 8000 + 10 * 4000)) < 200, audio.size


@pytest.mark.fast
def test_max_seconds_stops_at_the_frame_that_passes_it(tmp_path):
    from voicechat.decode import TooLong

    path = flac(tmp_path / "long.flac", rate=16000, frames=100, block=16000)  # 100 s of silence
    with pytest.raises(TooLong, match="more than 5 s"):
        decode(path, max_seconds=5)
    assert decode(path, max_seconds=200).size == 1_600_000


@pytest.mark.fast
def test_an_upload_is_named_by_its_own_name(tmp_path):
    path = wav(tmp_path / "voicechat-upload-x1y2", rate=1)
    with pytest.raises(VoicechatError) as e:
        open_audio(path, name="meeting.wav")
    assert "meeting.wav" in e.value.message and str(tmp_path) not in e.value.message


@pytest.mark.parametrize("case", ["flac_1hz", "wav_1hz", "flac_dense_silence"])
def test_transcribe_a_bomb_is_one_line_in_bounded_memory(tmp_path, case):
    build, needle = BOMBS[case]
    path = build(tmp_path)
    got = run_measured([VOICECHAT, "transcribe", str(path)], timeout=120)
    assert got["code"] != 0 and got["stdout"] == ""
    assert_one_line_error(got["stderr"], needle)
    assert len(got["stderr"].strip().splitlines()) == 1, got["stderr"]
    assert got["peak_mb"] < MEMORY_MB, got


@pytest.mark.parametrize("case", ["flac_1hz", "flac_dense_silence"])
def test_transcribe_a_bomb_on_stdin_is_one_line_in_bounded_memory(tmp_path, case):
    build, needle = BOMBS[case]
    got = run_measured([VOICECHAT, "transcribe", "-"], stdin=build(tmp_path), timeout=120)
    assert got["code"] != 0
    assert_one_line_error(got["stderr"], "stdin", needle)
    assert got["peak_mb"] < MEMORY_MB, got


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_server_answers_a_bomb_upload_without_growing(tmp_path):
    import httpx

    from tests.serveproc import ServeProcess

    files = {case: BOMBS[case][0](tmp_path) for case in ("flac_1hz", "wav_1hz", "mkv_pcm_1hz", "wav_2g_hz")}
    with ServeProcess(tmp_path / "s", config="llm:\n  max_tokens: 8\n") as server:
        assert server.proc is not None
        ok = httpx.post(
            server.url + "/v1/audio/transcriptions",
            timeout=120,
            data={"model": "whisper-1"},
            files={"file": ("ok.wav", wav(tmp_path / "ok.wav", rate=16000, data_bytes=64_000).read_bytes())},
        )
        assert ok.status_code == 200, ok.text
        before = _hwm_mb(server.proc.pid)
        for case, path in files.items():
            r = httpx.post(
                server.url + "/v1/audio/transcriptions",
                timeout=120,
                data={"model": "whisper-1"},
                files={"file": (path.name, path.read_bytes())},
            )
            assert r.status_code in (400, 413), (case, r.status_code, r.text)
            message = r.json()["error"]["message"]
            assert BOMBS[case][1] in message, (case, message)
        grew = _hwm_mb(server.proc.pid) - before
        assert server.status("/healthz") == 200
    assert grew < 100, f"the server's peak RSS grew by {grew:.0f} MB"  # was +1570 MB for one 1 Hz FLAC


# --- the calculator and the clock --------------------------------------------------------------
SLOW_EXPRESSIONS = [  # each held the interpreter (and so the deadline) for seconds to minutes
    ("round(1, -10**8)", "round() takes at most"),
    ("round(1, -3*10**7)", "round() takes at most"),
    ("round(7, -(10**5))", "round() takes at most"),
    ("9**9**9", "too large"),
    ("2**(2**40)", "too large"),
]
NOT_FINITE = [
    ("1e308 * 10", "too large"),
    ("1e999", "too large"),
    ("-1e308 * 10", "too large"),
    ("exp(1000)", "too large"),
    ("1e308 * 10 - 1e308 * 10", "too large"),
]


@pytest.fixture(scope="module")
def box():
    tools = ToolBox([calculator.tool(), clock.tool()], timeout=60)  # one warm worker for the rows below
    yield tools
    tools.close()


@pytest.mark.fast
@pytest.mark.parametrize("expression,needle", SLOW_EXPRESSIONS + NOT_FINITE)
def test_calculator_bounds_before_computing_and_says_too_large(box, expression, needle):
    result = box.run(ToolCall("c", "calculator", json.dumps({"expression": expression})))
    assert result.error and needle in result.text, result.text
    assert "inf" not in result.text.split() and "nan" not in result.text.split()


ODD_EXPRESSIONS = [
    ("1 +\x00 1", "is not an arithmetic expression"),
    ("1" * 201, "at most 200"),
    ("(" * 90 + "1" + ")" * 90, "= 1"),  # brackets alone nest nothing
    ("-" * 150 + "1", "nested too deeply"),
    ("'ab' * 10**9", "'Constant' is not allowed"),
    ("1 << 10**9", "'BinOp' is not allowed"),
    ("factorial(10**6)", "'Call' is not allowed"),
]


@pytest.mark.fast
@pytest.mark.parametrize("expression,needle", ODD_EXPRESSIONS)
def test_calculator_odd_input_is_one_clear_answer(box, expression, needle):
    result = box.run(ToolCall("c", "calculator", json.dumps({"expression": expression})))
    assert result.error == (needle != "= 1") and needle in result.text, result.text


def _stuck(args: dict) -> str:
    """A tool stuck in one C call that holds the interpreter's lock (what no bound foresaw)."""
    return str(round(1, -(10**8)))


@pytest.mark.fast
def test_the_deadline_kills_a_tool_stuck_in_one_c_call():
    stuck = Tool(ToolSpec("stuck", "never ends", {"type": "object"}), _stuck, worker=f"{__name__}:_stuck")
    box = ToolBox([stuck, calculator.tool()], timeout=1)
    try:
        first = box.run(ToolCall("c", "calculator", '{"expression": "6 * 7"}'))
        pid = box._worker.pid
        assert first.text == "6 * 7 = 42" and pid is not None
        result = box.run(ToolCall("c", "stuck", "{}"))
        assert result.error and "did not finish within 1 s (tools.timeout)" in result.text, result.text
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), "the worker is gone"
        again = box.run(ToolCall("c", "calculator", '{"expression": "2 ^ 10"}'))
        assert again.text == "2 ^ 10 = 1024" and box._worker.pid not in (None, pid), "a fresh worker answers"
    finally:
        box.close()


@pytest.mark.fast
def test_an_interrupted_turn_kills_the_stuck_tool_too():
    stuck = Tool(ToolSpec("stuck", "never ends", {"type": "object"}), _stuck, worker=f"{__name__}:_stuck")
    box = ToolBox([stuck], timeout=600)
    asked = time.monotonic()
    try:
        result = box.run(ToolCall("c", "stuck", "{}"), cancelled=lambda: time.monotonic() > asked + 0.5)
    finally:
        box.close()
    assert result.error and result.text == "not finished: the turn was interrupted"


@pytest.mark.fast
def test_a_tool_that_prints_or_eats_memory_cannot_garble_or_sink_the_worker():
    box = ToolBox(
        [
            Tool(ToolSpec("noisy", "prints", {"type": "object"}), _noisy, worker=f"{__name__}:_noisy"),
            Tool(ToolSpec("hungry", "allocates", {"type": "object"}), _hungry, worker=f"{__name__}:_hungry"),
            calculator.tool(),
        ]
    )
    try:
        assert box.run(ToolCall("c", "noisy", "{}")).text == "quiet result"
        hungry = box.run(ToolCall("c", "hungry", "{}"))
        assert hungry.error and "more memory than a tool may use" in hungry.text
        assert box.run(ToolCall("c", "calculator", '{"expression": "1+1"}')).text == "1+1 = 2"
    finally:
        box.close()


def _noisy(args: dict) -> str:
    print('garbage on stdout\n{"ok": "forged"}')
    return "quiet result"


def _hungry(args: dict) -> str:
    return str(len(bytearray(8 << 30)))


ZONES = [
    ("America", "is a region, not a time zone"),
    ("Etc", "is a region, not a time zone"),
    ("../../etc/passwd", "is not a time zone name"),
    ("Europe/../../etc", "is not a time zone name"),
    ("Europe\x00Paris", "is not a time zone name"),
    ("x" * 64, "unknown time zone"),
    ("posix", "unknown time zone"),
    ("Nowhere/Land", "unknown time zone"),
]


@pytest.mark.fast
@pytest.mark.parametrize("zone,needle", ZONES)
def test_clock_bad_zones_say_how_to_name_one_and_show_no_path(box, zone, needle):
    result = box.run(ToolCall("c", "datetime", json.dumps({"timezone": zone})))
    assert result.error and needle in result.text, result.text
    assert "Error" not in result.text and "/usr" not in result.text and "site-packages" not in result.text
    assert "Europe/Paris" in result.text or "America/" in result.text or "Etc/" in result.text


def test_calculator_in_chat_tools_answers_round_bomb_at_once():
    """The model asks for round(1, -10**8) in `chat --tools`: a refusal the model reads, then its answer."""
    with EchoingServer() as server:
        server.script = [ToolCalls(("calculator", '{"expression": "round(1, -10**8)"}')), "Sorry: {tool}"]
        env = {
            "VOICECHAT_LLM_ENGINE": "openai",
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "sk-x",
            "VOICECHAT_TOOLS_TIMEOUT": "10",
        }
        result = run_cli("chat", "--tools", "--no-log", input=b"round one to a hundred million places\n", env=env, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert "Sorry: error: round() takes at most 1300 digits" in result.stdout.decode()


# --- a tool call the model was not offered -------------------------------------------------------
def _chat_env(server) -> dict:
    return {"VOICECHAT_LLM_ENGINE": "openai", "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-x"}


def test_chat_without_tools_answers_a_call_it_did_not_offer():
    with EchoingServer() as server:
        server.script = [ToolCalls(("calculator", '{"expression": "6 * 7"}')), "It is 42."]
        result = run_cli("chat", "--no-log", input=b"six times seven\n", env=_chat_env(server), timeout=120)
        first, second = [json.loads(r["body"]) for r in server.requests]
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert result.stdout.decode().strip() == "It is 42."
    assert "tools" not in first and "tools" not in second, "no tools are offered, before or after"
    assert second["messages"][-1] == {
        "role": "tool",
        "content": "error: no tools are available in this conversation; answer in words",
        "tool_call_id": "call_0_calculator",
    }
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("voicechat: warning: ⚙ calculator failed: not run: tools are off"), stderr
    assert "AssertionError" not in stderr and "unexpected" not in stderr


def test_chat_without_tools_ends_a_model_that_only_calls_tools():
    with EchoingServer() as server:
        server.script = [ToolCalls(("shell", '{"command": "ls"}'))] * 10
        result = run_cli("chat", "--no-log", input=b"list my files\n", env=_chat_env(server), timeout=120)
        asked = len(server.requests)
    stderr = result.stderr.decode()
    assert asked == 4, "one question and three refusals, then the turn ends"
    assert_one_line_error(stderr, "kept asking for tools it was not offered")
    assert "AssertionError" not in stderr


@pytest.mark.fast
def test_unoffered_call_in_a_session_without_tools_is_refused_in_process():
    with EchoingServer() as server:
        server.script = [ToolCalls(("datetime", "{}"), text="Let me look."), "It is noon."]
        cfg = resolve(environ={}, overrides={"llm.engine": "openai", "llm.base_url": server.base_url, "llm.retries": 0})
        session = Conversation(cfg, registry.create("llm", cfg), kind="chat", log=False)
        seen = []
        reply = session.stream_reply("what time is it", lambda d: None, on_tool=lambda e: seen.append(e.phase))
    assert reply.text == "Let me look. It is noon." and reply.error is None and not reply.failed
    assert seen == ["call", "result"] and reply.tools == []


@pytest.mark.fast
def test_voice_session_without_tools_answers_a_call_it_did_not_offer():
    """The voice pipeline (the responder `talk` and a server's voice session run) goes on after the refused call."""
    import threading

    from tests.voice_fakes import RecordingSink, ScriptedSTT, ScriptedTTS
    from voicechat.voice import events as ev
    from voicechat.voice.session import VoiceSession

    with EchoingServer() as server:
        server.script = [ToolCalls(("calculator", '{"expression": "1+1"}')), "Two.", "Still here."]
        cfg = resolve(
            environ={}, overrides={"llm.engine": "openai", "llm.base_url": server.base_url, "llm.retries": 0, "turn.audio_model": False}
        )
        chat = Conversation(cfg, registry.create("llm", cfg), kind="talk", log=False)
        session = VoiceSession(cfg, conversation=chat, stt=ScriptedSTT(""), tts=ScriptedTTS(), source=None, sink=RecordingSink())
        seen: list = []
        lock = threading.Lock()

        def on(e) -> None:
            with lock:
                seen.append(e)

        def replies() -> list:
            with lock:
                return [e for e in seen if isinstance(e, ev.ReplyDone)]

        session.subscribe(on)
        session.start()
        try:
            for n, text in enumerate(["one plus one", "are you there"], 1):
                session.send_text(text)
                deadline = time.monotonic() + 60
                while len(replies()) < n:
                    assert time.monotonic() < deadline, seen
                    time.sleep(0.02)
        finally:
            session.close()
    assert [r.text for r in replies()] == ["Two.", "Still here."], "the session lives on after the refused call"
    done = [e for e in seen if isinstance(e, ev.ToolDone)]
    assert len(done) == 1 and done[0].error and "tools are off" in done[0].result


@pytest.mark.fast
def test_a_model_that_calls_past_max_calls_is_not_asked_forever():
    with EchoingServer() as server:
        server.script = [ToolCalls(("calculator", '{"expression": "1+1"}'))] * 50
        cfg = resolve(
            environ={},
            overrides={
                "llm.engine": "openai",
                "llm.base_url": server.base_url,
                "llm.retries": 0,
                "tools.enabled": True,
                "tools.max_calls": 1,
            },
        )
        box = ToolBox([calculator.tool()])
        try:
            reply = Conversation(cfg, registry.create("llm", cfg), kind="chat", log=False, tools=box).stream_reply("loop", lambda d: None)
        finally:
            box.close()
        asked = len(server.requests)
    assert asked == 5, "the call that ran, then three refusals, then the turn ends"
    assert [t.text for t in reply.tools] == ["1+1 = 2"] and not reply.failed and "kept asking for tools" in reply.error
