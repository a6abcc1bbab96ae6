"""`/v1/realtime` function calling, conversation.item.retrieve/delete and the beta interface (issue 23): the
official `openai` SDK's realtime clients (GA sync and async, and beta), unchanged but for the URL, against a real
`voicechat serve` with the bundled models and the built-in calculator; and the pure parts on their own (fast tier).

SmolLM2 (135M) calls a tool reliably only when told which: the tests name the function in tool_choice, as a
client may, and ask the continuation with tool_choice none, so that the model answers from the result."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.rtsdk import collect
from tests.serveproc import ServeProcess
from voicechat.engines.base import Message, ToolCall
from voicechat.serve import realtime_beta as beta
from voicechat.serve import realtime_events as rt
from voicechat.serve import realtime_tools as tools
from voicechat.serve.realtime_memory import NO_RESULT, ItemMemory, ItemStore

KEY = "realtime-tools-key"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather now in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
FORECAST = {"city": "Paris", "sky": "sunny", "temperature_c": 31}


# --- the pure parts, no models ----------------------------------------------------------------------


@pytest.mark.fast
def test_tools_and_tool_choice_are_checked_and_reported_as_the_api_shapes_them():
    offer = tools.parse_offer(
        {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"}}, tools.Offer(), "session", set(), True
    )
    assert offer is not None and offer.choice == "get_weather" and offer.client["get_weather"].parameters == WEATHER["parameters"]
    assert offer.to_session() == {
        "tools": [{k: WEATHER[k] for k in ("type", "name", "description", "parameters")}],
        "tool_choice": {"type": "function", "name": "get_weather"},
    }
    assert tools.parse_offer({"instructions": "x"}, offer, "session", set(), True) is None  # neither field: unchanged
    assert tools.parse_offer({"tool_choice": "calculator"}, offer, "response", {"calculator"}, True).choice == "calculator"  # a server tool
    for params, server, can_call, param in [
        ({"tools": [{"type": "mcp", "server_label": "x"}]}, set(), True, "session.tools[0]"),
        ({"tools": [{**WEATHER, "name": "no spaces"}]}, set(), True, "session.tools[0].name"),
        ({"tools": [WEATHER]}, {"get_weather"}, True, "session.tools[0].name"),  # the server's own tool
        ({"tools": [WEATHER]}, set(), False, "session.tools"),  # an engine that cannot call tools
        ({"tool_choice": {"type": "function", "name": "nope"}}, set(), True, "session.tool_choice"),
        ({"tool_choice": "sometimes!"}, set(), True, "session.tool_choice"),
        ({"tools": "all"}, set(), True, "session.tools"),
    ]:
        with pytest.raises(rt.UpdateRefused) as e:
            tools.parse_offer(params, tools.Offer(), "session", server, can_call)
        assert e.value.param == param, params


@pytest.mark.fast
def test_a_function_call_streams_as_the_api_sends_it_and_its_output_is_an_item():
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    out = tools.call_events("resp_1", 1, "item_2", call, "item_1")
    assert [d["type"] for d in out] == [
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
    ]
    done = out[3]
    assert (done["response_id"], done["item_id"], done["output_index"], done["call_id"]) == ("resp_1", "item_2", 1, "call_1")
    assert done["name"] == "get_weather" and json.loads(done["arguments"]) == {"city": "Paris"}
    assert out[0]["item"]["status"] == "in_progress" and out[0]["item"]["arguments"] == ""
    assert out[-1]["item"] == {**out[0]["item"], "status": "completed", "arguments": '{"city": "Paris"}'}
    assert out[1]["previous_item_id"] == "item_1"
    output = tools.output_events("item_3", "call_1", "sunny", "item_2")
    assert [d["type"] for d in output] == ["conversation.item.added", "conversation.item.done"]
    assert (
        output[0]["item"]["type"] == "function_call_output"
        and output[0]["item"]["call_id"] == "call_1"
        and output[0]["item"]["output"] == "sunny"
    )


def memory() -> ItemMemory:
    return ItemMemory(system_prompt="Be brief.", max_rounds=8, max_context_tokens=4000)


@pytest.mark.fast
def test_a_call_the_client_runs_keeps_the_exchange_open_until_its_output_is_answered():
    m = memory()
    m.user_ids, m.assistant_id = ["item_u"], "item_a"
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    m.handed.append(("item_c", call))
    m.add("What is the weather in Paris?", "")  # the turn ended at the call
    assert m.waiting() == {"call_1": call} and not m.answered()
    unanswered = m.messages_for("")
    assert unanswered[-1] == Message("tool", NO_RESULT, tool_call_id="call_1", name="get_weather")  # every call gets a result
    assert not m.output("item_o", "call_9", "?")  # no such call waits
    assert m.output("item_o", "call_1", json.dumps(FORECAST)) and m.answered() and not m.waiting()
    roles = [(x.role, x.content) for x in m.messages_for("")]  # the continuation: no new user message
    assert roles[0] == ("system", "Be brief.") and roles[1] == ("user", "What is the weather in Paris?")
    assert roles[2] == ("assistant", "") and m.messages_for("")[2].tool_calls == (call,) and roles[3] == ("tool", json.dumps(FORECAST))
    m.assistant_id = "item_a2"
    m.add("", "Sunny, 31 degrees.")  # answered in words: one round, like any other
    assert m.rounds == [("What is the weather in Paris?", "Sunny, 31 degrees.")] and m.ids == [(["item_u"], "item_a2")] and not m.tail
    assert [x.role for x in m.messages_for("And tomorrow?")] == ["system", "user", "assistant", "user"]


@pytest.mark.fast
def test_a_deleted_item_leaves_what_the_model_reads():
    m = memory()
    for n, (q, a) in enumerate([("My name is Ada.", "Hello Ada."), ("I like tea.", "Noted.")]):
        m.user_ids, m.assistant_id = [f"u{n}"], f"a{n}"
        m.add(q, a)
    assert m.delete("u0") and [x.content for x in m.messages_for("Hi")] == ["Be brief.", "Hello Ada.", "I like tea.", "Noted.", "Hi"]
    assert m.delete("a0") and m.rounds == [("I like tea.", "Noted.")] and m.ids == [(["u1"], "a1")]  # nothing left of it
    assert not m.delete("u0") and not m.delete("nope")
    m.rounds.pop()  # (a truncate that heard nothing drops the last round: the ids follow)
    assert not m.delete("a1") and m.ids == []
    m.user_ids = ["u2"]
    m.handed.append(("c2", ToolCall("call_2", "get_weather", "{}")))
    m.add("Weather?", "")
    m.output("o2", "call_2", "rain")
    assert m.delete("o2") and not m.answered() and m.messages_for("")[-1].content == NO_RESULT  # the output is gone
    assert m.delete("c2") and [x.role for x in m.messages_for("")] == ["system", "user"]  # and the call


@pytest.mark.fast
def test_a_response_that_only_calls_a_client_function_is_that_call_alone_and_a_server_tool_keeps_the_message():
    import threading
    from types import SimpleNamespace

    from voicechat.voice import events as ev

    settings = rt.Settings(model="m", voice="joe", instructions="", silence_ms=600)
    conn = SimpleNamespace(translator=rt.Translator(settings), _lock=threading.Lock(), sent=[])
    conn.session = SimpleNamespace(conversation=SimpleNamespace(config=SimpleNamespace(tools=SimpleNamespace(force=None))))
    state = tools.RealtimeState(conn, memory(), True)
    conn._emit = lambda docs: conn.sent.extend(out for d in docs for out in state.seen(d))
    state.box = tools.SessionTools(None, state)
    state.offer = tools.parse_offer({"tools": [WEATHER], "tool_choice": "required"}, tools.Offer(), "session", set(), True)
    t = conn.translator
    conn._emit(t.user_text_item("item_q", "Weather in Paris?"))
    t.requested.append(rt.ResponseOptions())
    conn._emit(t.translate(ev.UserText("Weather in Paris?", "typed")))
    assert conn.session.conversation.config.tools.force == "required"
    result = state.box.run(ToolCall("call_1", "get_weather", '{"city": "Paris"}'))
    assert result.handed_off and state.memory.handed[0][1].id == "call_1"
    conn._emit(t.translate(ev.ReplyDone("")))
    conn._emit(t.translate(ev.TurnStats(prompt_tokens=9, completion_tokens=3)))
    types = [d["type"] for d in conn.sent]
    assert types[2:] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    call = conn.sent[-2]["item"]
    assert conn.sent[3]["output_index"] == 0 and conn.sent[4]["previous_item_id"] == "item_q"  # no message before it
    assert conn.sent[-1]["response"]["output"] == [call] and conn.sent[-1]["response"]["status"] == "completed"
    assert state.items.get(call["id"]) == call and state.items.get(t.last_item) == call

    conn.sent.clear()  # a server tool's answer follows its call in the message, which opens first
    state.box.server = None
    conn._emit(t.user_text_item("item_q2", "And 2 + 2?"))
    t.requested.append(rt.ResponseOptions())
    conn._emit(t.translate(ev.UserText("And 2 + 2?", "typed")))
    state.box.offer = tools.Offer()  # (not the client's: run here)
    state.box.run(ToolCall("call_2", "calculator", '{"expression": "2 + 2"}'))
    conn._emit(t.translate(ev.ReplyDelta("Four.")))
    conn._emit(t.translate(ev.ReplyDone("Four.")))
    conn._emit(t.translate(ev.TurnStats()))
    by_type = [d["type"] for d in conn.sent]
    assert by_type.index("response.output_item.added") < by_type.index("response.function_call_arguments.done")
    output = conn.sent[-1]["response"]["output"]
    assert [i["type"] for i in output] == ["message", "function_call"] and output[1]["call_id"] == "call_2"
    outputs = [d["item"] for d in conn.sent if d["type"] == "conversation.item.done" and d["item"]["type"] == "function_call_output"]
    assert outputs[0]["call_id"] == "call_2" and outputs[0]["output"].startswith("error: there is no tool")


@pytest.mark.fast
def test_the_item_store_keeps_the_latest_form_of_each_item_within_a_bound():
    store = ItemStore(limit=2)
    for n in range(3):
        store.seen({"type": "conversation.item.added", "item": {"id": f"i{n}", "status": "in_progress"}})
    store.seen({"type": "conversation.item.done", "item": {"id": "i2", "status": "completed"}})
    store.seen({"type": "response.output_item.done", "item": {"id": "i9"}})  # (announced as a conversation item too)
    assert store.get("i0") is None and store.get("i2") == {"id": "i2", "status": "completed"} and store.get("i9") is None
    assert store.remove("i1") and not store.remove("i1")


@pytest.mark.fast
def test_the_beta_dialect_renames_events_and_reshapes_sessions_and_responses():
    assert beta.wanted({"openai-beta": "realtime=v1"}) and beta.wanted({"sec-websocket-protocol": "realtime, openai-beta.realtime-v1"})
    assert not beta.wanted({"authorization": "Bearer x"})
    settings = rt.Settings(model="m", voice="joe", instructions="Be brief.", silence_ms=600)
    ga = {"type": "session.created", "session": {**settings.to_dict("sess_1"), **tools.Offer().to_session()}}
    s = beta.to_beta(ga)["session"]
    assert s["modalities"] == ["audio", "text"] and s["voice"] == "joe" and s["input_audio_format"] == s["output_audio_format"] == "pcm16"
    assert s["turn_detection"]["type"] == "server_vad" and s["tool_choice"] == "auto" and "audio" not in s
    assert beta.to_beta({"type": "response.output_audio_transcript.delta", "delta": "Hi"})["type"] == "response.audio_transcript.delta"
    assert beta.to_beta({"type": "response.output_text.done", "text": "Hi"})["type"] == "response.text.done"
    assert beta.to_beta({"type": "conversation.item.done", "item": {"id": "x"}}) is None
    added = beta.to_beta(
        {"type": "conversation.item.added", "item": {"id": "x", "content": [{"type": "output_audio", "transcript": "Hi"}]}}
    )
    assert added["type"] == "conversation.item.created" and added["item"]["content"] == [{"type": "audio", "transcript": "Hi"}]
    r = beta.to_beta(
        {"type": "response.done", "response": {"output_modalities": ["text"], "audio": {"output": {"voice": "joe"}}, "output": []}}
    )
    assert r["response"]["modalities"] == ["text"] and r["response"]["voice"] == "joe" and "output_modalities" not in r["response"]
    update = beta.session_from_beta({"modalities": ["text"], "input_audio_format": "g711_ulaw", "voice": "alloy", "turn_detection": None})
    assert update == {
        "type": "realtime",
        "output_modalities": ["text"],
        "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None}, "output": {"voice": "alloy"}},
    }
    rt.apply_update(settings, update)  # the GA check takes it
    assert settings.input_format == "audio/pcmu" and settings.output_modalities == ["text"] and not settings.turn_detection
    assert beta.response_from_beta({"modalities": ["audio", "text"], "instructions": "x"}) == {
        "output_modalities": ["audio"],
        "instructions": "x",
    }


# --- the official SDK against a real server -------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    config = f"llm:\n  max_tokens: 40\nserve:\n  api_key: {KEY}\n  idle_timeout_s: 60\ntools:\n  enabled: true\n  builtin: calculator\n"
    with ServeProcess(tmp_path_factory.mktemp("realtime_tools"), config=config) as server:
        yield server
    assert "Traceback" not in server.log_text(), server.log_text()


def ask(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def test_official_sdk_function_call_round_trip_the_client_runs_the_function_and_the_spoken_answer_uses_it(served):
    from openai import OpenAI

    client = OpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0)
    with client.realtime.connect(model="gpt-realtime") as conn:
        assert conn.recv().type == "session.created"
        conn.session.update(session={"type": "realtime", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"}})
        updated = conn.recv()
        assert updated.type == "session.updated" and updated.session.tools[0].name == "get_weather"
        assert updated.session.tool_choice.name == "get_weather"
        conn.conversation.item.create(item=ask("What is the weather in Paris?"))
        conn.response.create()
        called = collect(conn, "response.done")
        types = [e.type for e in called]
        done = next(e for e in called if e.type == "response.function_call_arguments.done")
        item = next(e for e in called if e.type == "response.output_item.done" and e.item.type == "function_call").item
        assert types.index("response.function_call_arguments.delta") < types.index("response.function_call_arguments.done")
        assert done.name == item.name == "get_weather" and done.call_id == item.call_id and done.item_id == item.id
        assert done.response_id == called[-1].response.id and item.status == "completed"
        assert isinstance(json.loads(done.arguments)["city"], str) and item.arguments == done.arguments
        assert any(e.type == "conversation.item.done" and e.item.id == item.id for e in called)
        response = called[-1].response
        assert response.status == "completed" and [i.type for i in response.output] == ["function_call"] and done.output_index == 0
        assert response.output[-1].call_id == done.call_id and "response.output_audio.delta" not in types  # nothing to say yet

        conn.conversation.item.create(item={"type": "function_call_output", "call_id": done.call_id, "output": json.dumps(FORECAST)})
        added = conn.recv()
        assert added.type == "conversation.item.added" and added.item.type == "function_call_output" and added.item.call_id == done.call_id
        assert conn.recv().type == "conversation.item.done"
        conn.response.create(response={"tool_choice": "none"})  # answer from the result, in words
        answer = collect(conn, "response.done")
    types = [e.type for e in answer]
    assert "conversation.item.added" not in types[: types.index("response.created")]  # no new user item: the exchange goes on
    assert "response.output_audio.delta" in types and answer[-1].response.status == "completed"
    transcript = next(e for e in answer if e.type == "response.output_audio_transcript.done").transcript.lower()
    assert "sunny" in transcript or "31" in transcript, transcript
    with sqlite3.connect(served.workdir / "history.sqlite3") as db:
        tools_json, reply = db.execute("SELECT tools, assistant_text FROM turns ORDER BY id DESC LIMIT 2").fetchall()[1]
    assert json.loads(tools_json)[0]["name"] == "get_weather" and json.loads(tools_json)[0]["source"] == "client"


def test_official_async_sdk_a_server_tool_runs_on_the_server_and_items_can_be_retrieved_and_deleted(served):
    import asyncio

    from openai import AsyncOpenAI

    async def talk() -> tuple[list, list]:
        client = AsyncOpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            assert (await conn.recv()).type == "session.created"
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            assert (await conn.recv()).type == "session.updated"
            await conn.conversation.item.create(item=ask("What is 12 times 7?"))
            await conn.response.create(response={"tool_choice": {"type": "function", "name": "calculator"}})
            events = []
            async for event in conn:
                assert event.type != "error", event
                events.append(event)
                if event.type == "response.done":
                    break
            call = next(e.item for e in events if e.type == "response.output_item.done" and e.item.type == "function_call")
            user = next(
                e.item for e in events if e.type == "conversation.item.added" and e.item.type == "message" and e.item.role == "user"
            )
            await conn.conversation.item.retrieve(item_id=call.id, event_id="evt_get")
            await conn.conversation.item.delete(item_id=user.id, event_id="evt_del")
            await conn.conversation.item.retrieve(item_id=user.id, event_id="evt_gone")  # deleted: unknown now
            await conn.conversation.item.delete(item_id="item_nope", event_id="evt_nope")
            return events, [await conn.recv() for _ in range(4)]

    events, answers = asyncio.run(asyncio.wait_for(talk(), 300))
    calls = [e.item for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"]
    outputs = [e.item for e in events if e.type == "conversation.item.done" and e.item.type == "function_call_output"]
    assert calls[0].name == "calculator" and "12" in json.loads(calls[0].arguments)["expression"]
    assert outputs[0].call_id == calls[0].call_id and "84" in outputs[0].output  # run here, shown as an item
    assert events[-1].response.status == "completed" and [i.type for i in events[-1].response.output][:2] == ["message", "function_call"]
    text = next(e for e in events if e.type == "response.output_text.done").text
    assert "84" in text, text
    retrieved, deleted, gone, nope = answers
    assert (
        retrieved.type == "conversation.item.retrieved" and retrieved.item.id == calls[0].id and retrieved.item.call_id == calls[0].call_id
    )
    assert deleted.type == "conversation.item.deleted" and deleted.item_id != calls[0].id
    assert gone.type == nope.type == "error" and (gone.error.event_id, nope.error.event_id) == ("evt_gone", "evt_nope")
    assert gone.error.param == "item_id"


def test_official_sdk_beta_client_gets_the_beta_event_names_and_shapes(served):
    from openai import OpenAI

    client = OpenAI(base_url=served.url + "/v1", websocket_base_url=served.url.replace("http", "ws") + "/v1", api_key=KEY, max_retries=0)
    with client.beta.realtime.connect(model="gpt-4o-realtime-preview") as conn:
        created = conn.recv()
        assert created.type == "session.created" and created.session.modalities == ["audio", "text"]
        assert created.session.input_audio_format == "pcm16" and created.session.voice
        conn.session.update(
            session={
                "modalities": ["audio", "text"],
                "instructions": "Answer in one short sentence.",
                "tools": [WEATHER],
                "tool_choice": "none",
            }
        )
        updated = conn.recv()
        assert (
            updated.type == "session.updated" and updated.session.tools[0].name == "get_weather" and updated.session.tool_choice == "none"
        )
        conn.conversation.item.create(item=ask("Say hello."))
        conn.response.create()
        events = collect(conn, "response.done")
    types = [e.type for e in events]
    assert types[0] == "conversation.item.created" and "conversation.item.done" not in types
    assert "response.audio.delta" in types and "response.audio_transcript.delta" in types and "response.audio.done" in types
    assert not [t for t in types if t.startswith("response.output_audio")]
    transcript = next(e for e in events if e.type == "response.audio_transcript.done").transcript
    done = events[-1].response
    assert done.status == "completed" and done.modalities == ["audio", "text"] and done.output[0].content[0].type == "audio"
    assert done.output[0].content[0].transcript == transcript and transcript.strip()


def test_official_sdk_function_call_round_trip_with_the_openai_compatible_engine(llama_server, tmp_path):
    """The same round trip when the chat model is another server's (llama.cpp's OpenAI-compatible one, on loopback):
    the client's function goes to it as an OpenAI tool, its call comes back as the item, the output as a tool message."""
    from openai import OpenAI

    config = f"llm:\n  engine: openai\n  base_url: {llama_server}\n  model: smollm2\n  max_tokens: 160\nserve:\n  api_key: {KEY}\n"
    with ServeProcess(tmp_path, config=config, env={"OPENAI_API_KEY": "unused"}) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
        with client.realtime.connect(model="gpt-realtime") as conn:
            assert conn.recv().type == "session.created"
            conn.session.update(
                session={
                    "type": "realtime",
                    "output_modalities": ["text"],
                    "tools": [WEATHER],
                    "tool_choice": {"type": "function", "name": "get_weather"},
                }
            )
            assert conn.recv().type == "session.updated"
            conn.conversation.item.create(item=ask("What is the weather in Paris?"))
            conn.response.create()
            called = collect(conn, "response.done")
            done = next(e for e in called if e.type == "response.function_call_arguments.done")
            assert done.name == "get_weather" and isinstance(json.loads(done.arguments), dict)
            assert called[-1].response.output[-1].call_id == done.call_id
            conn.conversation.item.create(item={"type": "function_call_output", "call_id": done.call_id, "output": json.dumps(FORECAST)})
            conn.response.create(response={"tool_choice": "none"})
            answer = collect(conn, "response.done")
        assert "Traceback" not in server.log_text(), server.log_text()
    text = next(e for e in answer if e.type == "response.output_text.done").text
    assert answer[-1].response.status == "completed" and text.strip()


@pytest.mark.fast
def test_items_stay_with_their_rounds_when_old_rounds_are_forgotten():
    """Past 4 x max_rounds rounds the oldest are forgotten (those still sent stay): each round's item ids go with it,
    so a delete takes out the round it names."""
    m = ItemMemory(system_prompt="Be brief.", max_rounds=2, max_context_tokens=4000)
    for n in range(12):
        m.user_ids, m.assistant_id = [f"u{n}"], f"a{n}"
        m.add(f"question {n}", f"answer {n}")
        m.messages_for("next")
    assert len(m.rounds) < 12 and m.ids == [([f"u{n}"], f"a{n}") for n in range(12 - len(m.rounds), 12)]
    assert m.delete("a11") and m.rounds[-1] == ("question 11", "")
