"""History on both backends (the SQLite file and a real PostgreSQL, see the history_url fixture):
durability, migrations, export formats, two writers at once, a dropped connection; `voicechat chat` end to end."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess

import pytest
from typer.testing import CliRunner

from tests.helpers import VOICECHAT, run_cli
from tests.servers import OpenAILikeServer
from voicechat import paths
from voicechat.cli import app
from voicechat.conversation.history import MIGRATIONS, History, Turn
from voicechat.storage import schema

runner = CliRunner()


def open_history(url):
    """The history the CLI uses: the URL's PostgreSQL database, or the SQLite file in the data dir."""
    return History(url or paths.history_db())


def stored_text(url) -> str:
    """Everything the history holds, as text (to look for secrets in it)."""
    if url is None:
        return paths.history_db().read_bytes().decode(errors="replace")
    import psycopg

    with psycopg.connect(url) as db:
        return "\n".join(str(row) for table in ("sessions", "turns") for row in db.execute(f"SELECT * FROM {table}"))


def test_file_is_private_and_wal(tmp_path):
    h = History(tmp_path / "h.sqlite3")
    sid = h.new_session("chat")
    h.add_turn(sid, Turn("hi", "hello"))
    assert stat.S_IMODE(os.stat(tmp_path / "h.sqlite3").st_mode) == 0o600
    assert h.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert h.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)  # what an older voicechat reads
    assert [r[0] for r in h.db.execute("SELECT version FROM schema_version ORDER BY version")] == list(range(1, len(MIGRATIONS) + 1))


def raw_connection(url, tmp_path):
    """A plain driver connection to the store, as an older voicechat or another tool would have."""
    if url is None:
        return sqlite3.connect(paths.history_db(), isolation_level=None)
    import psycopg

    return psycopg.connect(url, autocommit=True)


def test_migrates_an_old_schema(history_url, tmp_path):
    """A store at schema 1 (for SQLite: a file of the days before the version table) is upgraded in place."""
    paths.history_db().parent.mkdir(parents=True, exist_ok=True)
    dialect = "postgresql" if history_url else "sqlite"
    with raw_connection(history_url, tmp_path) as db:
        for statement in schema.statements(schema.render(dialect)[0]):
            db.execute(statement)
        if history_url:
            db.execute(schema.VERSION_TABLE)
            db.execute("INSERT INTO schema_version VALUES (1, '2026-01-01')")
        else:
            db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO sessions (started_at, kind) VALUES ('2026-01-01', 'chat')")
        db.execute("INSERT INTO turns (session_id, created_at, user_text, assistant_text) VALUES (1, '2026-01-01', 'q', 'a')")
    with open_history(history_url) as h:
        old = h.turns(1)
        assert [t.user_text for t in old] == ["q"] and old[0].cleared_before is False and old[0].tools == []
        assert h.store.read(lambda q: [r["version"] for r in q("SELECT version FROM schema_version ORDER BY version")]) == list(
            range(1, len(MIGRATIONS) + 1)
        )
        backfilled = h.store.read(lambda q: q("SELECT public_id FROM sessions WHERE id=1"))[0]["public_id"]
        assert re.fullmatch(r"[0-9a-f]{32,64}", backfilled) and h.find_public(backfilled) == 1  # a random id to resume by
        h.add_turn(1, Turn("r", "b", tools=[{"name": "clock", "arguments": {}, "result": "12:00"}]))
        assert h.turns(1)[1].tools == [{"name": "clock", "arguments": {}, "result": "12:00"}]
    with open_history(history_url) as h:  # opening again applies nothing twice
        assert len(h.turns(1)) == 2


def test_newer_schema_is_clear(history_url, tmp_path):
    paths.history_db().parent.mkdir(parents=True, exist_ok=True)
    with raw_connection(history_url, tmp_path) as db:
        if history_url:
            db.execute(schema.VERSION_TABLE)
            db.execute("INSERT INTO schema_version VALUES (99, '2030-01-01')")
        else:
            db.execute("PRAGMA user_version = 99")
    with pytest.raises(Exception, match="newer voicechat"):
        open_history(history_url)
    result = runner.invoke(app, ["history", "list"])
    assert result.exit_code == 1 and "newer voicechat (schema 99)" in result.stderr


def test_garbage_file_is_clear(tmp_path):
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(Exception, match="move it aside"):
        History(junk)


def chat_env(server):
    return {"VOICECHAT_LLM_ENGINE": "openai", "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-key-abcdefghijkl"}


def test_scripted_chat_logs_turns_and_exports(history_url, tmp_path):
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
    assert "sk-test-key" not in stored_text(history_url)
    assert paths.history_db().exists() is (history_url is None)  # with a URL, nothing goes to the file
    assert runner.invoke(app, ["history", "delete", sid, "--yes"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["history", "list", "--json"]).stdout) == []


def test_resume_sends_the_earlier_turns(history_url, tmp_path):
    # (in this process: what is tested is which turns are sent, not the program's start-up, which
    # test_scripted_chat_logs_turns_and_exports runs; three processes of their own took seconds each)
    with OpenAILikeServer() as server:
        first = runner.invoke(app, ["chat"], input=b"my name is Ana\n", env=chat_env(server))
        assert first.exit_code == 0, first.stderr
        sid = json.loads(runner.invoke(app, ["history", "list", "--json"]).stdout)[0]["id"]
        result = runner.invoke(app, ["chat", "--resume", str(sid)], input=b"what is my name?\n", env=chat_env(server))
        assert result.exit_code == 0, result.stderr
        last = json.loads(server.requests[-1]["body"])
        assert [m["content"] for m in last["messages"][1:]] == ["my name is Ana", server.reply, "what is my name?"]
        cleared = runner.invoke(app, ["chat", "--continue"], input=b"/clear\nfresh start\n", env=chat_env(server))
        assert cleared.exit_code == 0, cleared.stderr
        last = json.loads(server.requests[-1]["body"])
        assert [m["role"] for m in last["messages"]] == ["system", "user"]
    turns = json.loads(runner.invoke(app, ["history", "export", str(sid)]).stdout)["turns"]
    assert len(turns) == 3 and turns[2]["cleared_before"] is True


def test_no_log_keeps_session_out(history_url):
    with OpenAILikeServer() as server:
        # (in this process, as in test_resume_sends_the_earlier_turns: the program's start-up has its own test)
        assert runner.invoke(app, ["chat", "--no-log"], input=b"secret stuff\n", env=chat_env(server)).exit_code == 0
    assert json.loads(runner.invoke(app, ["history", "list", "--json"]).stdout) == []


def test_chat_reports_server_error_without_traceback():
    with OpenAILikeServer() as server:
        server.mode = "401"
        result = runner.invoke(app, ["chat"], input=b"hello\n", env={**chat_env(server), "VOICECHAT_LLM_RETRIES": "0"})
    assert result.exit_code == 1
    assert "rejected the API key" in result.stderr and "Traceback" not in result.stderr


def test_kill_9_mid_session_keeps_completed_turns(history_url):
    """Completed turns are committed as they happen: SIGKILL during a reply loses only that reply. (The replies
    come from a loopback server: the third streams for minutes, so the kill lands in it whatever the machine's
    load; with the local model, two long replies took 40 s and the kill raced the third's end.)"""
    from tests.hostile import EchoingServer  # (its errors stay quiet when the killed client hangs up mid-stream)

    with EchoingServer() as server:
        server.script = ["Hello.", "An apple.", "Once upon a time there was a dragon and a knight. " * 2000]
        proc = subprocess.Popen(
            [VOICECHAT, "chat", "--system", "Answer at length."],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **chat_env(server)},
        )
        for question in (b"Say hello.\n", b"Name a fruit.\n"):
            proc.stdin.write(question)
            proc.stdin.flush()
            assert proc.stdout.readline().strip(), "a reply line"
        proc.stdin.write(b"Tell me a long story about a dragon and a knight.\n")
        proc.stdin.flush()
        proc.stdout.read(5)  # the third reply has started streaming
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with open_history(history_url) as h:
        sid = h.last_session_id()
        turns = h.turns(sid)
    assert [t.user_text for t in turns] == ["Say hello.", "Name a fruit."]
    assert [t.assistant_text for t in turns] == ["Hello.", "An apple."]


def test_two_writers_at_once(history_url):
    """Two connections (as two replicas have) write turns at the same time, into their own sessions and
    into one they share: every turn is kept, once, in each writer's order."""
    import threading

    paths.history_db().parent.mkdir(parents=True, exist_ok=True)
    writers = [open_history(history_url) for _ in range(2)]
    shared = writers[0].new_session("talk")
    own = [w.new_session("talk") for w in writers]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait(10)
            for i in range(25):
                writers[n].add_turn(own[n], Turn(f"w{n} q{i}", f"w{n} a{i}"))
                writers[n].add_turn(shared, Turn(f"w{n} shared {i}", "ok"))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with open_history(history_url) as h:
        for n in range(2):
            assert [t.user_text for t in h.turns(own[n])] == [f"w{n} q{i}" for i in range(25)]
        both = [t.user_text for t in h.turns(shared)]
        assert sorted(both) == sorted(f"w{n} shared {i}" for n in range(2) for i in range(25))
        for n in range(2):
            assert [t for t in both if t.startswith(f"w{n} ")] == [f"w{n} shared {i}" for i in range(25)]
        counts = {s["id"]: s["turns"] for s in h.sessions()}
    assert counts == {shared: 50, own[0]: 25, own[1]: 25}
    for w in writers:
        w.close()
