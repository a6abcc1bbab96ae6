"""Recovery files back into the history: `voicechat history import` on SQLite and a real PostgreSQL (twice adds
nothing, a bad line is named and skipped, a session that was in the history is continued), and a live
conversation that fell back to a file returning to the history once it can be written again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voicechat import paths
from voicechat.cli import app
from voicechat.conversation.history import History, Turn, UnavailableHistory
from voicechat.conversation.turnlog import Backoff, TurnLog

runner = CliRunner()
ENGINES = {"llm_engine": "openai", "llm_model": "test-model"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def turn(text: str) -> Turn:
    return Turn(user_text=f"question {text}", assistant_text=f"answer {text}")


def texts(history: History, session_id: int) -> list[str]:
    return [t.user_text.removeprefix("question ") for t in history.turns(session_id)]


def blocked_target(tmp_path: Path) -> tuple[Path, Path]:
    """A history file that cannot be created (its folder's name is taken by a file), and that blocking file."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    block = tmp_path / "place"
    block.write_text("a file where the history's folder should be")
    return block / "history.sqlite3", block


@pytest.mark.fast
def test_backoff_tries_at_the_next_turn_then_waits_longer_up_to_a_bound():
    b = Backoff(first=5, most=20)
    b.failed(100)  # the history failed: the next turn tries again
    assert b.due(100)
    b.failed(101)
    assert not b.due(105.9) and b.due(106)
    b.failed(106)
    assert not b.due(115.9) and b.due(116)
    b.failed(116)
    b.failed(136)
    assert not b.due(155.9) and b.due(156)  # 20 s at most
    b.reset()
    assert b.due(0)


@pytest.mark.fast
def test_a_conversation_that_fell_back_returns_to_the_history_with_its_turns_in_order(tmp_path):
    """The history cannot be opened when the conversation starts; turns go to a recovery file. Once it can be,
    the next due turn imports those turns first, then goes on in the history; said once each way."""
    target, block = blocked_target(tmp_path)
    said: list[str] = []
    clock = Clock()
    log = TurnLog(
        UnavailableHistory(target, "cannot create the history"),
        "chat",
        system_prompt="be brief",
        engines=ENGINES,
        warn=said.append,
        clock=clock,
    )
    session = log.add(None, turn("1"))
    assert session is None and log.recovery is not None and len(said) == 1
    clock.now += 1
    assert log.add(None, turn("2")) is None  # tried again at once: still unavailable, nothing more said
    block.unlink()
    clock.now += 1
    assert log.add(None, turn("3")) is None  # the history could be opened now, but the retry waits (backoff)
    assert len(said) == 1
    clock.now += 5
    session = log.add(None, turn("4"))
    assert session is not None
    assert len(said) == 2 and "history log is back" in said[1] and "3 turn(s)" in said[1], said
    assert log.add(session, turn("5")) == session
    with History(target) as h:
        assert texts(h, session) == ["1", "2", "3", "4", "5"]
        assert h.public_id(session) == log.session_key
        info = h.session(session)
        assert (info["kind"], info["system_prompt"], info["llm_model"]) == ("chat", "be brief", "test-model")
    assert not log.unsaved and not log.pending

    again = runner.invoke(app, ["history", "import", "--history", str(target), str(log.recovery)])
    assert again.exit_code == 0, again.stderr
    assert again.stdout.strip() == f"{log.recovery}: 0 turns imported, 3 already there"
    with History(target) as h:
        assert texts(h, session) == ["1", "2", "3", "4", "5"]
    assert log.recovery.exists()  # kept: nothing was asked to remove it


def fell_back(history: History, tmp_path: Path) -> TurnLog:
    """A conversation whose first two turns reached the history, and whose history then went away."""
    log = TurnLog(history, "chat", system_prompt=None, engines=ENGINES, warn=lambda _: None)
    session = log.add(None, turn("1"))
    log.add(session, turn("2"))
    log.history = UnavailableHistory(blocked_target(tmp_path)[0], "the history went away")  # the outage: every write fails
    log.add(session, turn("3"))
    log.add(session, turn("4"))
    return log


def test_import_continues_sessions_once_and_skips_a_bad_line(history_url, tmp_path):
    """Into SQLite and PostgreSQL: a session that was in the history is continued; one that never was is made
    (with the id its client was given); a line from an older voicechat (no keys) goes to its session; a bad
    line is named by file:line and skipped while the rest is imported (exit 1); importing again adds nothing."""
    with History(history_url or paths.history_db()) as h:
        log = fell_back(h, tmp_path)
        continued = h.last_session_id()
        assert continued is not None
        old_style = {"kind": "chat", "session_id": continued, "created_at": "2099-01-01T00:00:00+00:00"}
        old_style |= {"user_text": "question 5", "assistant_text": "answer 5"}
        with open(log.recovery, "a") as f:
            f.write(json.dumps(old_style) + "\n")
            f.write('{"kind": "chat", "user_text": 3}\n')
        offline = TurnLog(
            UnavailableHistory(blocked_target(tmp_path / "x")[0], "never there"),
            "talk",
            system_prompt=None,
            engines=ENGINES,
            warn=lambda _: None,
        )
        offline.add(None, turn("a"))
        offline.add(None, turn("b"))
        assert offline.recovery is not None and offline.recovery != log.recovery

        first = runner.invoke(app, ["history", "import", str(log.recovery), str(offline.recovery)])
        assert first.exit_code == 1, first.stderr
        assert f"{log.recovery}:4: not a recovered turn (user_text is int); skipped" in first.stderr
        made = h.last_session_id("talk")
        assert made is not None and made != continued
        assert first.stdout.splitlines() == [
            f"{log.recovery}: 3 turns imported into session {continued}, 0 already there, 1 bad line skipped",
            f"{offline.recovery}: 2 turns imported into session {made}, 0 already there",
        ]
        assert texts(h, continued) == ["1", "2", "3", "4", "5"]
        assert texts(h, made) == ["a", "b"]
        assert h.public_id(made) == offline.session_key  # the id the conversation had is the session's id

        second = runner.invoke(app, ["history", "import", "--remove", str(log.recovery), str(offline.recovery)])
        assert second.exit_code == 1
        assert second.stdout.splitlines() == [
            f"{log.recovery}: 0 turns imported, 3 already there, 1 bad line skipped; file kept (it has bad lines)",
            f"{offline.recovery}: 0 turns imported, 2 already there; file removed",
        ]
        assert texts(h, continued) == ["1", "2", "3", "4", "5"] and texts(h, made) == ["a", "b"]
        assert log.recovery.exists() and not offline.recovery.exists()


@pytest.mark.fast
def test_a_file_that_cannot_be_read_is_one_line_and_the_others_still_go(tmp_path):
    target = tmp_path / "h.sqlite3"
    offline = TurnLog(
        UnavailableHistory(blocked_target(tmp_path)[0], "never there"), "chat", system_prompt=None, engines=ENGINES, warn=lambda _: None
    )
    offline.add(None, turn("a"))
    missing = tmp_path / "gone.jsonl"
    done = runner.invoke(app, ["history", "import", "--history", str(target), str(missing), str(offline.recovery)])
    assert done.exit_code == 1
    assert "Traceback" not in done.stderr and f"cannot read the recovery file {missing}" in done.stderr
    assert done.stdout.strip() == f"{offline.recovery}: 1 turn imported into session 1, 0 already there"


@pytest.mark.fast
def test_an_endless_or_overlong_input_is_refused_in_bounded_memory(tmp_path, monkeypatch):
    """A device that never ends is refused before it is read; a line too long to be a turn is skipped while
    being read (never held whole), and the turns after it still go in."""
    from voicechat.conversation import recovery

    target = tmp_path / "h.sqlite3"
    endless = runner.invoke(app, ["history", "import", "--history", str(target), "/dev/zero"])
    assert endless.exit_code == 1 and "Traceback" not in endless.stderr
    assert "/dev/zero: is not a regular file" in endless.stderr
    offline = TurnLog(
        UnavailableHistory(blocked_target(tmp_path)[0], "never there"), "chat", system_prompt=None, engines=ENGINES, warn=lambda _: None
    )
    offline.add(None, turn("a"))
    good = offline.recovery.read_text()
    offline.recovery.write_text("x" * 5000 + "\n" + good)  # a first line past the (lowered) bound, then the turn
    monkeypatch.setattr(recovery, "MAX_LINE_CHARS", 1000)
    done = runner.invoke(app, ["history", "import", "--history", str(target), str(offline.recovery)])
    assert done.exit_code == 1 and "Traceback" not in done.stderr
    assert f"{offline.recovery}:1: not a recovered turn (a line of over 1000 characters); skipped" in done.stderr
    assert done.stdout.strip() == f"{offline.recovery}: 1 turn imported into session 1, 0 already there, 1 bad line skipped"


def test_a_live_session_returns_to_postgresql_after_a_restart(postgres):
    """PostgreSQL stops mid-conversation (for real) and starts again: the turn made while it was down is in the
    recovery file; the next turn after the restart puts it in the database first, then itself, in order."""
    url = postgres.new_database()
    said: list[str] = []
    with History(url) as h:
        log = TurnLog(h, "talk", system_prompt=None, engines=ENGINES, warn=said.append)
        session = log.add(None, turn("1"))
        pg_ctl = [str(postgres.bin / "pg_ctl"), "-D", str(postgres.data), "-w", "-t", "60"]
        postgres._run(*pg_ctl, "-m", "fast", "stop")
        try:
            assert log.add(session, turn("2")) == session
            assert len(said) == 1 and "cannot reach PostgreSQL" in said[0], said
        finally:
            opts = f"-c listen_addresses=127.0.0.1 -c port={postgres.port} -c unix_socket_directories={postgres.socket_dir} -c max_connections=60"
            postgres._run(*pg_ctl, "-l", str(postgres.root / "log"), "-o", opts, "start")
        assert log.add(session, turn("3")) == session
        assert len(said) == 2 and "history log is back" in said[1], said
        assert texts(h, session) == ["1", "2", "3"]
    again = runner.invoke(app, ["history", "import", "--history", url, str(log.recovery)])
    assert again.exit_code == 0 and again.stdout.strip() == f"{log.recovery}: 0 turns imported, 1 already there"


def test_a_history_opened_on_a_full_disk_takes_the_turns_back_once_space_is_freed(tmp_path):
    """A real full disk (a tmpfs): the history opens read-only and the turns go to a recovery file; once space is
    freed, the next due turn reopens the file for writing and brings them back, in order."""
    from tests import fullfs

    said: list[str] = []
    clock = Clock()
    with fullfs.tmpfs(tmp_path / "disk", "2m") as disk:
        db = disk / "history.sqlite3"
        with History(db) as h:
            first = h.new_session("chat")
            h.add_turn(first, turn("0"))
        filler = fullfs.fill(disk)
        h = History(db)
        try:
            assert h.read_only
            log = TurnLog(h, "chat", system_prompt=None, engines=ENGINES, warn=said.append, clock=clock)
            assert log.add(None, turn("1")) is None
            assert len(said) == 1 and "no space left" in said[0] and log.recovery is not None
            filler.unlink()
            session = log.add(None, turn("2"))  # the first retry is the next turn
            assert session is not None and len(said) == 2 and "history log is back" in said[1], said
            assert log.add(session, turn("3")) == session
        finally:
            h.close()
            log.history.close()
        with History(db) as again:
            assert texts(again, first) == ["0"]
            assert texts(again, session) == ["1", "2", "3"]
