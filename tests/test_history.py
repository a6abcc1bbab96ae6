"""History: SQLite durability, migrations, export formats; `voicechat chat` end to end."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import stat
import subprocess
import time

import pytest
from typer.testing import CliRunner

from tests.helpers import VOICECHAT, run_cli
from tests.servers import OpenAILikeServer
from voicechat import paths
from voicechat.cli import app
from voicechat.history import MIGRATIONS, History, Turn

runner = CliRunner()


def test_file_is_private_and_wal(tmp_path):
    h = History(tmp_path / "h.sqlite3")
    sid = h.new_session("chat")
    h.add_turn(sid, Turn("hi", "hello"))
    assert stat.S_IMODE(os.stat(tmp_path / "h.sqlite3").st_mode) == 0o600
    assert h.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert h.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_migrates_an_old_schema(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute("INSERT INTO sessions (started_at, kind) VALUES ('2026-01-01', 'chat')")
    db.execute("INSERT INTO turns (session_id, created_at, user_text, assistant_text) VALUES (1, '2026-01-01', 'q', 'a')")
    db.commit()
    db.close()
    h = History(path)
    assert [t.user_text for t in h.turns(1)] == ["q"] and h.turns(1)[0].cleared_before is False


def test_newer_schema_and_garbage_are_clear(tmp_path):
    path = tmp_path / "new.sqlite3"
    sqlite3.connect(path).execute("PRAGMA user_version = 99").connection.commit()
    with pytest.raises(Exception, match="newer voicechat"):
        History(path)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(Exception, match="move it aside"):
        History(junk)


def chat_env(server):
    return {"VOICECHAT_LLM_ENGINE": "openai", "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-key-abcdefghijkl"}


def test_scripted_chat_logs_turns_and_exports(tmp_path):
    with OpenAILikeServer() as server:
        result = run_cli("chat", input=b"first question\nsecond question\n", env=chat_env(server))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [server.reply, server.reply]
    listed = json.loads(runner.invoke(app, ["history", "list", "--json"]).stdout)
    assert listed[0]["turns"] == 2 and listed[0]["kind"] == "chat"
    sid = str(listed[0]["id"])
    doc = json.loads(runner.invoke(app, ["history", "export", sid, "--format", "json"]).stdout)
    assert [t["user_text"] for t in doc["turns"]] == ["first question", "second question"]
    assert doc["turns"][0]["prompt_tokens"] == 10 and doc["turns"][0]["tokens_estimated"] is False
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["history", "export", sid, "--format", "csv"]).stdout)))
    assert [r["assistant_text"] for r in rows] == [server.reply, server.reply]
    out = tmp_path / "s.md"
    assert runner.invoke(app, ["history", "export", sid, "--format", "md", "-o", str(out)]).exit_code == 0
    assert "**You:** first question" in out.read_text()
    shown = runner.invoke(app, ["history", "show", sid]).stdout
    assert "second question" in shown
    report = json.loads(runner.invoke(app, ["tokens", "--session", sid, "--json"]).stdout)
    assert [t["running_total"] for t in report["turns"]] == [10 + 10, 2 * (10 + 10)]
    assert report["cost_usd"] is not None  # gpt-4o-mini is in the price table
    assert "sk-test-key" not in (paths.history_db()).read_bytes().decode(errors="replace")
    assert runner.invoke(app, ["history", "delete", sid, "--yes"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["history", "list", "--json"]).stdout) == []


def test_resume_sends_the_earlier_turns(tmp_path):
    with OpenAILikeServer() as server:
        run_cli("chat", input=b"my name is Ana\n", env=chat_env(server))
        sid = json.loads(runner.invoke(app, ["history", "list", "--json"]).stdout)[0]["id"]
        result = run_cli("chat", "--resume", str(sid), input=b"what is my name?\n", env=chat_env(server))
        assert result.returncode == 0
        last = json.loads(server.requests[-1]["body"])
        assert [m["content"] for m in last["messages"][1:]] == ["my name is Ana", server.reply, "what is my name?"]
        run_cli("chat", "--continue", input=b"/clear\nfresh start\n", env=chat_env(server))
        last = json.loads(server.requests[-1]["body"])
        assert [m["role"] for m in last["messages"]] == ["system", "user"]
    turns = json.loads(runner.invoke(app, ["history", "export", str(sid)]).stdout)["turns"]
    assert len(turns) == 3 and turns[2]["cleared_before"] is True


def test_no_log_keeps_session_out():
    with OpenAILikeServer() as server:
        assert run_cli("chat", "--no-log", input=b"secret stuff\n", env=chat_env(server)).returncode == 0
    assert json.loads(runner.invoke(app, ["history", "list", "--json"]).stdout) == []


def test_chat_reports_server_error_without_traceback():
    with OpenAILikeServer() as server:
        server.mode = "401"
        result = run_cli("chat", input=b"hello\n", env={**chat_env(server), "VOICECHAT_LLM_RETRIES": "0"})
    assert result.returncode == 1
    assert b"rejected the API key" in result.stderr and b"Traceback" not in result.stderr


def test_kill_9_mid_session_keeps_completed_turns():
    """Completed turns are committed as they happen: SIGKILL during a reply loses only that reply."""
    proc = subprocess.Popen([VOICECHAT, "chat", "--system", "Answer at length."], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, "VOICECHAT_LLM_MAX_TOKENS": "200"})
    for question in (b"Say hello.\n", b"Name a fruit.\n"):
        proc.stdin.write(question)
        proc.stdin.flush()
        assert proc.stdout.readline().strip(), "a reply line"
    proc.stdin.write(b"Tell me a long story about a dragon and a knight.\n")
    proc.stdin.flush()
    proc.stdout.read(5)  # the third reply has started streaming
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with History(paths.history_db()) as h:
        sid = h.last_session_id()
        turns = h.turns(sid)
    assert [t.user_text for t in turns] == ["Say hello.", "Name a fruit."]
    assert all(t.assistant_text for t in turns)
