"""`/v1/realtime` (issue 23): the official `openai` SDK's realtime client, unchanged but for base_url, against a
real `voicechat serve` on loopback with the bundled models; and the event mapping on its own (fast tier)."""

from __future__ import annotations

import base64
import json
import sqlite3
import time

import numpy as np
import pytest

from tests import rtsdk
from tests.helpers import speak, wer
from tests.rtsdk import collect
from tests.serveproc import ServeProcess
from voicechat.serve import realtime_events as rt
from voicechat.voice import events as ev

KEY = "realtime-test-key"
QUESTION = "What is the capital of France?"


def settings() -> rt.Settings:
    return rt.Settings(model="m", voice="joe", instructions="Be brief.", silence_ms=600)


# --- the mapping, no models ---------------------------------------------------------------------------


@pytest.mark.fast
def test_a_spoken_turn_maps_to_the_ga_events_in_order_with_ids_that_refer_to_each_other():
    t = rt.Translator(settings())
    t.audio_ms = 500
    out = t.translate(ev.Speech("started"))
    t.audio_ms = 2500
    out += t.translate(ev.Speech("ended"))
    out += t.translate(ev.UserText("What is the capital of France?", "voice"))
    out += t.translate(ev.ReplyDelta("Paris."))
    out += t.audio(b"\x01\x00" * 2400)
    out += t.translate(ev.ReplyDone("Paris."))
    out += t.translate(ev.TurnStats(prompt_tokens=30, completion_tokens=3))
    types = [d["type"] for d in out]
    assert types == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    by = {d["type"]: d for d in out}
    user = by["input_audio_buffer.speech_started"]["item_id"]
    assert by["input_audio_buffer.speech_started"]["audio_start_ms"] == 500
    assert by["input_audio_buffer.speech_stopped"]["audio_end_ms"] == 2500
    assert by["conversation.item.input_audio_transcription.completed"]["usage"] == {"type": "duration", "seconds": 2.0}
    assert by["input_audio_buffer.committed"]["item_id"] == user
    assert by["conversation.item.input_audio_transcription.completed"]["item_id"] == user
    response = by["response.created"]["response"]
    assert response["status"] == "in_progress"
    assistant = by["response.output_item.added"]["item"]["id"]
    assert out[8]["previous_item_id"] == user and out[8]["item"]["id"] == assistant
    for name in ("response.output_audio.delta", "response.output_audio_transcript.done", "response.content_part.done"):
        assert by[name]["response_id"] == response["id"] and by[name]["item_id"] == assistant
    assert base64.b64decode(by["response.output_audio.delta"]["delta"]) == b"\x01\x00" * 2400
    done = by["response.done"]["response"]
    assert done["status"] == "completed" and done["id"] == response["id"]
    assert done["usage"]["input_tokens"] == 30 and done["usage"]["output_tokens"] == 3 and done["usage"]["total_tokens"] == 33
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": "Paris."}]


@pytest.mark.fast
def test_text_modality_an_interrupted_reply_and_a_failure():
    s = settings()
    rt.apply_update(s, {"type": "realtime", "output_modalities": ["text"]})
    t = rt.Translator(s)
    out = t.user_text_item("item_1", "Hi")
    t.requested.append(rt.ResponseOptions())
    out += t.translate(ev.UserText("Hi", "typed"))
    out += t.translate(ev.ReplyDelta("Hello"))
    assert t.audio(b"\x00\x00" * 10) == []  # no audio in a text response
    out += t.translate(ev.ReplyDone("Hello", interrupted=True))
    out += t.translate(ev.TurnStats())
    types = [d["type"] for d in out]
    assert types.count("conversation.item.added") == 2  # the typed item once (announced), and the reply
    assert "response.output_text.delta" in types and "response.output_text.done" in types
    assert out[-1]["response"]["status"] == "cancelled" and out[-1]["response"]["output"][0]["status"] == "incomplete"
    t.requested.append(rt.response_options({"output_modalities": ["audio"], "instructions": "Shout."}))
    created = t.translate(ev.UserText("again", "typed"))
    assert [d["type"] for d in created][0] == "response.created"  # (the item was announced when created)
    assert created[0]["response"]["output_modalities"] == ["audio"] and t.response is not None and t.response.instructions == "Shout."
    failed = t.translate(ev.Error("the model failed"))
    assert [d["type"] for d in failed] == ["error", "response.done"] and failed[1]["response"]["status"] == "failed"
    assert failed[0]["error"]["message"] == "the model failed"


@pytest.mark.fast
@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"conversation": "conv_other"}, "response.conversation"),
        ({"output_modalities": ["video"]}, "response.output_modalities"),
        ({"instructions": ["x"]}, "response.instructions"),
        ("x", "response"),
    ],
)
def test_response_options_this_server_cannot_honour_are_named(params, param):
    with pytest.raises(rt.UpdateRefused) as e:
        rt.response_options(params)
    assert e.value.param == param


@pytest.mark.fast
def test_a_transcription_session_streams_the_words_and_answers_nothing():
    s = settings()
    s.kind = "transcription"
    t = rt.Translator(s)
    out = t.translate(ev.Speech("started"))
    out += t.translate(ev.Partial("What is"))
    out += t.translate(ev.Partial("What is the capital"))
    out += t.translate(ev.Partial("What was"))  # a partial that rewrites sent words: nothing to append
    out += t.translate(ev.Speech("ended"))
    out += t.translate(ev.UserText("What is the capital of France?", "voice"))
    deltas = [d["delta"] for d in out if d["type"] == "conversation.item.input_audio_transcription.delta"]
    assert deltas == ["What is", " the capital"]
    assert out[-2]["type"] == "conversation.item.input_audio_transcription.completed" and out[-1]["type"] == "conversation.item.done"
    assert not [d for d in out if d["type"].startswith("response.")] and t.response is None
    assert s.to_dict("sess_1")["type"] == "transcription" and "output_modalities" not in s.to_dict("sess_1")
    with pytest.raises(rt.UpdateRefused):
        rt.apply_update(s, {"type": "realtime"})


@pytest.mark.fast
def test_a_committed_item_with_no_speech_gets_an_empty_transcript():
    t = rt.Translator(settings())
    t.speech_item = "item_u"
    out = t.commit() + t.translate(ev.Dropped("no speech in the utterance"))
    assert [d["type"] for d in out] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
    ]
    assert out[2]["item_id"] == "item_u" and out[2]["transcript"] == "" and not t.committed


@pytest.mark.fast
@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "session.audio.input.format"),
        ({"audio": {"output": {"format": {"type": "audio/opus"}}}}, "session.audio.output.format"),
        ({"output_modalities": ["audio", "text"]}, "session.output_modalities"),
        ({"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "eager"}}}}, "session.audio.input.turn_detection"),
        ({"audio": {"input": {"turn_detection": {"type": "server_vad", "create_response": "no"}}}}, "session.audio.input.turn_detection"),
        ({"instructions": 3}, "session.instructions"),
        ({"type": "transcription"}, "session.type"),
        ("nope", "session"),
    ],
)
def test_a_session_update_this_server_cannot_honour_is_refused_whole(session, param):
    s = settings()
    before = s.to_dict("sess_1")
    with pytest.raises(rt.UpdateRefused) as e:
        rt.apply_update(
            s, {"instructions": "changed", **session} if isinstance(session, dict) and "instructions" not in session else session
        )
    assert e.value.param == param
    assert s.to_dict("sess_1") == before  # nothing applied


@pytest.mark.fast
def test_a_session_update_applies_what_it_names_and_reports_the_effective_config():
    s = settings()
    notices = rt.apply_update(
        s,
        {
            "type": "realtime",
            "instructions": "Answer in one word.",
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
                "output": {"voice": "marin", "speed": 1.0},
            },
        },
    )
    d = s.to_dict("sess_1")
    assert d["instructions"] == "Answer in one word." and d["audio"]["input"]["turn_detection"] is None
    assert d["audio"]["output"]["voice"] == "joe" and any("marin" in n for n in notices)
    assert d["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}


@pytest.mark.fast
def test_turn_detection_tunes_the_meaning_policy_it_does_not_replace_it():
    from voicechat.config import Config
    from voicechat.voice.endpoint import MeaningPolicy, SilencePolicy

    turn = Config().turn
    s = rt.Settings(model="m", voice="v", instructions="", silence_ms=turn.end_ms)
    meaning = MeaningPolicy(turn, audio_model=False)
    rt.apply_update(s, {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}}}})
    rt.tune_policy(meaning, turn, 600, s)
    assert (meaning.fast, meaning.normal, meaning.slow) == (2 * turn.fast_end_ms, 2 * turn.end_ms, 2 * turn.slow_end_ms)
    assert s.to_dict("x")["audio"]["input"]["turn_detection"]["eagerness"] == "low"
    rt.apply_update(s, {"audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": turn.end_ms // 2}}}})
    rt.tune_policy(meaning, turn, 600, s)
    assert meaning.normal == turn.end_ms // 2 and meaning.fast < meaning.normal < meaning.slow  # by meaning still
    silence = SilencePolicy(600)
    rt.tune_policy(silence, turn, 600, s)
    assert silence.max_silence_ms == turn.end_ms // 2


@pytest.mark.fast
def test_g711_codecs_match_the_reference_on_every_sample_and_code():
    import warnings

    from voicechat.serve import g711

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # the standard library's codec, up to Python 3.12
    codes = bytes(range(256))
    samples = np.arange(-32768, 32768, dtype=np.int16)
    pcm = samples.astype("<i2").tobytes()
    assert g711.ulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)
    assert g711.alaw_decode(codes).tobytes() == audioop.alaw2lin(codes, 2)
    assert g711.ulaw_encode(samples) == audioop.lin2ulaw(pcm, 2)
    assert g711.alaw_encode(samples) == audioop.lin2alaw(pcm, 2)


# --- the official SDK against a real server -------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with ServeProcess(
        tmp_path_factory.mktemp("realtime"), config=f"llm:\n  max_tokens: 32\nserve:\n  api_key: {KEY}\n  idle_timeout_s: 60\n"
    ) as server:
        yield server
    assert "Traceback" not in server.log_text(), server.log_text()


def audio_of(events: list) -> np.ndarray:
    pcm = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def test_official_sdk_typed_item_then_response_create_gives_audio_and_its_transcript(served, hear):
    with sdk(served).realtime.connect(model="gpt-realtime") as conn:
        created = conn.recv()
        assert created.type == "session.created" and created.session.model == "gpt-realtime"
        conn.session.update(session={"type": "realtime", "instructions": "You are a helpful assistant. Answer in one short sentence."})
        updated = conn.recv()
        assert updated.type == "session.updated" and updated.session.instructions.startswith("You are a helpful")
        conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]})
        conn.response.create()
        events = collect(conn, "response.done")
    types = [e.type for e in events]
    assert types[:2] == ["conversation.item.added", "conversation.item.done"]
    assert "response.created" in types and types.index("response.created") < types.index("response.output_audio.delta")
    transcript = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
    deltas = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    assert transcript.strip() and deltas.strip() == transcript.strip()
    done = events[-1].response
    assert done.status == "completed" and done.usage.output_tokens > 0
    assert wer(transcript, hear(audio_of(events), rt.RATE)) <= 0.35  # the audio at 24 kHz says the transcript


def test_official_sdk_spoken_question_with_server_vad(served, hear):
    question = speak(QUESTION, sample_rate=rt.RATE)
    pcm = (np.concatenate([np.zeros(rt.RATE // 2), question, np.zeros(rt.RATE * 2)]) * 32767).astype("<i2").tobytes()
    block = rt.RATE * 2 * 30 // 1000  # 30 ms
    with sdk(served).realtime.connect(model="anything") as conn:
        assert conn.recv().type == "session.created"
        conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
        assert conn.recv().type == "session.updated"
        for start in range(0, len(pcm), block):
            conn.input_audio_buffer.append(audio=base64.b64encode(pcm[start : start + block]).decode())
        events = collect(conn, "response.done")
    types = [e.type for e in events]
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_audio.delta",
        "response.done",
    ]
    assert [types.index(t) for t in order] == sorted(types.index(t) for t in order), types
    started = next(e for e in events if e.type == "input_audio_buffer.speech_started")
    stopped = next(e for e in events if e.type == "input_audio_buffer.speech_stopped")
    assert started.item_id == stopped.item_id and started.audio_start_ms < stopped.audio_end_ms
    heard = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert heard.item_id == started.item_id and wer(QUESTION, heard.transcript) <= 0.2
    transcript = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
    assert wer(transcript, hear(audio_of(events), rt.RATE)) <= 0.35


def test_a_wrong_key_is_refused_with_a_realtime_error(served):
    from openai import OpenAI

    with OpenAI(base_url=served.url + "/v1", api_key="wrong", max_retries=0).realtime.connect(model="x") as conn:
        event = conn.recv()
    assert event.type == "error" and "API key" in event.error.message


def test_official_sdk_client_commits_with_turn_detection_off_in_g711_a_law(served, hear):
    from voicechat.serve import g711

    question = speak(QUESTION, sample_rate=g711.RATE)
    law = g711.alaw_encode((np.concatenate([np.zeros(g711.RATE // 4), question, np.zeros(g711.RATE // 4)]) * 32767).astype(np.int16))
    block = g711.RATE * 20 // 1000  # 20 ms, as a telephone bridge sends it
    with sdk(served).realtime.connect(model="anything") as conn:
        assert conn.recv().type == "session.created"
        pcma = {"type": "audio/pcma"}
        conn.session.update(
            session={"type": "realtime", "audio": {"input": {"format": pcma, "turn_detection": None}, "output": {"format": pcma}}}
        )
        updated = conn.recv().session.audio
        assert updated.input.turn_detection is None and updated.input.format.type == updated.output.format.type == "audio/pcma"
        for start in range(0, len(law), block):
            conn.input_audio_buffer.append(audio=base64.b64encode(law[start : start + block]).decode())
        conn.input_audio_buffer.commit()
        conn.response.create()  # (with turn_detection null the client asks for the response, as with OpenAI)
        events = collect(conn, "response.done")
    types = [e.type for e in events]
    assert types[0] == "input_audio_buffer.committed" and "input_audio_buffer.speech_started" not in types
    heard = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert heard.item_id == events[0].item_id and wer(QUESTION, heard.transcript) <= 0.2
    assert events[-1].response.status == "completed"
    reply = g711.alaw_decode(b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta"))
    transcript = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
    assert wer(transcript, hear(reply.astype(np.float32) / 32768, g711.RATE)) <= 0.35  # 8 kHz telephone audio


def test_bad_events_get_error_events_naming_them_and_the_session_goes_on_in_text(served):
    with sdk(served).realtime.connect(model="anything") as conn:
        assert conn.recv().type == "session.created"
        conn.send({"type": "no.such.event", "event_id": "evt_1"})
        conn.send({"type": "input_audio_buffer.append", "audio": "not base64!", "event_id": "evt_2"})
        conn.send({"type": "response.create", "response": {"conversation": "conv_2"}, "event_id": "evt_3"})  # one conversation here
        conn.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio", "text"]}, "event_id": "evt_4"})
        errors = [conn.recv() for _ in range(4)]
        assert [e.type for e in errors] == ["error"] * 4
        assert [e.error.event_id for e in errors] == ["evt_1", "evt_2", "evt_3", "evt_4"]
        assert errors[3].error.param == "session.output_modalities"
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        assert conn.recv().session.output_modalities == ["text"]
        conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Name a colour."}]}
        )
        conn.response.create()
        events = collect(conn, "response.done")
    types = [e.type for e in events]
    assert "response.output_audio.delta" not in types and "response.output_text.delta" in types
    text = next(e for e in events if e.type == "response.output_text.done").text
    assert text.strip() and text == "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-1].response.output_modalities == ["text"]


def test_a_browser_authenticates_with_openais_subprotocols(served):
    from websockets.sync.client import connect

    url = served.url.replace("http", "ws") + "/v1/realtime?model=gpt-realtime"
    with connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"]) as ws:
        assert ws.subprotocol == "realtime"
        assert json.loads(ws.recv())["type"] == "session.created"


def test_truncate_after_barge_in_keeps_only_what_was_heard_in_the_history(served):
    story = "Tell me a long story about a brave dragon and a small village."
    with sdk(served).realtime.connect(model="anything") as conn:
        assert conn.recv().type == "session.created"
        conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": story}]})
        conn.response.create()
        first = collect(conn, "response.output_audio.delta")[-1]
        conn.response.cancel()  # the user spoke over it, say: the client stops playing and says how far it got
        conn.conversation.item.truncate(item_id=first.item_id, content_index=0, audio_end_ms=1500)
        events = collect(conn, "response.done")
    types = [e.type for e in events]
    assert "conversation.item.truncated" in types
    done = events[-1].response
    assert done.status == "cancelled" and done.output[0].status == "incomplete"
    heard = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
    deadline = time.monotonic() + 30  # (the turn is recorded on the session's thread, just after response.done)
    while True:
        with sqlite3.connect(served.workdir / "history.sqlite3") as db:
            user, assistant, interrupted = db.execute(
                "SELECT user_text, assistant_text, interrupted FROM turns ORDER BY id DESC LIMIT 1"
            ).fetchone()
        if user == story or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert user == story and interrupted
    assert assistant == heard and 0 < len(assistant.split()) < 12  # about 1.5 s of speech, not the whole story


def test_official_async_sdk_two_typed_turns_in_one_conversation_the_second_spoken_by_its_own_request(served):
    import asyncio

    from openai import AsyncOpenAI

    async def talk() -> list[list]:
        client = AsyncOpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0)
        turns = []
        async with client.realtime.connect(model="gpt-realtime") as conn:
            assert (await conn.recv()).type == "session.created"
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "instructions": "Answer in a few words."})
            assert (await conn.recv()).type == "session.updated"
            for text, modalities in (("My name is Ada.", None), ("What is my name?", ["audio"])):
                await conn.conversation.item.create(
                    item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
                )
                if modalities is None:
                    await conn.response.create()
                else:  # this response only: spoken, in a session that answers in text
                    await conn.response.create(response={"output_modalities": modalities})
                events = []
                async for event in conn:
                    assert event.type != "error", event
                    events.append(event)
                    if event.type == "response.done":
                        break
                turns.append(events)
        return turns

    first, second = asyncio.run(asyncio.wait_for(talk(), 300))
    assert first[-1].response.status == second[-1].response.status == "completed"
    assert first[-1].response.id != second[-1].response.id
    assert "response.output_text.delta" in [e.type for e in first] and "response.output_audio.delta" not in [e.type for e in first]
    assert "response.output_audio.delta" in [e.type for e in second] and second[-1].response.output_modalities == ["audio"]
    with sqlite3.connect(served.workdir / "history.sqlite3") as db:
        rows = db.execute("SELECT session_id, user_text FROM turns ORDER BY id DESC LIMIT 2").fetchall()
    assert [r[1] for r in rows] == ["What is my name?", "My name is Ada."] and rows[0][0] == rows[1][0]  # one conversation


def test_official_sdk_transcription_session_transcribes_each_turn_and_answers_none(served):
    first, second = "The weather is nice today.", "What is the capital of France?"
    pcm = b"".join(
        (np.concatenate([np.zeros(rt.RATE // 2), speak(text, sample_rate=rt.RATE), np.zeros(rt.RATE * 2)]) * 32767).astype("<i2").tobytes()
        for text in (first, second)
    )
    block = rt.RATE * 2 * 40 // 1000  # 40 ms
    with sdk(served).realtime.connect(model="gpt-4o-transcribe", extra_query={"intent": "transcription"}) as conn:
        created = conn.recv()
        assert created.type == "session.created" and created.session.type == "transcription"
        conn.session.update(session={"type": "transcription", "audio": {"input": {"transcription": {"language": "en"}}}})
        assert conn.recv().type == "session.updated"
        for start in range(0, len(pcm), block):
            conn.input_audio_buffer.append(audio=base64.b64encode(pcm[start : start + block]).decode())
        events = collect(conn, "conversation.item.input_audio_transcription.completed")
        events += collect(conn, "conversation.item.input_audio_transcription.completed")
        conn.send({"type": "response.create", "event_id": "evt_r"})
        refused = next(e for e in conn if e.type == "error")
    heard = [e.transcript for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
    assert wer(first, heard[0]) <= 0.2 and wer(second, heard[1]) <= 0.2
    assert [e.type for e in events].count("input_audio_buffer.speech_started") == 2
    assert not [e for e in events if e.type.startswith("response.")]  # transcribed, never answered
    assert refused.type == "error" and refused.error.event_id == "evt_r"


def test_speech_over_a_response_cancels_it_and_is_answered(served):
    question = speak(QUESTION, sample_rate=rt.RATE)
    pcm = (np.concatenate([np.zeros(rt.RATE // 2), question, np.zeros(rt.RATE * 2)]) * 32767).astype("<i2").tobytes()
    block = rt.RATE * 2 * 40 // 1000
    with sdk(served).realtime.connect(model="anything") as conn:
        assert conn.recv().type == "session.created"
        conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me a long story."}]}
        )
        conn.response.create()
        # the question goes as soon as the response exists: a 32-token reply is written in about a second here, and
        # sent only after its first audio, the question could be heard after it was all written (the suite's load)
        first = collect(conn, "response.created")[-1]
        for start in range(0, len(pcm), block):
            conn.input_audio_buffer.append(audio=base64.b64encode(pcm[start : start + block]).decode())
        events = collect(conn, "response.done")
        events += collect(conn, "response.done")
    done = [e for e in events if e.type == "response.done"]
    types = [e.type for e in events]
    assert done[0].response.id == first.response.id and done[0].response.status == "cancelled"
    assert types.index("input_audio_buffer.speech_started") < types.index("response.done")  # the client is told to stop playing first
    heard = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert wer(QUESTION, heard.transcript) <= 0.2 and done[1].response.status == "completed"


def sdk(server: ServeProcess):
    return rtsdk.sdk(server, KEY)
