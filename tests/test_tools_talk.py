"""Tool calls in a voice session (the core `talk` runs): events for the live view and --json, the reply
spoken after the tool returns, a spoken filler over a slow call, one line for a failure, the history."""

from __future__ import annotations

import json
import threading
import time

from tests.mediawiki import MediaWikiServer
from tests.servers import OpenAILikeServer, ToolCalls
from tests.voice_fakes import RecordingSink, ScriptedSTT, ScriptedTTS
from voicechat.config import resolve
from voicechat.conversation.chat import Conversation
from voicechat.conversation.history import History
from voicechat.engines import registry
from voicechat.talk import render
from voicechat.tools.box import build
from voicechat.voice import events as ev
from voicechat.voice.session import VoiceSession


class Talk:
    def __init__(self, server, wiki, tmp_path, **over) -> None:
        self.cfg = resolve(
            environ={},
            overrides={
                "llm.engine": "openai",
                "llm.base_url": server.base_url,
                "llm.retries": 0,
                "turn.audio_model": False,
                "tools.enabled": True,
                "tools.builtin": "wikipedia,calculator",
                "tools.wikipedia_url": wiki.url,
                **over,
            },
        )
        self.history = History(tmp_path / "h.sqlite3")
        self.box = build(self.cfg, print)
        self.chat = Conversation(self.cfg, registry.create("llm", self.cfg), kind="talk", log=True, history=self.history, tools=self.box)
        self.sink = RecordingSink()
        self.session = VoiceSession(self.cfg, conversation=self.chat, stt=ScriptedSTT(""), tts=ScriptedTTS(), source=None, sink=self.sink)
        self.events: list[ev.Event] = []
        self.lock = threading.Lock()
        self.session.subscribe(self._on)
        self.session.start()

    def _on(self, e: ev.Event) -> None:
        with self.lock:
            self.events.append(e)

    def turn(self, text: str) -> ev.ReplyDone:
        before = len(self.of(ev.ReplyDone))
        self.session.send_text(text)
        deadline = time.monotonic() + 30
        while len(self.of(ev.ReplyDone)) == before:
            assert time.monotonic() < deadline, self.events
            time.sleep(0.02)
        return self.of(ev.ReplyDone)[-1]

    def of(self, kind):
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]

    def close(self) -> None:
        self.session.close()
        self.box.close()
        self.history.close()


def test_a_tool_call_is_shown_then_the_reply_is_spoken_after_it(tmp_path):
    with OpenAILikeServer() as server, MediaWikiServer() as wiki:
        server.script = [ToolCalls(("wikipedia", '{"query": "Ada Lovelace"}')), "She wrote the first program."]
        talk = Talk(server, wiki, tmp_path)
        try:
            done = talk.turn("who was Ada Lovelace")
        finally:
            talk.close()
    kinds = [type(e).__name__ for e in talk.events if isinstance(e, (ev.UserText, ev.ToolCalled, ev.ToolDone, ev.ReplyDone))]
    assert kinds == ["UserText", "ToolCalled", "ToolDone", "ReplyDone"]
    called, result = talk.of(ev.ToolCalled)[0], talk.of(ev.ToolDone)[0]
    assert called.to_dict() == {"type": "tool_call", "name": "wikipedia", "arguments": '{"query": "Ada Lovelace"}'}
    as_json = result.to_dict()
    assert as_json["type"] == "tool_result" and as_json["error"] is False and "Analytical Engine" in as_json["result"]
    assert done.text == "She wrote the first program.", "no filler for a fast call: only the reply was spoken"
    assert [c.text for c in talk.sink.chunks] == ["She wrote the first program."]
    with History(tmp_path / "h.sqlite3") as history:
        [turn] = history.turns(talk.chat.session_id)
    assert turn.tools[0]["name"] == "wikipedia" and "Analytical Engine" in turn.tools[0]["result"]
    stats = talk.of(ev.TurnStats)[0]
    assert stats.prompt_tokens == 60, "the tool round's tokens are in the turn's count"


def test_a_slow_call_is_covered_by_a_spoken_filler(tmp_path):
    with OpenAILikeServer() as server, MediaWikiServer() as wiki:
        wiki.mode, wiki.delay = "slow", 1.0
        server.script = [ToolCalls(("wikipedia", '{"query": "Eiffel Tower"}')), "It is in Paris."]
        talk = Talk(server, wiki, tmp_path, **{"tools.filler_after_s": 0.2, "tools.timeout": 5})
        try:
            done = talk.turn("where is the Eiffel Tower")
        finally:
            talk.close()
    assert [c.text for c in talk.sink.chunks] == ["Let me look that up.", "It is in Paris."]
    assert done.text == "Let me look that up. It is in Paris."
    assert not talk.of(ev.ToolDone)[0].error


def test_a_failing_tool_is_one_line_and_the_model_hears_the_error(tmp_path, capsys):
    with OpenAILikeServer() as server, MediaWikiServer() as wiki:
        wiki.mode = "503"
        server.script = [ToolCalls(("wikipedia", '{"query": "Eiffel Tower"}')), "Sorry: {tool}"]
        talk = Talk(server, wiki, tmp_path)
        try:
            done = talk.turn("where is the Eiffel Tower")
        finally:
            talk.close()
    result = talk.of(ev.ToolDone)[0]
    assert result.error and result.result.startswith("Wikipedia answered HTTP 503")
    assert done.text.startswith("Sorry: error: Wikipedia answered HTTP 503")
    assert not talk.of(ev.Error) and not talk.session.errors, "a tool failure is not a session error"
    plain = render.PlainRenderer()
    for e in talk.events:
        plain(e)
    err = capsys.readouterr().err.splitlines()
    tool_lines = [line for line in err if line.startswith("⚙")]
    assert tool_lines == [
        '⚙ wikipedia {"query": "Eiffel Tower"}',
        "⚙ wikipedia failed: Wikipedia answered HTTP 503 (Service Unavailable); try again later",
    ]


def test_json_lines_carry_tool_events(capsys):
    out = render.JsonRenderer()
    out(ev.ToolCalled("calculator", '{"expression": "1+1"}'))
    out(ev.ToolDone("calculator", "1+1 = 2", False, 0.0123))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"type": "tool_call", "name": "calculator", "arguments": '{"expression": "1+1"}'},
        {"type": "tool_result", "name": "calculator", "result": "1+1 = 2", "error": False, "seconds": 0.012},
    ]


def test_the_live_view_shows_calls_as_plain_text(capsys):
    live = render.LiveRenderer()  # not entered: prints straight to the console
    live(ev.ToolCalled("notes", '{"q": "[bold]x[/bold]"}'))
    live(ev.ToolDone("notes", "[red]not markup[/red] " + "long " * 100, False, 0.5))
    live(ev.ToolDone("notes", "the server is down", True, 0.1))
    out = capsys.readouterr().out
    assert '⚙ notes {"q": "[bold]x[/bold]"}' in out and "⚙ notes → [red]not markup[/red] long" in out
    assert "…" in out and "(0.50 s)" in out and "⚙ notes failed: the server is down" in out


def test_talk_tools_flag_end_to_end_with_typed_input():
    """`voicechat talk --tools` with no sound devices: typed message, the bundled model forced to call the
    calculator, the call shown on stderr, the reply printed, the call in the history."""
    from tests.helpers import run_cli
    from voicechat import paths

    env = {
        "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf",
        "VOICECHAT_LLM_MAX_TOKENS": "48",
        "VOICECHAT_LLM_TEMPERATURE": "0",
        "VOICECHAT_TOOLS_BUILTIN": "calculator",
        "VOICECHAT_TOOLS_FORCE": "calculator",
        "VOICECHAT_TOOLS_MAX_CALLS": "1",
        "VOICECHAT_LLM_SYSTEM_PROMPT": "You are a helpful assistant.",
    }
    result = run_cli("talk", "--tools", input=b"What is 12 times 7?\n", env=env)
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, err
    assert "you: What is 12 times 7?" in out and "assistant: " in out
    assert '⚙ calculator {"expression": "' in err and ("⚙ calculator →" in err or "⚙ calculator failed:" in err), err
    with History(paths.history_db()) as history:
        [turn] = history.turns(history.last_session_id())
    assert turn.tools[0]["name"] == "calculator" and turn.tools[0]["arguments"].startswith('{"expression": "')
