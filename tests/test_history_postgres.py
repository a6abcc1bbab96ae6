"""The PostgreSQL history under trouble: a connection the server kills mid-turn, a database that goes
away, a wrong password or an unreachable server, and the password kept out of everything shown."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from typer.testing import CliRunner

from tests.helpers import assert_one_line_error, run_cli
from tests.pgserver import PASSWORD
from tests.servers import OpenAILikeServer
from voicechat import paths
from voicechat.cli import app
from voicechat.conversation.history import History

runner = CliRunner()


class ServerWithHook(OpenAILikeServer):
    """Calls ``on_chat(n)`` when the n-th chat request arrives, before the reply streams: mid-turn."""

    def __init__(self, on_chat) -> None:
        super().__init__()
        self.count = 0
        chat = self.routes["/v1/chat/completions"]

        def hooked(h, body):
            self.count += 1
            on_chat(self.count)
            chat(h, body)

        self.routes["/v1/chat/completions"] = hooked


def chat_env(server, url):
    return {
        "VOICECHAT_LLM_ENGINE": "openai",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-test-key-abcdefghijkl",
        "VOICECHAT_HISTORY_URL": url,
    }


def database(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def test_a_connection_killed_mid_turn_is_reopened_and_the_turn_kept(postgres):
    url = postgres.new_database()
    killed = []

    def kill(n):
        if n == 2:  # the second question is being answered: the server drops the history's connection
            killed.append(
                postgres.sql(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    f"WHERE datname = '{database(url)}' AND application_name = 'voicechat'"
                ).strip()
            )

    with ServerWithHook(kill) as server:
        result = run_cli("chat", input=b"first question\nsecond question\nthird question\n", env=chat_env(server, url))
    assert result.returncode == 0, result.stderr.decode()
    assert killed == ["1"]
    assert b"warning" not in result.stderr  # nothing to tell: the write went through on a new connection
    with History(url) as h:
        turns = h.turns(h.last_session_id())
    assert [t.user_text for t in turns] == ["first question", "second question", "third question"]
    assert not (paths.data_dir() / "recovered").exists()


def test_a_database_gone_mid_conversation_is_one_line_and_the_turns_go_to_a_file(postgres):
    url = postgres.new_database()

    def drop(n):
        if n == 2:
            postgres.sql(f"DROP DATABASE {database(url)} WITH (FORCE)")

    with ServerWithHook(drop) as server:
        result = run_cli("chat", input=b"first question\nsecond question\nthird question\n", env=chat_env(server, url))
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert result.stdout.decode().count(server.reply) == 3  # the conversation went on
    warnings = [line for line in stderr.splitlines() if "history log is unavailable" in line]
    assert len(warnings) == 1 and "Traceback" not in stderr, stderr
    assert "no such PostgreSQL database" in warnings[0] and "postgresql://voicechat:***@127.0.0.1" in warnings[0]
    assert PASSWORD not in stderr
    recovered = list((paths.data_dir() / "recovered").glob("chat-*.jsonl"))
    assert len(recovered) == 1 and str(recovered[0]) in warnings[0]
    kept = [json.loads(line) for line in recovered[0].read_text().splitlines()]
    assert [t["user_text"] for t in kept] == ["second question", "third question"]
    assert PASSWORD not in recovered[0].read_text()


def test_the_password_never_shows_and_failures_say_what_to_fix(postgres, monkeypatch):
    url = postgres.new_database()
    monkeypatch.setenv("VOICECHAT_HISTORY_URL", url)
    shown = runner.invoke(app, ["config", "show"])
    assert shown.exit_code == 0 and PASSWORD not in shown.stdout
    assert f"postgresql://voicechat:***@127.0.0.1:{postgres.port}/" in shown.stdout
    as_json = runner.invoke(app, ["config", "show", "--json"])
    assert PASSWORD not in as_json.stdout

    wrong = url.replace(PASSWORD, PASSWORD[:-3] + "xyz")
    result = run_cli("history", "list", env={"VOICECHAT_HISTORY_URL": wrong})
    assert result.returncode == 1
    assert_one_line_error(result.stderr.decode(), "refused the login", "password in history.url")
    assert PASSWORD[:-3] not in result.stderr.decode()

    dead = url.replace(f":{postgres.port}/", ":9/")  # nothing listens on the discard port
    result = run_cli("history", "list", env={"VOICECHAT_HISTORY_URL": dead})
    assert result.returncode == 1
    assert_one_line_error(result.stderr.decode(), "cannot reach PostgreSQL", "host and port")
    assert PASSWORD not in result.stderr.decode()

    result = run_cli("history", "list", env={"VOICECHAT_HISTORY_URL": f"mysql://root:{PASSWORD}@db/x"})
    assert result.returncode == 2
    assert_one_line_error(result.stderr.decode(), "history.url", "postgresql://")
    assert PASSWORD not in result.stderr.decode()
