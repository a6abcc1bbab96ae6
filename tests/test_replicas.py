"""Two `voicechat serve` replicas behind a real HAProxy (deploy/haproxy.cfg), sharing one PostgreSQL history:
requests spread over both; a voice session whose replica is killed resumes on the other with every
completed turn; a replica stopped with SIGTERM drains without losing a turn. Typed turns keep it quick:
speech adds nothing to what is tested here (test_serve.py speaks)."""

from __future__ import annotations

import signal
import threading
import time
import urllib.request

import pytest

from tests.balancer import Balancer
from tests.serveproc import ServeProcess
from tests.voiceclient import VoiceClient
from voicechat.conversation.history import History

LONG = "Count from one to fifty, writing every number as a word, separated by commas."


class Replicas:
    def __init__(self, workdir, url: str) -> None:
        env = {"VOICECHAT_HISTORY_URL": url}
        self.url = url
        self.servers = [ServeProcess(workdir / f"replica{n}", config="llm:\n  max_tokens: 48\n", env=env) for n in (1, 2)]

    def ensure_up(self, balancer: Balancer | None = None) -> None:
        """Start every replica that is not running, in parallel (each takes several seconds to load),
        and wait until the balancer's health checks count them in."""
        down = [s for s in self.servers if s.proc is None or s.proc.poll() is not None]
        for s in down:
            if s.proc is not None:
                s.stop()
        threads = [threading.Thread(target=s.start) for s in down]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        for s in self.servers:
            assert s.status("/readyz") == 200, s.log_text()
        if balancer is not None:
            balancer.wait_up(len(self.servers))

    def holding_session(self) -> ServeProcess:
        """The replica the balancer gave the live voice session to."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            holders = [s for s in self.servers if s.proc.poll() is None and s.metric("voicechat_active_sessions") > 0]
            if len(holders) == 1:
                return holders[0]
            time.sleep(0.1)
        raise AssertionError("no single replica holds the session")

    def other(self, server: ServeProcess) -> ServeProcess:
        return next(s for s in self.servers if s is not server)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres):
    workdir = tmp_path_factory.mktemp("replicas")
    replicas = Replicas(workdir, postgres.new_database())
    replicas.ensure_up()
    with Balancer(workdir, [s.port for s in replicas.servers]) as balancer:
        balancer.wait_up(2)
        yield replicas, balancer
    for s in replicas.servers:
        s.stop()


def connect(url: str, session: str | None = None, tries: int = 40) -> tuple[VoiceClient, dict]:
    """Connect through the balancer as a client does: a replica that is starting or draining says so
    (close code 1013 or 1012); wait a moment and try again."""
    for _ in range(tries):
        c = VoiceClient(url, query=f"session={session}" if session else "")
        try:
            return c, c.wait_for(lambda e: e["type"] == "session", timeout=30)
        except AssertionError:
            assert c.close_code in (1012, 1013, 1006, None), (c.close_code, c.events)
            c.close()
            time.sleep(0.25)
    raise AssertionError("no replica took the session")


def turn(c: VoiceClient, text: str) -> tuple[dict, dict]:
    """One typed turn: the reply and the session event that says it was committed."""
    mark = c.events[-1] if c.events else None
    c.send({"type": "text", "text": text})
    user = c.wait_for(lambda e: e["type"] == "user" and e["text"] == text, after=mark)
    reply = c.wait_for(lambda e: e["type"] == "reply", after=user)
    committed = c.wait_for(lambda e: e["type"] == "session" and e.get("id"), after=reply)
    return reply, committed


def stored(url: str, session: str) -> list[tuple[str, str]]:
    """The turns of the session whose public id (what the client was given) is ``session``."""
    with History(url) as h:
        row = h.find_public(session)
        assert row is not None, session
        return [(t.user_text, t.assistant_text) for t in h.turns(row)]


def test_http_routes_spread_over_both_replicas(cluster):
    replicas, balancer = cluster
    before = [s.metric("voicechat_requests_total", route="/v1/models", status="200") for s in replicas.servers]
    for _ in range(8):
        with urllib.request.urlopen(balancer.url + "/v1/models", timeout=30) as r:
            assert r.status == 200
    after = [s.metric("voicechat_requests_total", route="/v1/models", status="200") for s in replicas.servers]
    served = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(served) == 8 and min(served) >= 2, served
    import openai

    client = openai.OpenAI(base_url=balancer.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    for _ in range(2):
        assert client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Say hello."}]).choices[0].message.content
    assert all(s.metric("voicechat_requests_total", route="/v1/chat/completions", status="200") == 1 for s in replicas.servers)


def test_a_killed_replica_session_resumes_on_the_other_with_every_completed_turn(cluster):
    replicas, balancer = cluster
    replicas.ensure_up(balancer)
    c, hello = connect(balancer.url)
    try:
        first, _ = turn(c, "My name is Ana.")
        second, committed = turn(c, "What is the capital of France?")
        session = committed["id"]
        victim = replicas.holding_session()
        c.send({"type": "text", "text": LONG})
        c.wait_for(lambda e: e["type"] == "reply_delta", after=committed)
        victim.proc.send_signal(signal.SIGKILL)  # mid-reply: this turn is not complete, the two before it are
        killed_at = time.monotonic()
        victim.proc.wait(10)
        c.closed(30)
    finally:
        c.close()
    again, hello = connect(balancer.url, session)
    try:
        without_service = time.monotonic() - killed_at
        assert hello["id"] == session and hello["resumed_turns"] == 2
        assert replicas.holding_session() is replicas.other(victim)
        third, _ = turn(again, "And what about Germany?")
        assert third["text"].strip()
    finally:
        again.close()
    turns = stored(replicas.url, session)
    assert turns == [
        ("My name is Ana.", first["text"]),
        ("What is the capital of France?", second["text"]),
        ("And what about Germany?", third["text"]),
    ]
    assert without_service < 60  # reported by bench/replicas.py; here only that it came back


def test_a_sigterm_replica_drains_without_losing_a_turn(cluster):
    replicas, balancer = cluster
    replicas.ensure_up(balancer)
    c, hello = connect(balancer.url)
    try:
        first, committed = turn(c, "Name a fruit.")
        session = committed["id"]
        leaving = replicas.holding_session()
        c.send({"type": "text", "text": LONG})
        c.wait_for(lambda e: e["type"] == "reply_delta", after=committed)
        leaving.terminate()
        closing = c.wait_for(lambda e: e["type"] == "closing")
        assert closing["session"] == session
        import openai  # new requests meanwhile go to the replica that stays

        client = openai.OpenAI(base_url=balancer.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        assert client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi."}]).choices[0].message.content
        reply = c.wait_for(lambda e: e["type"] == "reply" and e is not first, after=committed)
        c.wait_for(lambda e: e["type"] == "session" and e.get("id") == session, after=reply)
        assert c.closed(60) == 1012  # "restarting: reconnect"
        assert not reply["interrupted"] and reply["text"].strip()
        assert leaving.proc.wait(60) == 0
    finally:
        c.close()
    again, hello = connect(balancer.url, session)
    try:
        assert hello["resumed_turns"] == 2
    finally:
        again.close()
    assert stored(replicas.url, session) == [("Name a fruit.", first["text"]), (LONG, reply["text"])]


def test_the_readme_shows_the_balancer_config_the_tests_run():
    from tests.balancer import EXAMPLE
    from tests.helpers import ROOT

    assert EXAMPLE.read_text() in (ROOT / "README.md").read_text()
