"""MCP servers from the config: a stdio server the test starts (and one over Streamable HTTP on loopback),
the allow-list, the per-server switch, confirmation for tools that change things, failures."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

from tests.helpers import ROOT
from tests.servers import OpenAILikeServer, ToolCalls
from voicechat.config import resolve
from voicechat.conversation.chat import Conversation
from voicechat.conversation.history import History
from voicechat.engines import registry
from voicechat.engines.base import ToolCall
from voicechat.tools.box import build
from voicechat.tools.confirm import PromptConfirmation, TypedConfirmation

SERVER = str(ROOT / "tests" / "mcp_server.py")


def stdio(notes, **extra):
    # a generous start-up deadline: a loaded machine took 10 s to start this Python server (the default)
    return {"command": sys.executable, "args": [SERVER], "env": {"NOTES_DIR": str(notes)}, "timeout": 60, **extra}


def config(mcp: dict, **over):
    cfg = resolve(environ={}, overrides={"tools.enabled": True, "tools.builtin": "calculator", **over})
    cfg.tools.mcp = mcp
    return cfg


def call(name, args=None):
    return ToolCall("c1", name, json.dumps(args or {}))


def test_stdio_server_tools_are_offered_through_the_allow_list(tmp_path):
    notices = []
    box = build(config({"notes": stdio(tmp_path, allow=["add", "write_note", "nope"])}), notices.append)
    try:
        assert [s.name for s in box.specs()] == ["calculator", "add", "write_note"], "secret, fail, orders are not allowed"
        assert notices == ["MCP server 'notes' has no tool named nope (tools.mcp.notes.allow)"]
        assert box.run(call("add", {"a": 2, "b": 40})).text == "2 + 40 = 42"
        refused = box.run(call("secret"))
        assert refused.error and "no tool named 'secret'" in refused.text, "not on the allow-list: never called"
        assert box.tools["add"].source == "mcp:notes" and not box.tools["add"].confirm, "read-only: no question"
        assert box.tools["write_note"].confirm, "changes something: asks"
    finally:
        box.close()


def test_a_tool_that_changes_things_asks_in_the_terminal(tmp_path):
    box = build(config({"notes": stdio(tmp_path, allow=["write_note"])}), print)
    asked = []
    try:
        box.confirm = PromptConfirmation(lambda q: asked.append(q) or "n")
        refused = box.run(call("write_note", {"text": "hello"}))
        assert refused.error and refused.text == "the user did not allow this call" and not (tmp_path / "note.txt").exists()
        assert asked == ['allow write_note (mcp:notes) with {"text": "hello"}? [y/N] ']
        box.confirm = PromptConfirmation(lambda q: "y")
        assert box.run(call("write_note", {"text": "hello"})).text == "saved 5 characters"
        assert (tmp_path / "note.txt").read_text() == "hello"
        box.confirm = None  # no terminal to ask (piped chat, --json): refused
        assert "no terminal to ask" in box.run(call("write_note", {"text": "x"})).text
        assert (tmp_path / "note.txt").read_text() == "hello"
    finally:
        box.close()


def test_confirm_false_in_the_config_runs_without_asking(tmp_path):
    box = build(config({"notes": stdio(tmp_path, allow=["write_note"], confirm=False)}), print)
    try:
        assert box.confirm is None and box.run(call("write_note", {"text": "direct"})).text == "saved 6 characters"
        assert (tmp_path / "note.txt").read_text() == "direct"
    finally:
        box.close()


def test_talk_takes_the_next_typed_line_as_the_answer():
    said, stop = [], threading.Event()
    ask = TypedConfirmation(said.append, stop, wait_s=5)
    from voicechat.engines.base import ToolSpec
    from voicechat.tools.base import Tool

    tool = Tool(ToolSpec("write_note", "saves"), lambda a: "", source="mcp:notes", confirm=True)
    assert not ask.answer("y"), "no question waiting: the line is an ordinary message"
    threading.Timer(0.2, lambda: ask.answer("yes")).start()
    assert ask(tool, {"text": "hi"}) and "allow write_note (mcp:notes)" in said[0]
    threading.Timer(0.2, lambda: ask.answer("no")).start()
    assert not ask(tool, {"text": "hi"})
    stop.set()
    assert not ask(tool, {"text": "hi"}), "the session ending is a no"


def test_failures_switch_and_a_server_that_will_not_start(tmp_path):
    notices = []
    box = build(
        config(
            {
                "gone": {"command": str(tmp_path / "no-such-server")},
                "off": stdio(tmp_path, enabled=False),
                "notes": stdio(tmp_path, allow=["fail", "orders"]),
            }
        ),
        notices.append,
    )
    try:
        assert len(notices) == 1 and notices[0].startswith("MCP server 'gone' is left out: cannot start or reach it"), notices
        assert [s.name for s in box.specs()] == ["calculator", "fail", "orders"], "'off' is not started"
        failed = box.run(call("fail"))
        assert failed.error and failed.text.startswith("'fail' on MCP server 'notes' failed:")
    finally:
        box.close()


def test_an_mcp_result_reaches_the_reply_and_the_history(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    with OpenAILikeServer() as server:
        server.script = [
            ToolCalls(("add", '{"a": 19, "b": 23}')),
            "The sum: {tool}",
            ToolCalls(("orders", "{}")),
            ToolCalls(("write_note", '{"text": "pwned"}')),
            "Done.",
        ]
        cfg = config(
            {"notes": stdio(tmp_path, allow=["add", "orders", "write_note"])},
            **{"llm.engine": "openai", "llm.base_url": server.base_url, "llm.retries": 0},
        )
        box = build(cfg, print)
        session = Conversation(cfg, registry.create("llm", cfg), kind="chat", log=True, history=history, tools=box)
        try:
            reply = session.stream_reply("add 19 and 23", lambda d: None)
            session.record("add 19 and 23", reply.text, reply.usage, tools=reply.tools)
            # a result that gives orders: the model obeys, but the change needs the user's yes, and there is nobody to ask
            second = session.stream_reply("read the orders", lambda d: None)
            session.record("read the orders", second.text, second.usage, tools=second.tools)
        finally:
            box.close()
    assert reply.text == "The sum: 19 + 23 = 42"
    assert [t.name for t in second.tools] == ["orders", "write_note"] and second.tools[1].error
    assert not (tmp_path / "note.txt").exists()
    turns = history.turns(session.session_id)
    assert turns[0].tools == [reply.tools[0].to_dict()] and turns[0].tools[0]["source"] == "mcp:notes"
    assert turns[0].tools[0]["result"] == "19 + 23 = 42" and turns[0].assistant_text == "The sum: 19 + 23 = 42"
    assert "needs the user's yes" in turns[1].tools[1]["result"]
    history.close()


def test_the_bundled_model_calls_an_mcp_tool(tmp_path):
    cfg = config(
        {"notes": stdio(tmp_path, allow=["add"])},
        **{"tools.builtin": "", "tools.force": "add", "tools.max_calls": 1, "llm.max_tokens": 40, "llm.temperature": 0},
    )
    llm = registry.create("llm", cfg)
    box = build(cfg, print)
    try:
        reply = Conversation(cfg, llm, kind="chat", log=False, tools=box).stream_reply("What is 2 plus 3?", lambda d: None)
    finally:
        box.close()
        llm.close()
    [made] = reply.tools
    args = json.loads(made.arguments)  # the grammar holds the model to the server's schema: two integers
    assert made.name == "add" and not made.error and made.text == f"{args['a']} + {args['b']} = {args['a'] + args['b']}"


def test_http_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, SERVER, "http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the MCP HTTP server did not start"
                time.sleep(0.1)
        box = build(config({"web": {"url": f"http://127.0.0.1:{port}/mcp", "allow": ["add"]}}), print)
        try:
            assert [s.name for s in box.specs()] == ["calculator", "add"]
            assert box.run(call("add", {"a": 1, "b": 2})).text == "1 + 2 = 3"
        finally:
            box.close()
    finally:
        proc.terminate()
        proc.wait(10)
