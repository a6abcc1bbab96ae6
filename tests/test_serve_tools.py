"""Tools in server sessions: the server's built-ins and MCP servers, started once and shared by every voice
session, calls bounded across sessions, tools that need a yes refused unless the config names them; and
`serve` on a port already in use.

The end-to-end test runs a real `voicechat serve` (bundled Whisper and Piper) whose chat engine is a scripted
OpenAI-compatible server on loopback: the model's choice of tools is the script's, so every path is certain.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time

import pytest

from tests.helpers import ROOT, assert_one_line_error, run_cli
from tests.serveproc import ServeProcess
from tests.servers import OpenAILikeServer, ToolCalls
from tests.voiceclient import VoiceClient
from voicechat.config import resolve
from voicechat.engines.base import ToolCall, ToolSpec
from voicechat.tools.base import Tool, ToolError
from voicechat.tools.box import ToolBox
from voicechat.tools.confirm import ServerConfirmation, names
from voicechat.tools.gate import Gate

SERVER = str(ROOT / "tests" / "mcp_server.py")
# the test MCP server, started through a line that first notes its process id (one line per start)
COUNTED = "import os, sys; open(sys.argv[1], 'a').write(f'{os.getpid()}\\n'); os.execv(sys.executable, [sys.executable, sys.argv[2]])"


def call(name: str, args: dict | None = None) -> ToolCall:
    return ToolCall("c1", name, json.dumps(args or {}))


def until(condition, what: str, timeout: float = 30) -> None:
    """Wait for a thread's effect (not a timing assertion: the bound only stops a hung test)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


class Held:
    """A tool that runs until the test lets it go."""

    def __init__(self, name: str = "held") -> None:
        self.started, self.go, self.calls = threading.Event(), threading.Event(), 0
        self.tool = Tool(ToolSpec(name, "waits", {"type": "object", "properties": {}}), self.run)

    def run(self, args: dict) -> str:
        self.calls += 1
        self.started.set()
        self.go.wait(30)
        return "let go"


# the bound on calls in flight, and the refusal of tools that need a yes (fast tier) --------------------
@pytest.mark.fast
def test_the_gate_refuses_past_its_slots_and_lets_a_waiting_call_in_when_one_frees():
    gate = Gate(2, wait_s=0)
    assert gate.enter() and gate.enter() and gate.busy == 2
    assert not gate.enter(), "every slot taken, no wait: refused at once"
    assert "2 tool calls" in gate.refusal() and "tools.server_concurrency" in gate.refusal()
    gate.leave()
    assert gate.enter() and gate.busy == 2

    patient = Gate(1, wait_s=60)
    assert patient.enter()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(patient.enter()))
    waiter.start()
    patient.leave()
    waiter.join(30)
    assert got == [True] and patient.busy == 1, "the waiting call takes the slot that freed"
    assert not patient.enter(cancelled=lambda: True), "an interrupted turn stops waiting"


@pytest.mark.fast
def test_a_call_over_the_bound_gets_a_refusal_result_and_the_slot_is_held_until_the_tool_returns():
    held, other = Held(), Held("other")
    other.go.set()
    box = ToolBox([held.tool, other.tool], gate=Gate(1, wait_s=0), timeout=30)
    results = []
    first = threading.Thread(target=lambda: results.append(box.run(call("held"))))
    try:
        first.start()
        assert held.started.wait(30)
        refused = box.run(call("other"))  # another session, while the one slot is taken
        assert refused.error and "tools.server_concurrency" in refused.text and other.calls == 0, "refused, not run"
        held.go.set()
        first.join(30)
        assert results[0].text == "let go" and not results[0].error
        until(lambda: box.gate is not None and box.gate.busy == 0, "the slot freed")
        assert box.run(call("other")).text == "let go", "the slot is free again"

        held.started.clear()
        held.go.clear()
        stop = threading.Event()
        interrupted = threading.Thread(target=lambda: results.append(box.run(call("held"), cancelled=stop.is_set)))
        interrupted.start()
        assert held.started.wait(30)
        stop.set()  # the turn is interrupted: the conversation stops waiting, the tool itself still runs
        interrupted.join(30)
        assert results[-1].error and "interrupted" in results[-1].text
        assert box.gate is not None and box.gate.busy == 1, "a tool still running holds its slot"
        assert "tools.server_concurrency" in box.run(call("other")).text
        held.go.set()
        until(lambda: box.gate is not None and box.gate.busy == 0, "the slot freed when the tool returned")
    finally:
        held.go.set()
        box.close()


@pytest.mark.fast
def test_a_tool_that_needs_a_yes_is_refused_in_a_server_session_unless_the_config_names_it():
    ran = []
    note = Tool(
        ToolSpec("write_note", "saves", {"type": "object", "properties": {}}), lambda a: ran.append(a) or "saved", "mcp:notes", confirm=True
    )
    box = ToolBox([note], gate=Gate(2, wait_s=0))
    try:
        box.confirm = ServerConfirmation(names(" other , "))
        refused = box.run(call("write_note"))
        assert refused.error and not ran
        assert "needs a person's yes" in refused.text and "tools.server_allow" in refused.text
        box.confirm = ServerConfirmation(names("other,write_note"))
        assert box.run(call("write_note")).text == "saved" and len(ran) == 1
    finally:
        box.close()
    with pytest.raises(ToolError):
        ServerConfirmation(set())(note, {})


@pytest.mark.fast
def test_server_tools_follow_the_config():
    from voicechat.serve.tools import open_server_tools

    class Chat:
        supports_tools = True

    said: list[str] = []
    cfg = resolve(environ={}, overrides={"tools.builtin": "wikipedia", "tools.server_allow": "wikipedia,nope"})
    assert open_server_tools(cfg, Chat(), said.append) is None and not said, "tools.enabled is off"  # type: ignore[arg-type]
    cfg.tools.enabled = True
    Chat.supports_tools = False
    assert open_server_tools(cfg, Chat(), said.append) is None and "cannot call tools" in said[0]  # type: ignore[arg-type]
    said.clear()
    Chat.supports_tools = True
    cfg.tools.server_concurrency = 3
    box = open_server_tools(cfg, Chat(), said.append)  # type: ignore[arg-type]
    try:
        assert box is not None and box.gate is not None and box.gate.slots == 3 and isinstance(box.confirm, ServerConfirmation)
        assert said == [
            "tools.server_allow names nope, which no tool offered here is called",
            "tools for voice sessions: wikipedia (3 calls at a time)",
        ]
    finally:
        if box is not None:
            box.close()


# a real server ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat():
    with OpenAILikeServer() as server:
        yield server


@pytest.fixture(scope="module")
def served(chat, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve-tools")
    (work / "notes").mkdir()
    starts = work / "mcp-starts.txt"
    config = f"""
llm:
  engine: openai
  base_url: {chat.base_url}
  retries: 0
tools:
  enabled: true
  builtin: calculator
  server_concurrency: 2
  mcp:
    notes:
      command: {json.dumps(sys.executable)}
      args: [-c, {json.dumps(COUNTED)}, {json.dumps(str(starts))}, {json.dumps(SERVER)}]
      env: {{NOTES_DIR: {json.dumps(str(work / "notes"))}}}
      allow: [add, write_note]
      timeout: 60  # a loaded machine takes seconds to start Python and the mcp package
"""
    server = ServeProcess(work / "serve", config=config, env={"OPENAI_API_KEY": "unused"})
    server.starts, server.notes = starts, work / "notes"  # type: ignore[attr-defined]
    with server:
        yield server


def turn(client: VoiceClient, text: str, after: dict | None = None) -> dict:
    client.send({"type": "text", "text": text})
    return client.wait_for(lambda e: e["type"] == "reply", after=after)


def test_voice_sessions_share_the_servers_tools_and_mcp_server(served, chat):
    """Two sessions call an MCP tool and a built-in through one MCP server process; a tool that needs a yes
    is refused; the MCP server stops with the server."""
    chat.script = [
        ToolCalls(("add", '{"a": 19, "b": 23}'), ("calculator", '{"expression": "6 * 7"}')),
        "Both say {tool}",
        ToolCalls(("write_note", '{"text": "pwned"}')),
        "I could not save it.",
        ToolCalls(("add", '{"a": 1, "b": 2}')),
        "It is {tool}",
    ]
    first = VoiceClient(served.url)
    try:
        hello = first.wait_for(lambda e: e["type"] == "session")
        assert hello["tools"] == ["calculator", "add", "write_note"]
        reply = turn(first, "Add 19 and 23, and work out 6 times 7.")
        calls = [e for e in first.events if e["type"] in ("tool_call", "tool_result")]
        assert [(e["type"], e["name"]) for e in calls] == [
            ("tool_call", "add"),
            ("tool_result", "add"),
            ("tool_call", "calculator"),
            ("tool_result", "calculator"),
        ]
        assert calls[0]["arguments"] == '{"a": 19, "b": 23}', "the shape talk --json prints"
        assert calls[1]["result"] == "19 + 23 = 42" and not calls[1]["error"] and "seconds" in calls[1]
        assert calls[3]["result"].endswith("42") and not calls[3]["error"]
        assert reply["text"].startswith("Both say")

        refused_turn = turn(first, "Save a note saying pwned.", after=reply)
        refused = next(e for e in first.events if e["type"] == "tool_result" and e["name"] == "write_note")
        assert refused["error"] and "tools.server_allow" in refused["result"] and "needs a person's yes" in refused["result"]
        assert refused_turn["text"] == "I could not save it." and not (served.notes / "note.txt").exists()

        second = VoiceClient(served.url)  # a second session while the first is open: the same MCP server
        try:
            turn(second, "What is 1 plus 2?")
            assert [e["result"] for e in second.of("tool_result")] == ["1 + 2 = 3"]
        finally:
            second.close()
    finally:
        first.close()
    pids = served.starts.read_text().split()
    assert len(pids) == 1, "the MCP server was started once for the server, not once per session"
    assert served.stop() == 0
    assert not _alive(int(pids[0])), "the MCP server stopped with the server"
    assert "tools for voice sessions: calculator, add, write_note" in served.log_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_on_a_port_in_use_says_so_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env={"VOICECHAT_HISTORY_ENABLED": "false"}, timeout=120)
    err = result.stderr.decode()
    assert result.returncode != 0
    assert_one_line_error(err, f"port {port} is in use: stop what runs there or pass --port N")
    assert err.strip().splitlines() == [f"voicechat: error: port {port} is in use: stop what runs there or pass --port N"], err
