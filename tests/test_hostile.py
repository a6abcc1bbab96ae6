"""Hostile input across every command: nothing lost, nothing unbounded, one clear line.

One table of cases, each a command line with what it is given (files, stdin, outputs,
config, environment, devices, servers, databases), and one set of properties checked
for all of them:

- the exit code (non-zero for a refusal; zero when the work goes on with a warning)
- a refusal is exactly one line on stderr, ``voicechat: error: ...``, naming the thing
- no traceback, never the word "unexpected"
- files that were there before are unchanged (unless the case writes them on purpose)
- no part files or probes left anywhere under the test's directory
- for the cases that used to grow without bound, peak memory below a bound
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.helpers import VOICECHAT, speak, write_wav
from tests.hostile import (
    EchoingServer,
    corrupt_pages,
    digest,
    history_with_turns,
    leftovers,
    run_measured,
    write_binary_file,
    write_text_file,
)
from voicechat import paths
from voicechat.cli import app

runner = CliRunner()
KEY = "sk-hostile-test-abcdefghijklmnop"


@dataclass
class Given:
    """What a case gives the command."""

    args: list[str]
    input: bytes | None = None
    env: dict[str, str] = field(default_factory=dict)
    keep: list[Path] = field(default_factory=list)  # files that must come out unchanged
    absent: list[Path] = field(default_factory=list)  # files that must not exist afterwards (nothing partial)
    cleanup: Callable[[], None] | None = None  # undoes what make set up (a mounted file system)


@dataclass
class Case:
    id: str
    make: Callable[[Path, EchoingServer], Given]
    code: int | None = 1  # None: any non-zero
    says: str = ""  # a part of the one error line (or of the warning, for ok cases)
    ok: bool = False  # the command completes (exit 0) and says `says` as a warning or note
    server: bool = False
    xfail: str | None = None
    fast: bool = True  # needs no model, sound card or server process (CI's first tier)

    def __str__(self) -> str:
        return self.id


def f(tmp: Path, name: str, data: bytes | str = b"") -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def chat_env(server, **extra: str) -> dict[str, str]:
    return {
        "VOICECHAT_LLM_ENGINE": "openai",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": KEY,
        "VOICECHAT_LLM_RETRIES": "0",
        **extra,
    }


def with_history(tmp: Path, corrupt: bool = False, garbage: bool = False) -> Path:
    db = paths.history_db()
    if garbage:
        db.parent.mkdir(parents=True, exist_ok=True)
        db.write_bytes(b"this is not a database " * 200)
        return db
    history_with_turns(db, sessions=20, turns=3)
    if corrupt:
        corrupt_pages(db)
    return db


def mode(server, m: str, reply: str | None = None):
    server.mode = m
    if reply is not None:
        server.reply = reply
    return server


def closed_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


CASES = [
    # -- configuration and environment ------------------------------------------------------
    Case(
        "env-beam-size-negative",
        lambda t, s: Given(["config", "show"], env={"VOICECHAT_STT_BEAM_SIZE": "-5"}),
        2,
        "VOICECHAT_STT_BEAM_SIZE",
    ),
    Case(
        "env-temperature-nan",
        lambda t, s: Given(["config", "show"], env={"VOICECHAT_LLM_TEMPERATURE": "nan"}),
        2,
        "VOICECHAT_LLM_TEMPERATURE",
    ),
    Case("env-timeout-inf", lambda t, s: Given(["config", "show"], env={"VOICECHAT_LLM_TIMEOUT": "inf"}), 2, "llm.timeout"),
    Case("env-frame-ms-25", lambda t, s: Given(["config", "show"], env={"VOICECHAT_LISTEN_FRAME_MS": "25"}), 2, "10, 20, 30"),
    Case("env-speed-zero", lambda t, s: Given(["config", "show"], env={"VOICECHAT_TTS_SPEED": "0"}), 2, "tts.speed"),
    Case("env-max-tokens-word", lambda t, s: Given(["config", "show"], env={"VOICECHAT_LLM_MAX_TOKENS": "lots"}), 2, "an integer"),
    Case(
        "env-context-tokens-zero",
        lambda t, s: Given(["config", "show"], env={"VOICECHAT_MEMORY_MAX_CONTEXT_TOKENS": "0"}),
        2,
        "memory.max_context_tokens",
    ),
    Case("env-latency-choice", lambda t, s: Given(["config", "show"], env={"VOICECHAT_AUDIO_LATENCY": "medium"}), 2, "low, high"),
    Case(
        "file-context-size-negative",
        lambda t, s: Given(["--config", str(f(t, "c.yaml", "llm:\n  context_size: -1\n")), "config", "show"]),
        2,
        "c.yaml",
    ),
    Case(
        "file-pitch-out-of-range",
        lambda t, s: Given(["--config", str(f(t, "c.yaml", "tts:\n  pitch: 300\n")), "config", "show"]),
        2,
        "tts.pitch",
    ),
    Case("file-broken-yaml", lambda t, s: Given(["--config", str(f(t, "c.yaml", "llm: [\n")), "config", "show"]), 2, "broken YAML"),
    Case("file-is-directory", lambda t, s: Given(["--config", str(t), "config", "show"]), 2, "cannot read config file"),
    Case("file-missing", lambda t, s: Given(["--config", str(t / "nope.yaml"), "config", "show"]), 2, "not found"),
    Case("file-binary", lambda t, s: Given(["--config", str(f(t, "c.yaml", b"\xff\xfe\x00\x01")), "config", "show"]), 2, "c.yaml"),
    Case(
        "user-file-unknown-key",
        lambda t, s: Given(["config", "show"], keep=[f(paths.config_dir(), "config.yaml", "llm:\n  temprature: 1\n")]),
        2,
        "unknown key",
    ),
    # -- tokens: files, stdin, models -------------------------------------------------------
    Case("tokens-missing-path", lambda t, s: Given(["tokens", str(t / "missing.txt")]), 1, "no such file"),
    Case("tokens-missing-bare-name", lambda t, s: Given(["tokens", "missing.txt"]), 1, "missing.txt"),
    Case("tokens-binary-file", lambda t, s: Given(["tokens", str(f(t, "b.bin", os.urandom(5000) + b"\0"))]), 1, "binary"),
    Case("tokens-binary-stdin", lambda t, s: Given(["tokens", "-"], input=b"\x00\x01\x02" * 1000), 1, "binary"),
    Case("tokens-directory", lambda t, s: Given(["tokens", str(t)]), 1, "is a directory"),
    Case("tokens-stdin-twice", lambda t, s: Given(["tokens", "-", "-"], input=b"x"), 1, "only once"),
    Case("tokens-unknown-encoding", lambda t, s: Given(["tokens", "x", "--encoding", "nope_base"]), 1, "encoding"),
    Case("tokens-not-a-gguf", lambda t, s: Given(["tokens", "x", "--model", str(f(t, "m.gguf", "hello"))]), 1, "not a GGUF"),
    Case("tokens-missing-gguf", lambda t, s: Given(["tokens", "x", "--model", str(t / "none.gguf")]), 1, "not found"),
    Case(
        "tokens-gguf-directory", lambda t, s: Given(["tokens", "x", "--model", str((t / "d.gguf").mkdir() or t / "d.gguf")]), 1, "directory"
    ),
    Case(
        "tokens-invalid-utf8-counted-and-said",
        lambda t, s: Given(["tokens", str(f(t, "l.txt", b"caf\xe9 ok\n"))]),
        0,
        "invalid UTF-8",
        ok=True,
    ),
    Case("tokens-session-unknown", lambda t, s: Given(["tokens", "--session", "42"]), 1, "no session 42"),
    Case("tokens-session-corrupt-db", lambda t, s: Given(["tokens", "--session", "1"], keep=[with_history(t, corrupt=True)]), 1, "damaged"),
    # -- history: damaged, garbage, outputs -------------------------------------------------
    Case("history-list-corrupt-page", lambda t, s: Given(["history", "list"], keep=[with_history(t, corrupt=True)]), 1, "move it aside"),
    Case(
        "history-show-corrupt-page",
        lambda t, s: Given(["history", "show", "2"], keep=[with_history(t, corrupt=True)]),
        1,
        "history.sqlite3",
    ),
    Case(
        "history-list-garbage", lambda t, s: Given(["history", "list"], keep=[with_history(t, garbage=True)]), 1, "not a history database"
    ),
    Case(
        "history-export-to-directory",
        lambda t, s: Given(["history", "export", "1", "-o", str(t)], keep=[with_history(t)]),
        1,
        "is a directory",
    ),
    Case(
        "history-export-missing-dir",
        lambda t, s: Given(["history", "export", "1", "-o", str(t / "no" / "x.json")], keep=[with_history(t)]),
        1,
        "does not exist",
    ),
    Case(
        "history-export-to-proc", lambda t, s: Given(["history", "export", "1", "-o", "/proc/x.json"], keep=[with_history(t)]), 1, "/proc"
    ),
    Case(
        "history-export-to-a-device",
        lambda t, s: Given(["history", "export", "1", "-o", "/dev/full"], keep=[with_history(t)]),
        1,
        "not a regular file",
    ),
    Case("history-path-is-directory", lambda t, s: Given(["history", "list"], env={"VOICECHAT_HISTORY_PATH": str(t)}), 1, "is a directory"),
    Case(
        "history-path-is-device",
        lambda t, s: Given(["history", "list"], env={"VOICECHAT_HISTORY_PATH": "/dev/null"}),
        1,
        "not a regular file",
    ),
    Case("history-export-bad-format", lambda t, s: Given(["history", "export", "1", "-f", "xml"]), 1, "csv, json or md"),
    Case("history-show-unknown", lambda t, s: Given(["history", "show", "999"], keep=[with_history(t)]), 1, "no session 999"),
    Case("history-delete-without-yes", lambda t, s: Given(["history", "delete", "1"], input=b"", keep=[with_history(t)]), 1, "--yes"),
    Case("history-newer-schema", lambda t, s: Given(["history", "list"], keep=[_newer_schema()]), 1, "newer voicechat"),
    Case(
        "history-export-to-full-disk",
        lambda t, s: on_full_disk(
            t,
            lambda d: Given(
                ["history", "export", "1", "-f", "csv", "-o", str(d / "out.csv")], keep=[with_history(t)], absent=[d / "out.csv"]
            ),
        ),
        1,
        "out.csv: no space left on the disk holding it",
    ),
    Case(
        "history-export-full-disk-keeps-old-file",
        lambda t, s: on_full_disk(
            t, lambda d: Given(["history", "export", "1", "-o", str(f(d, "old.json", "{}"))], keep=[with_history(t), d / "old.json"])
        ),
        1,
        "old.json: no space left",
    ),
    # -- say: outputs checked before any work -----------------------------------------------
    Case(
        "say-output-is-directory",
        lambda t, s: Given(["say", "hi", "-o", str((t / "d.wav").mkdir() or t / "d.wav")]),
        1,
        "d.wav: is a directory",
    ),
    Case("say-output-in-proc", lambda t, s: Given(["say", "hi", "-o", "/proc/x.wav"]), 1, "/proc"),
    Case("say-output-missing-dir", lambda t, s: Given(["say", "hi", "-o", str(t / "no" / "x.wav")]), 1, "does not exist"),
    Case("say-output-parent-is-file", lambda t, s: Given(["say", "hi", "-o", str(f(t, "file") / "x.wav")]), 1, "not a directory"),
    Case("say-output-mp3", lambda t, s: Given(["say", "hi", "-o", str(t / "x.mp3")]), 1, "unsupported audio extension"),
    Case("say-empty-text", lambda t, s: Given(["say", ""]), 1, "empty"),
    Case("say-whitespace-stdin", lambda t, s: Given(["say", "-"], input=b"   \n\t\n"), 1, "empty"),
    Case(
        "say-invalid-utf8-stdin",
        lambda t, s: Given(["say", "--engine", "espeak", "-o", str(t / "u.wav"), "-"], input=b"Hello \xff there. Second one.\n"),
        0,
        "not valid UTF-8",
        ok=True,
    ),
    Case("say-unknown-engine", lambda t, s: Given(["say", "hi", "--engine", "nope"]), 1, "nope"),
    Case("say-missing-voice", lambda t, s: Given(["say", "hi", "--voice", str(t / "v.onnx"), "-o", str(t / "o.wav")]), 1, "v.onnx"),
    Case(
        "say-keeps-existing-output-on-failure",
        lambda t, s: Given(
            ["say", "hi", "--voice", str(t / "v.onnx"), "-o", str(f(t, "keep.wav", b"RIFF-old-take"))], keep=[t / "keep.wav"]
        ),
        1,
        "v.onnx",
    ),
    Case(
        "say-wav-to-full-disk",
        lambda t, s: on_full_disk(
            t, lambda d: Given(["say", "--engine", "espeak", "A few words to write.", "-o", str(d / "x.wav")], absent=[d / "x.wav"])
        ),
        1,
        "x.wav: no space left on the disk holding it",
    ),
    Case(
        "say-flac-to-full-disk",
        lambda t, s: on_full_disk(
            t, lambda d: Given(["say", "--engine", "espeak", "A few words to write.", "-o", str(d / "x.flac")], absent=[d / "x.flac"])
        ),
        1,
        "x.flac: no space left on the disk holding it",
    ),
    # -- transcribe: outputs (the decode path is tested with the streaming decoder) ---------
    Case(
        "transcribe-output-to-full-disk",
        lambda t, s: on_full_disk(t, lambda d: Given(["transcribe", str(_wav(t)), "-f", "json", "-o", str(d)], absent=[d / "in.json"])),
        1,
        "in.json: no space left on the disk holding it",
        fast=False,
    ),  # (it transcribes before it writes)
    Case("transcribe-output-in-proc", lambda t, s: Given(["transcribe", str(_wav(t)), "-o", "/proc"]), 1, "/proc"),
    Case("transcribe-output-is-file", lambda t, s: Given(["transcribe", str(_wav(t)), "-o", str(f(t, "out"))]), 1, "not a directory"),
    Case("transcribe-output-missing", lambda t, s: Given(["transcribe", str(_wav(t)), "-o", str(t / "none")]), 1, "does not exist"),
    Case("transcribe-stdin-twice", lambda t, s: Given(["transcribe", "-", "-"], input=b"x"), 1, "only once"),
    Case("transcribe-bad-format", lambda t, s: Given(["transcribe", str(_wav(t)), "-f", "docx"]), None, "docx"),
    # -- chat: stdin, servers, databases ----------------------------------------------------
    Case(
        "chat-invalid-utf8-line",
        lambda t, s: Given(["chat"], input=b"hello\n\xff\xfe bad\nthird\n", env=chat_env(s)),
        0,
        "not valid UTF-8",
        ok=True,
        server=True,
    ),
    Case(
        "chat-empty-reply-said",
        lambda t, s: Given(["chat"], input=b"word " * 2000 + b"\n", env=chat_env(mode(s, "ok", ""))),
        0,
        "empty reply",
        ok=True,
        server=True,
    ),
    Case(
        "chat-corrupt-history-keeps-talking",
        lambda t, s: Given(["chat"], input=b"one\ntwo\n", env=chat_env(s), keep=[with_history(t, corrupt=True)]),
        0,
        "history log is unavailable",
        ok=True,
        server=True,
    ),
    Case(
        "chat-garbage-history-keeps-talking",
        lambda t, s: Given(["chat"], input=b"one\ntwo\n", env=chat_env(s), keep=[with_history(t, garbage=True)]),
        0,
        "history log is unavailable",
        ok=True,
        server=True,
    ),
    Case(
        "chat-history-path-is-directory",
        lambda t, s: Given(["chat"], input=b"one\n", env=chat_env(s, VOICECHAT_HISTORY_PATH=str(t))),
        0,
        "history log is unavailable",
        ok=True,
        server=True,
    ),
    Case(
        "chat-resume-unknown",
        lambda t, s: Given(["chat", "--resume", "77"], input=b"x\n", env=chat_env(s)),
        1,
        "no session 77",
        server=True,
    ),
    Case(
        "chat-resume-corrupt",
        lambda t, s: Given(["chat", "--resume", "2"], input=b"x\n", env=chat_env(s), keep=[with_history(t, corrupt=True)]),
        1,
        "damaged",
        server=True,
    ),
    Case(
        "chat-server-401", lambda t, s: Given(["chat"], input=b"hi\n", env=chat_env(mode(s, "401"))), 1, "rejected the API key", server=True
    ),
    Case("chat-server-404", lambda t, s: Given(["chat"], input=b"hi\n", env=chat_env(mode(s, "404"))), 1, "404", server=True),
    Case("chat-server-500", lambda t, s: Given(["chat"], input=b"hi\n", env=chat_env(mode(s, "500"))), 1, "500", server=True),
    Case(
        "chat-server-cut-midway",
        lambda t, s: Given(["chat", "--no-log"], input=b"hi\n", env=chat_env(mode(s, "cut"))),
        1,
        "partial reply was kept",
        server=True,
    ),
    Case(
        "chat-server-refused",
        lambda t, s: Given(["chat"], input=b"hi\n", env={**chat_env(s), "OPENAI_BASE_URL": closed_port()}),
        1,
        "cannot connect",
        server=True,
    ),
    Case("chat-no-key-for-openai", lambda t, s: Given(["chat", "--llm", "openai"], input=b"hi\n"), 1, "OPENAI_API_KEY"),
    Case(
        "chat-not-a-gguf", lambda t, s: Given(["chat", "--model", str(f(t, "m.gguf", "GGUX" + "0" * 100))], input=b"hi\n"), 1, "not a GGUF"
    ),
    Case("chat-truncated-gguf", lambda t, s: Given(["chat", "--model", str(f(t, "m.gguf", "GGU"))], input=b"hi\n"), 1, "m.gguf"),
    Case(
        "chat-gguf-directory",
        lambda t, s: Given(["chat", "--model", str((t / "d.gguf").mkdir() or t / "d.gguf")], input=b"hi\n"),
        1,
        "directory",
    ),
    Case("chat-unknown-engine", lambda t, s: Given(["chat", "--llm", "nope"], input=b"hi\n"), None, "nope"),
    # -- remote speech engines --------------------------------------------------------------
    Case(
        "say-openai-401",
        lambda t, s: Given(["say", "hi", "--engine", "openai", "-o", str(t / "o.wav")], env=chat_env(mode(s, "401"))),
        1,
        "rejected the API key",
        server=True,
    ),
    Case(
        "say-openai-bad-voice",
        lambda t, s: Given(["say", "hi", "--engine", "openai", "--voice", "zork", "-o", str(t / "o.wav")], env=chat_env(s)),
        1,
        "zork",
        server=True,
    ),
    Case(
        "transcribe-openai-500",
        lambda t, s: Given(["transcribe", str(_wav(t)), "--engine", "openai"], env=chat_env(mode(s, "500"))),
        1,
        "500",
        server=True,
    ),
]


def on_full_disk(tmp: Path, build: Callable[[Path], Given]) -> Given:
    """A case whose outputs go to a real tmpfs that is full (mounted now, unmounted by run_case)."""
    import contextlib

    from tests import fullfs

    stack = contextlib.ExitStack()
    disk = stack.enter_context(fullfs.tmpfs(tmp / "full", "1m"))
    try:
        given = build(disk)
        fullfs.fill(disk)
    except BaseException:
        stack.close()
        raise
    given.cleanup = stack.close
    return given


def _wav(tmp: Path) -> Path:
    path = tmp / "in.wav"
    if not path.exists():
        write_wav(path, (0.2 * np.sin(np.arange(16000) * 0.3)).astype(np.float32))  # a tone: not silence
    return path


def _newer_schema() -> Path:
    import sqlite3

    db = paths.history_db()
    db.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(db).execute("PRAGMA user_version = 99").connection.commit()
    return db


def check(case: Case, code: int, stdout: str, stderr: str, tmp: Path, before: dict[Path, str]) -> None:
    assert "Traceback" not in stderr, stderr
    assert "unexpected" not in stderr.lower(), stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    if case.ok:
        assert code == 0, stderr
        assert any(case.says.lower() in line.lower() for line in lines), stderr
        assert not [line for line in lines if line.startswith("voicechat: error:")], stderr
    else:
        assert code != 0 if case.code is None else code == case.code, (code, stderr)
        errors = [
            line
            for line in lines
            if line.startswith("voicechat: error:") or line.startswith("Error") or line.startswith("Usage:") or line.startswith("Try ")
        ]
        if any(line.startswith("Usage:") for line in lines):  # typer's own usage errors: its block, named
            assert case.says.lower() in stderr.lower(), stderr
        else:
            assert len(lines) == 1 and lines[0].startswith("voicechat: error:"), stderr
            assert case.says.lower() in lines[0].lower(), stderr
        assert errors
    for path, sha in before.items():
        assert digest(path) == sha, f"{path} changed"
    for device in ("/dev/full", "/dev/null"):
        assert Path(device).is_char_device(), f"{device} was replaced"
    for root in (tmp, paths.data_dir().parent):
        assert leftovers(root) == [], leftovers(root)


def run_case(case: Case, tmp: Path, server) -> None:
    given = case.make(tmp, server)
    try:
        before = {p: digest(p) for p in given.keep}
        result = runner.invoke(app, given.args, input=given.input, env=given.env)
        check(case, result.exit_code, result.stdout, result.stderr, tmp, before)
        for path in given.absent:
            assert not path.exists(), f"{path} was left behind"
    finally:
        if given.cleanup is not None:
            given.cleanup()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.fast] if c.fast else []) for c in CASES])
def test_hostile_case(case, tmp_path):
    if case.server:
        with EchoingServer() as server:
            run_case(case, tmp_path, server)
    else:
        run_case(case, tmp_path, None)


def test_the_table_reaches_every_command_that_takes_input():
    """devices and engines take no input; talk's cases live with its redesign (and below, kill -9)."""
    covered = {c.id.split("-")[0] for c in CASES}
    takes_input = {"chat", "say", "transcribe", "tokens", "history"}
    assert takes_input <= covered and {"env", "file"} <= covered
    assert len({c.id for c in CASES}) == len(CASES)


# -- devices: real PortAudio on the virtual sound card, so each case is its own process ---------
DEVICE_CASES = [
    Case(
        "device-output-name-unknown",
        lambda t, s: Given(["say", "hi", "--engine", "espeak", "--output-device", "no-such-card"]),
        1,
        "no output device matches",
    ),
    Case("device-output-index-unknown", lambda t, s: Given(["say", "hi", "--engine", "espeak", "--output-device", "99"]), 1, "index 99"),
    Case("device-output-ambiguous", lambda t, s: Given(["say", "hi", "--engine", "espeak", "--output-device", "vc_"]), 1, "ambiguous"),
    Case(
        "device-none-at-all",
        lambda t, s: Given(["say", "hi", "--engine", "espeak"], env={"ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"}),
        1,
        "no output sound device",
    ),
    Case(
        "device-env-latency",
        lambda t, s: Given(["say", "hi", "--engine", "espeak"], env={"VOICECHAT_AUDIO_LATENCY": "0.1"}),
        2,
        "low, high",
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in DEVICE_CASES])
def test_hostile_device_case(case, tmp_path, card):
    from tests.helpers import run_cli

    given = case.make(tmp_path, None)
    result = run_cli(*given.args, env={**card.env, **given.env})
    check(case, result.returncode, result.stdout.decode(), result.stderr.decode(), tmp_path, {})


# -- what a recovered conversation looks like ----------------------------------------------------
def test_corrupt_history_turns_are_recoverable(tmp_path):
    db = history_with_turns(paths.history_db(), sessions=20, turns=3)
    corrupt_pages(db)
    with EchoingServer() as server:
        result = runner.invoke(app, ["chat"], input=b"first question\nsecond question\n", env=chat_env(server))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count(server.reply) == 2  # both replies, not just the first
    warnings = [line for line in result.stderr.splitlines() if "history log is unavailable" in line]
    assert len(warnings) == 1 and "damaged" in warnings[0]
    recovered = list((paths.data_dir() / "recovered").glob("chat-*.jsonl"))
    assert len(recovered) == 1 and str(recovered[0]) in warnings[0]
    turns = [json.loads(line) for line in recovered[0].read_text().splitlines()]
    assert [t["user_text"] for t in turns] == ["first question", "second question"]
    assert all(t["assistant_text"] == server.reply for t in turns)
    assert oct(recovered[0].stat().st_mode & 0o777) == "0o600"


def test_read_only_history_still_reads_and_chat_goes_on(tmp_path, monkeypatch):
    """A history the user may not write: list and export read it; chat keeps the turns elsewhere.

    Root may write any file, so when the tests run as root the permission check is told
    the file is read-only; SQLite itself then opens it read-only, for real."""
    db = history_with_turns(paths.history_db(), sessions=3, turns=2)
    before = digest(db)
    os.chmod(db, 0o400)
    if os.geteuid() == 0:
        real_access = os.access

        def access(path, mode, *a, **k):
            if Path(path) in (db, db.parent) and mode & os.W_OK:
                return False
            return real_access(path, mode, *a, **k)

        monkeypatch.setattr(os, "access", access)
    listed = runner.invoke(app, ["history", "list", "--json"])
    assert listed.exit_code == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 3
    exported = runner.invoke(app, ["history", "export", "2", "-f", "md"])
    assert exported.exit_code == 0 and "**You:**" in exported.stdout
    with EchoingServer() as server:
        result = runner.invoke(app, ["chat"], input=b"hello\n", env=chat_env(server))
    assert result.exit_code == 0, result.stderr
    assert server.reply in result.stdout and "read-only" in result.stderr
    assert digest(db) == before


# -- the cases that used to grow without bound: memory below a bound -----------------------------
MEMORY_BOUND_MB = 260  # tiktoken's two encodings and Python: ~110 MB; was 555 MB (text) and 1.4 GB (binary)


TOKENS_CASES = ("text-file", "text-stdin", "binary-file", "binary-stdin")


@pytest.fixture(scope="module")
def tokens_runs(tmp_path_factory) -> dict:
    """`voicechat tokens` on 50 MB of text and of binary, named and piped: the four runs two at a time (each
    is one process on one core, and its peak is its own: RUSAGE_CHILDREN of its wrapper). what -> run_measured."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.helpers import isolate

    base = tmp_path_factory.mktemp("hostile-big")
    text, binary = write_text_file(base / "50mb.txt", 50), write_binary_file(base / "50mb.bin", 50)

    def run(what: str) -> dict:
        source = text if what.startswith("text") else binary
        args = [VOICECHAT, "tokens"] + ([str(source)] if what.endswith("file") else ["-"])
        return run_measured(args, stdin=source if what.endswith("stdin") else None)

    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(max_workers=2) as pool:
        isolate(mp, tmp_path_factory.mktemp("tokens-home"))  # (module fixtures run before the per-test isolation)
        return dict(zip(TOKENS_CASES, pool.map(run, TOKENS_CASES), strict=True))


@pytest.mark.parametrize("what", TOKENS_CASES)
def test_tokens_memory_is_bounded(tokens_runs, what):
    out = tokens_runs[what]
    assert out["peak_mb"] < MEMORY_BOUND_MB, out
    assert "Traceback" not in out["stderr"] and "unexpected" not in out["stderr"]
    if what.startswith("text"):
        assert out["code"] == 0 and int(out["stdout"]) > 10_000_000, out
    else:
        assert out["code"] == 1 and "binary" in out["stderr"] and len(out["stderr"].splitlines()) == 1, out


def test_chat_one_endless_line_is_refused_in_bounded_memory(tmp_path):
    """100 MB with no newline between two real messages: both real ones are answered."""
    piped = tmp_path / "line.txt"
    with open(piped, "wb") as f:
        f.write(b"hello\n")
        for _ in range(100):
            f.write(b"word " * 200_000)
        f.write(b"\nthird\n")
    with EchoingServer() as server:
        out = run_measured([VOICECHAT, "chat", "--no-log"], stdin=piped, env=chat_env(server))
    assert out["peak_mb"] < MEMORY_BOUND_MB, out
    assert out["code"] == 1 and out["stdout"].count(server.reply) == 2, out
    lines = out["stderr"].strip().splitlines()
    assert len(lines) == 1 and "stdin line 2 is longer than" in lines[0], out


def test_transcribe_refuses_endless_stdin_in_bounded_memory(tmp_path):
    """`yes "not audio" | voicechat transcribe -`, capped at 300 MB so that today's failure stays cheap."""
    wrapper = (
        "import resource, subprocess, sys, json\n"
        f"p = subprocess.run('yes not audio | head -c 300000000 | {VOICECHAT} transcribe -', shell=True,"
        " capture_output=True, timeout=120)\n"
        "print(json.dumps({'code': p.returncode, 'stderr': p.stderr.decode(errors='replace'),"
        " 'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
    )
    import sys

    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, timeout=180)
    doc = json.loads(out.stdout)
    assert doc["code"] != 0 and doc["peak_mb"] < 400, doc
    assert "Traceback" not in doc["stderr"] and "unexpected" not in doc["stderr"]


# -- data loss: same names, signals, hard kills ---------------------------------------------------
def test_transcribe_same_name_in_two_folders_writes_both(tmp_path, sentence_wav, silence_wav):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(sentence_wav, tmp_path / "a" / "speech.wav")
    shutil.copy(silence_wav, tmp_path / "b" / "speech.wav")
    (tmp_path / "out").mkdir()
    result = runner.invoke(
        app, ["transcribe", str(tmp_path / "a" / "speech.wav"), str(tmp_path / "b" / "speech.wav"), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.stderr
    first, second = (tmp_path / "out" / "speech.txt").read_text(), (tmp_path / "out" / "speech-2.txt").read_text()
    assert "fox" in first.lower() and second.strip() == ""
    assert "speech-2" in result.stderr and "Traceback" not in result.stderr
    assert leftovers(tmp_path) == []


def _wait_for(predicate, proc: subprocess.Popen, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {what}: {proc.stderr.read().decode(errors='replace')}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_say_to_file_interrupted_leaves_nothing_partial(tmp_path, sig):
    out = tmp_path / "long.wav"
    proc = subprocess.Popen(
        [VOICECHAT, "say", "--engine", "espeak", "-o", str(out), "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    proc.stdin.write(b"This sentence goes on and on for a while. " * 30)  # stdin stays open: more may come
    proc.stdin.flush()
    _wait_for(lambda: any(".part" in p.name for p in tmp_path.iterdir()), proc, "the part file")
    proc.send_signal(sig)
    proc.stdin.close()
    code = proc.wait(60)
    err = proc.stderr.read().decode()
    assert code == (143 if sig == signal.SIGTERM else 130), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "was not written" in lines[0] and str(out) in lines[0], err
    assert not out.exists() and leftovers(tmp_path) == []


def test_writer_leaves_a_playable_wav_at_every_block(tmp_path):
    """What a hard kill would find: the long-running writer's file, read while it is still open."""
    from voicechat.audiofile import AudioFileWriter
    from voicechat.engines.base import AudioChunk

    out = tmp_path / "replies.wav"
    writer = AudioFileWriter(out)
    writer.reset()  # talk: a reply begins
    tone = (0.3 * np.sin(np.arange(22050) / 10)).astype(np.float32)
    for n in range(1, 4):
        writer.play(AudioChunk(tone, 22050, "x"))
        audio, rate = sf.read(str(out))  # the file under its final name is whole after each block
        assert rate == 22050 and len(audio) == n * 22050
    writer.__exit__(None, None, None)
    assert sf.info(str(out)).frames == 3 * 22050 and leftovers(tmp_path) == []


def test_talk_output_survives_kill_9_after_the_first_reply(tmp_path, hear):
    """`talk --input q.wav --output replies.wav`, killed with SIGKILL after its first reply."""
    question = speak("What is the capital of France?")
    conv = write_wav(tmp_path / "q.wav", np.concatenate([np.zeros(8000, np.float32), question, np.zeros(16000 * 60, np.float32)]))
    out = tmp_path / "replies.wav"
    env = {**os.environ, "VOICECHAT_LLM_MAX_TOKENS": "24", "VOICECHAT_LLM_TEMPERATURE": "0", "VOICECHAT_TTS_ENGINE": "espeak"}
    proc = subprocess.Popen(
        [VOICECHAT, "talk", "--input", str(conv), "--output", str(out), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    events: list[dict] = []
    try:

        def replied_and_listening() -> bool:
            line = proc.stdout.readline()
            if line:
                events.append(json.loads(line))
            seen_reply = any(e["type"] == "reply" for e in events)
            return seen_reply and events[-1] == {"type": "status", "state": "listening"}

        _wait_for(replied_and_listening, proc, "the first reply")
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    reply = next(e["text"] for e in events if e["type"] == "reply")
    audio, rate = sf.read(str(out))
    assert len(audio) > rate // 2, "the completed reply is in the file"
    heard = hear(audio, rate).lower()
    assert any(w in heard for w in reply.lower().split() if len(w) > 3), (reply, heard)
    assert leftovers(tmp_path) == []


# -- issue 21: exports whose text comes alive, full disks, read-only homes -----------------------
HOSTILE_TEXTS = [
    "=cmd|' /C calc'!A0",
    "+1+2",
    "-2+3",
    "@SUM(1,2)",
    "\t=1+1",
    "\r=1+1",
    ' =HYPERLINK("http://evil.example","x")',
    "\uff1d1+1",
    "\uff0b1",
    "\uff20SUM(1)",
    'plain words, with a comma and "quotes"',
    "<img src=x onerror=alert(1)>",
    "<script>alert(document.cookie)</script>",
    "[click me](javascript:alert(1))",
    "![pixel](http://evil.example/track.png)",
    "<javascript:alert(1)>",
    "**bold** _it_ `code` # not a heading",
    "line one\n# heading\n- item\n1. first\n> quote\n===",
    "[bold]markup[/] and [/] alone",
    "a & b < c > d",
]


def _history_of(texts: list[str]) -> tuple[Path, int]:
    from voicechat.conversation.history import History, Turn

    db = paths.history_db()
    db.parent.mkdir(parents=True, exist_ok=True)
    with History(db) as h:
        sid = h.new_session("chat")
        for i, text in enumerate(texts):
            h.add_turn(
                sid,
                Turn(
                    text,
                    texts[-1 - i],
                    llm_model=texts[i % 3],
                    tools=[{"name": "calc`x", "arguments": {"q": text}, "result": text}] if i % 4 == 0 else [],
                ),
            )
    return db, sid


def test_csv_export_runs_no_formula_and_reads_back_faithfully(tmp_path):
    """Every text cell that a spreadsheet would run starts with a quote; the csv module reads the rest back as written."""
    import csv
    import io

    _, sid = _history_of(HOSTILE_TEXTS)
    out = tmp_path / "s.csv"
    result = runner.invoke(app, ["history", "export", str(sid), "-f", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    written = out.read_bytes().decode("utf-8")
    printed = runner.invoke(app, ["history", "export", str(sid), "-f", "csv"]).stdout
    assert printed.replace("\r\n", "\n") == written.replace("\r\n", "\n")  # the runner folds CRLF; the file has it
    rows = list(csv.DictReader(io.StringIO(written, newline="")))
    assert len(rows) == len(HOSTILE_TEXTS)
    formula_start = tuple("=+-@\t\r\uff1d\uff0b\uff20")
    for i, row in enumerate(rows):
        for field_name, want in (
            ("user_text", HOSTILE_TEXTS[i]),
            ("assistant_text", HOSTILE_TEXTS[-1 - i]),
            ("llm_model", HOSTILE_TEXTS[i % 3]),
        ):
            cell = row[field_name]
            assert not cell.lstrip().startswith(formula_start), (field_name, cell)
            assert cell == ("'" + want if want.lstrip().startswith(formula_start) else want), (field_name, cell)
        assert row["prompt_tokens"] == "" and row["interrupted"] == "False"


def test_markdown_export_shows_html_and_links_as_written(tmp_path):
    """Rendered by a CommonMark renderer, the export has no element, link or image from the texts: each shows as written."""
    import html
    import re

    from markdown_it import MarkdownIt

    _, sid = _history_of(HOSTILE_TEXTS)
    result = runner.invoke(app, ["history", "export", str(sid), "-f", "md"])
    assert result.exit_code == 0, result.stderr
    rendered = MarkdownIt("commonmark", {"html": True, "linkify": False}).render(result.stdout)
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered))
    assert tags <= {"h1", "ul", "li", "p", "strong", "em", "blockquote", "code"}, tags
    assert "href" not in rendered and "src=" not in rendered.replace("src=x", "")  # src=x is text now: see below
    assert "<img" not in rendered and "<script" not in rendered and "<h2" not in rendered
    shown = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    for text in HOSTILE_TEXTS:
        for line in text.replace("\r", "\n").split("\n"):
            assert line.strip() in shown, line
    assert rendered.count("<h1>") == 1 and rendered.count("<li>") == 3  # the header's; a turn's "# " or "- " is text


def test_transcript_formats_keep_a_hostile_transcript_inert(tmp_path):
    """SRT and VTT cues cannot be forged or tagged by the text; the TSV runs no formula; txt and json are exact."""
    from voicechat.engines.base import Segment
    from voicechat.transcription import formats

    texts = [
        " Hello <script>alert(1)</script> & <b>bold</b> there.",
        " =cmd|' /C calc'!A0 ends\n\n99\n00:00:00,000 --> 00:09:00,000\n<font color=red>forged cue</font> {\\an8}top",
    ]
    segments = [Segment(0.0, 2.0, texts[0]), Segment(2.0, 4.0, texts[1])]
    srt, vtt, tsv = formats.to_srt(segments), formats.to_vtt(segments), formats.to_tsv(segments)
    for doc, arrow in ((srt, " --> "), (vtt, " --> ")):
        assert sum(arrow in line for line in doc.splitlines()) == 2, doc  # two cues, no forged third one
        assert "<script" not in doc and "<b>" not in doc and "<font" not in doc, doc
        assert "\n\n99\n" not in doc
    assert "{\\an8}" not in srt
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in vtt
    assert "alert(1)" in srt and "forged cue" in srt and "forged cue" in vtt
    rows = [line.split("\t") for line in tsv.splitlines()[1:]]
    assert len(rows) == 2 and rows[1][2].startswith("'=cmd|")
    assert formats.to_txt(segments) == "".join(t.strip() + "\n" for t in texts)
    assert [s["text"] for s in json.loads(formats.to_json(segments))["segments"]] == texts


def test_history_show_and_list_print_markup_and_escapes_as_text(tmp_path):
    """`history show` printed a turn as rich markup: "[/]" alone ended it with "unexpected MarkupError"."""
    _, sid = _history_of(["[bold]markup[/] and [/] alone", "title\x1b]0;pwned\x07 and \x1b[2J clear"])
    shown = runner.invoke(app, ["history", "show", str(sid)])
    assert shown.exit_code == 0, shown.stderr
    assert "[bold]markup[/] and [/] alone" in shown.stdout
    assert "\x1b]0;" not in shown.stdout and "\\x1b]0;pwned\\x07" in shown.stdout
    listed = runner.invoke(app, ["history", "list"])
    assert listed.exit_code == 0, listed.stderr
    assert "[bold]markup[/]" in listed.stdout
    counted = runner.invoke(app, ["tokens", "--session", str(sid)])
    assert counted.exit_code == 0 and "[bold]markup[/]" in counted.stdout, counted.stderr


@pytest.mark.parametrize("args", [["history", "export", "1"], ["tokens", "--json", "hello"]], ids=["history-export", "tokens"])
def test_stdout_on_a_full_device_is_one_line_naming_it(tmp_path, args):
    """`voicechat history export 1 > /dev/full`: one line, disk-full said, no traceback at exit."""
    with_history(tmp_path)
    with open("/dev/full", "w") as full:
        done = subprocess.run([VOICECHAT, *args], stdout=full, stderr=subprocess.PIPE, timeout=120)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert err.splitlines() == [
        "voicechat: error: cannot write standard output: no space left on the disk holding it; free some space and try again"
    ], err


def test_full_disk_keeps_every_turn_and_continue_works_once_space_is_back(tmp_path):
    """The history's disk fills up between two turns (a real tmpfs): said as disk-full (never "damaged, move it
    aside"), the turn goes to a recovery file in the temp dir, `chat --continue` still starts, and once space
    is back the same history takes turns again, intact."""
    import contextlib
    import sqlite3

    from tests import fullfs
    from voicechat.conversation.history import History

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with fullfs.tmpfs(tmp_path / "disk", "2m") as disk, EchoingServer() as server:
        env = {**os.environ, **chat_env(server), "VOICECHAT_DATA_DIR": str(disk / "data"), "TMPDIR": str(tmpdir)}
        proc = subprocess.Popen([VOICECHAT, "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            proc.stdin.write(b"first question\n")
            proc.stdin.flush()
            assert server.reply in proc.stdout.readline().decode()
            db = disk / "data" / "history.sqlite3"

            def first_turn_committed() -> bool:
                with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
                    return c.execute("SELECT count(*) FROM turns").fetchone()[0] == 1

            _wait_for(first_turn_committed, proc, "the first turn's commit")
            filler = fullfs.fill(disk)  # the disk fills up while the conversation goes on
            out, err = proc.communicate(b"second question\n", timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        err = err.decode()
        assert proc.returncode == 0 and server.reply in out.decode(), err
        assert "no space left on the disk holding the history" in err, err
        assert "damaged" not in err and "move it aside" not in err, err
        recovered = list(tmpdir.glob("voicechat-recovered-*/chat-*.jsonl"))
        assert len(recovered) == 1 and str(recovered[0]) in err, err
        assert [json.loads(line)["user_text"] for line in recovered[0].read_text().splitlines()] == ["second question"]

        still_full = subprocess.run([VOICECHAT, "chat", "--continue"], input=b"third question\n", capture_output=True, env=env, timeout=120)
        err = still_full.stderr.decode()
        assert still_full.returncode == 0 and server.reply in still_full.stdout.decode(), err
        assert "no space left on the disk holding the history" in err and "move it aside" not in err, err
        kept = [
            json.loads(line)["user_text"] for p in tmpdir.glob("voicechat-recovered-*/chat-*.jsonl") for line in p.read_text().splitlines()
        ]
        assert sorted(kept) == ["second question", "third question"]

        filler.unlink()  # space is back
        again = subprocess.run([VOICECHAT, "chat", "--continue"], input=b"fourth question\n", capture_output=True, env=env, timeout=120)
        assert again.returncode == 0 and again.stderr.decode().strip() == "", again.stderr.decode()
        assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with History(db) as h:
            assert [t.user_text for t in h.turns(h.last_session_id("chat"))] == ["first question", "fourth question"]


def test_turns_no_file_can_take_are_printed_at_the_end(tmp_path, monkeypatch):
    """Data dir and temp dir both on a full disk: the turn stays in memory and is printed on stderr at the end.

    (Python's own search for a temp dir would fall back to /tmp; here the temp dir is set, as TMPDIR is
    when it names a folder that takes files.)"""
    import tempfile

    from tests import fullfs

    with fullfs.tmpfs(tmp_path / "disk", "2m") as disk, EchoingServer() as server:
        (disk / "tmp").mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(disk / "tmp"))
        monkeypatch.setenv("VOICECHAT_DATA_DIR", str(disk / "data"))
        fullfs.fill(disk)
        done = runner.invoke(app, ["chat"], input=b"please keep this question\n", env=chat_env(server))
    err = done.stderr
    assert done.exit_code == 0 and server.reply in done.stdout, err
    assert "no space left" in err and "kept in memory" in err, err
    kept = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [(k["user_text"], k["assistant_text"]) for k in kept] == [("please keep this question", server.reply)], err


def test_read_only_home_still_counts_tokens_and_chats(tmp_path):
    """HOME on a file system mounted read-only (the kernel refuses even root): `tokens` counts and `chat` answers.

    The tokenizer data goes to a private folder in the temp dir; the history's unavailability is a warning
    and the turn is kept in the temp dir."""
    from tests import fullfs

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with fullfs.tmpfs(tmp_path / "home", "4m") as home, EchoingServer() as server:
        for sub in (".cache", ".config", ".local/share"):
            (home / sub).mkdir(parents=True)
        fullfs.read_only(home)
        with pytest.raises(OSError):
            (home / ".cache" / "probe").write_text("x")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICECHAT_", "XDG_", "TIKTOKEN_", "DATA_GYM_"))}
        env.update(HOME=str(home), TMPDIR=str(tmpdir))
        counted = subprocess.run([VOICECHAT, "tokens", "Hello, world"], capture_output=True, env=env, timeout=120)
        assert counted.returncode == 0 and counted.stdout.decode().strip() == "3", counted.stderr.decode()  # o200k: Hello / , / world
        assert counted.stderr.decode() == ""
        chatted = subprocess.run(
            [VOICECHAT, "chat"], input=b"hello there\n", capture_output=True, env={**env, **chat_env(server)}, timeout=120
        )
        err = chatted.stderr.decode()
        assert chatted.returncode == 0 and server.reply in chatted.stdout.decode(), err
        assert "unexpected" not in err and "Traceback" not in err, err
        assert [line for line in err.splitlines() if line.strip()] and all(
            line.startswith("voicechat: warning: the history log is unavailable") for line in err.splitlines() if line.strip()
        ), err
        assert "read-only" in err.lower(), err
        recovered = list(tmpdir.glob("voicechat-recovered-*/chat-*.jsonl"))
        assert len(recovered) == 1 and "hello there" in recovered[0].read_text()
        assert list(tmpdir.glob("voicechat-tiktoken-*/*"))  # where the tokenizer data went


@pytest.mark.parametrize(
    "code, says",
    [
        (28, "no space left on the disk holding it"),
        (122, "disk quota exceeded"),
        (30, "read-only"),
        (5, "input/output error"),
        (13, "permission denied"),
        (36, "File name too long"),
    ],
)
def test_every_os_error_on_an_output_names_the_file(tmp_path, code, says):
    """What atomic writes raise for any errno: one line with the file's name and what to do, never "unexpected"."""
    from voicechat.atomic import atomic_path

    target = tmp_path / "out.csv"
    with pytest.raises(Exception) as caught:
        with atomic_path(target):
            raise OSError(code, os.strerror(code))
    message = str(caught.value)
    assert type(caught.value).__name__ == "VoicechatError" and str(target) in message and says.lower() in message.lower()
    assert "\n" not in message and not target.exists() and leftovers(tmp_path) == []


def test_history_reads_on_a_full_disk(tmp_path, monkeypatch):
    """A history whose disk is full is read as it is (list, show, export): not called damaged."""
    from tests import fullfs

    with fullfs.tmpfs(tmp_path / "disk", "2m") as disk:
        monkeypatch.setenv("VOICECHAT_DATA_DIR", str(disk / "data"))
        history_with_turns(paths.history_db(), sessions=3, turns=2)
        fullfs.fill(disk)
        listed = runner.invoke(app, ["history", "list", "--json"])
        exported = runner.invoke(app, ["history", "export", "2", "-f", "md"])
        deleted = runner.invoke(app, ["history", "delete", "2", "--yes"])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 3, listed.stderr
    assert exported.exit_code == 0 and exported.stdout.count("**You:**") == 2, exported.stderr
    assert deleted.exit_code == 1 and deleted.stderr.startswith("voicechat: error: ") and "no space left" in deleted.stderr
    assert "damaged" not in deleted.stderr and len(deleted.stderr.splitlines()) == 1, deleted.stderr


def test_chat_to_a_full_stdout_is_one_line(tmp_path):
    """`voicechat chat > /dev/full`: one line naming standard output (it was "unexpected OSError")."""
    with EchoingServer() as server, open("/dev/full", "w") as full:
        done = subprocess.run(
            [VOICECHAT, "chat", "--no-log"],
            input=b"hello\nagain\n",
            stdout=full,
            stderr=subprocess.PIPE,
            env={**os.environ, **chat_env(server)},
            timeout=120,
        )
    err = done.stderr.decode()
    assert done.returncode == 1 and err.splitlines() == [
        "voicechat: error: cannot write standard output: no space left on the disk holding it; free some space and try again"
    ], err


@pytest.mark.fast
def test_a_writer_whose_close_fails_publishes_nothing(tmp_path):
    """A full disk can show only on the last flush, when the file is closed: the truncated file must not replace the
    output (nor be left beside it)."""
    import errno

    from voicechat.audiofile import AudioFileWriter
    from voicechat.engines.base import AudioChunk

    out = tmp_path / "reply.flac"
    out.write_bytes(b"the previous take")
    writer = AudioFileWriter(out).__enter__()
    writer.play(AudioChunk((0.3 * np.sin(np.arange(22050) / 10)).astype(np.float32), 22050, "x"))
    real_close = writer._file.close

    def full_disk() -> None:
        real_close()
        raise OSError(errno.ENOSPC, "No space left on device")

    writer._file.close = full_disk
    with pytest.raises(OSError):
        writer.__exit__(None, None, None)
    writer._file.close = real_close  # (the file object's own finaliser closes it again)
    assert out.read_bytes() == b"the previous take" and leftovers(tmp_path) == []


@pytest.mark.fast
def test_an_os_error_that_escapes_a_command_names_its_file(capsys):
    import errno

    import typer

    from voicechat.console import handle_errors

    @handle_errors
    def command() -> None:
        raise OSError(errno.EIO, "Input/output error", "/media/usb/notes.txt")

    with pytest.raises(typer.Exit) as exit_:
        command()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.exit_code == 1 and len(err) == 1, err
    assert "/media/usb/notes.txt" in err[0] and "input/output error" in err[0] and "unexpected" not in err[0]
