"""`/v1/realtime` session and response options (issue 23): create_response / interrupt_response, responses without
a new item, out of band, with their own input, max_output_tokens, voice and speed, input transcription's language
and prompt, idle_timeout_ms, truncating a finished reply. The pure parts in the fast tier; the official `openai`
SDK's realtime client, unchanged but for base_url, against one real `voicechat serve` for the rest."""

from __future__ import annotations

import base64
import os
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

KEY = "realtime-options-key"
QUESTION = "What is the capital of France?"
COPY = "en_GB-copy-medium"


def settings(**kw) -> rt.Settings:
    return rt.Settings(model="m", voice="joe", instructions="Be brief.", silence_ms=600, **kw)


# --- the pure parts ---------------------------------------------------------------------------------------


@pytest.mark.fast
def test_create_response_false_holds_a_spoken_turn_until_response_create_which_may_bring_no_new_item():
    s = settings()
    rt.apply_update(s, {"audio": {"input": {"turn_detection": {"type": "server_vad", "create_response": False}}}})
    t = rt.Translator(s)
    out = t.translate(ev.Speech("started")) + t.translate(ev.Speech("ended"))
    heard = ev.UserText(QUESTION, "voice")
    assert not t.answers(heard)
    out += t.translate(heard)
    assert [d["type"] for d in out][-2:] == ["conversation.item.input_audio_transcription.completed", "conversation.item.done"]
    assert t.response is None and not [d for d in out if d["type"].startswith("response.")]
    assert t.announced == [QUESTION]  # held, before the client hears it was read
    t.requested.append(rt.response_options(None))  # response.create: the held transcript goes as the turn's words
    created = t.translate(ev.UserText(QUESTION, "typed"))
    assert created[0]["type"] == "response.created" and "conversation.item.done" not in [d["type"] for d in created]
    assert s.to_dict("s")["audio"]["input"]["turn_detection"]["create_response"] is False


@pytest.mark.fast
def test_out_of_band_response_with_its_own_input_and_a_token_limit():
    t = rt.Translator(settings())
    t.user_text_item("item_1", "My name is Ada.")
    opts = rt.response_options(
        {
            "conversation": "none",
            "max_output_tokens": 5,
            "input": [
                {"type": "item_reference", "id": "item_1"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada."}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Spell my name."}]},
            ],
            "audio": {"output": {"voice": "other", "speed": 1.25}},
        }
    )
    assert opts.out_of_band and opts.voice == "other" and opts.speed == 1.25
    items = t.resolve(opts.input or [])
    assert items == [("user", "My name is Ada."), ("assistant", "Hello Ada."), ("user", "Spell my name.")]
    assert rt.context_of(items or []) == ([("My name is Ada.", "Hello Ada.")], "Spell my name.")
    assert t.resolve([{"type": "item_reference", "id": "item_unknown"}]) is None
    last = t.last_item
    t.requested.append(opts)
    out = t.translate(ev.UserText("Spell my name.", "typed"))
    out += t.translate(ev.ReplyDelta("A-D-A"))
    assert t.response is not None
    t.response.cut = "max_output_tokens"
    out += t.translate(ev.ReplyDone("A-D-A")) + t.translate(ev.TurnStats(prompt_tokens=9, completion_tokens=5))
    types = [d["type"] for d in out]
    assert "conversation.item.added" not in types and "conversation.item.done" not in types  # not in the conversation
    assert t.last_item == last
    done = out[-1]["response"]
    assert done["conversation_id"] is None and done["max_output_tokens"] == 5
    assert done["status"] == "incomplete" and done["status_details"]["reason"] == "max_output_tokens"
    assert out[0]["response"]["audio"]["output"]["voice"] == "other"
    for bad, param in (
        ({"max_output_tokens": 0}, "response.max_output_tokens"),
        ({"input": [{"type": "item_reference"}]}, "response.input"),
        ({"input": "hello"}, "response.input"),
        ({"audio": {"output": {"speed": 3}}}, "response.audio.output.speed"),
    ):
        with pytest.raises(rt.UpdateRefused) as e:
            rt.response_options(bad)
        assert e.value.param == param


@pytest.mark.fast
def test_session_options_voice_speed_transcription_idle_timeout_and_token_limit():
    s = settings(own_voice="joe", voices=("joe", "amy"), changes_speed=False)
    notices = rt.apply_update(
        s,
        {
            "max_output_tokens": 200,
            "audio": {
                "input": {
                    "transcription": {"model": "gpt-4o-transcribe", "language": "EN", "prompt": "Geography."},
                    "turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000, "interrupt_response": False},
                },
                "output": {"voice": "amy", "speed": 1.2},
            },
        },
    )
    d = s.to_dict("s")
    assert d["audio"]["output"]["voice"] == "amy" and d["audio"]["output"]["speed"] == 1.0  # this engine cannot change speed
    assert any("speed" in n for n in notices) and d["max_output_tokens"] == 200
    assert d["audio"]["input"]["transcription"] == {"model": "gpt-4o-transcribe", "language": "en", "prompt": "Geography."}
    turn = d["audio"]["input"]["turn_detection"]
    assert turn["idle_timeout_ms"] == 5000 and turn["interrupt_response"] is False
    notices = rt.apply_update(s, {"max_output_tokens": "inf", "audio": {"output": {"voice": "marin"}}})
    assert s.voice == "joe" and any("marin" in n and "joe" in n for n in notices)  # unknown: falls back, and says so
    assert s.to_dict("s")["max_output_tokens"] == "inf"
    for bad in (
        {"audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 10}}}},
        {"max_output_tokens": "lots"},
        {"audio": {"input": {"transcription": {"language": 3}}}},
    ):
        with pytest.raises(rt.UpdateRefused):
            rt.apply_update(s, bad)


@pytest.mark.fast
def test_idle_timeout_is_due_once_after_the_reply_has_played_and_speech_disarms_it():
    timer = rt.IdleTimer()
    assert not timer.due(100.0)
    timer.arm(10.0, playback_s=2.0, timeout_ms=1000, audio_ms=4000)
    assert not timer.due(12.999) and timer.due(13.0) and not timer.due(13.5)  # once
    assert timer.start_ms == 6000
    timer.arm(20.0, playback_s=0.0, timeout_ms=1000, audio_ms=0)
    timer.disarm()  # the user spoke
    assert not timer.due(30.0)
    t = rt.Translator(settings())
    t.audio_ms = 9000
    out = t.timeout_triggered(6000)
    assert [d["type"] for d in out] == [
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert out[0]["audio_start_ms"] == 6000 and out[0]["audio_end_ms"] == 9000 and out[1]["item_id"] == out[0]["item_id"]


@pytest.mark.fast
def test_a_turn_cut_before_it_was_read_is_deleted_not_left_with_an_empty_transcript():
    t = rt.Translator(settings())
    out = t.translate(ev.Speech("started")) + t.translate(ev.Speech("ended"))
    item = out[0]["item_id"]
    out = t.translate(ev.Dropped("interrupted before the reply began"))
    assert {"type": "conversation.item.deleted", "item_id": item} in out
    assert "conversation.item.input_audio_transcription.completed" not in [d["type"] for d in out] and not t.committed


@pytest.mark.fast
def test_max_output_tokens_closes_the_models_stream():
    from voicechat.engines.base import Message, TextDelta, Usage
    from voicechat.serve.realtime import Limited

    closed = []

    class Model:
        def stream(self, messages):
            try:
                for i in range(100):
                    yield TextDelta(f"w{i} ")
                yield Usage(1, 100)
            finally:
                closed.append(True)

        def count_tokens(self, text):
            return len(text.split())

    limited = Limited(Model())
    limited.limit = 3
    got = list(limited.stream([Message("user", "go on")]))
    assert [g.text for g in got if isinstance(g, TextDelta)] == ["w0 ", "w1 ", "w2 "] and limited.cut and closed == [True]
    assert got[-1] == Usage(2, 3, estimated=True)
    limited.limit, limited.cut = None, False
    assert len(list(limited.stream([Message("user", "go on")]))) == 101 and not limited.cut


# --- the official SDK against one real server -------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from voicechat import models

    voices = tmp_path_factory.mktemp("voices")
    bundled = models.piper_voice()
    for suffix in (".onnx", ".onnx.json"):  # a second voice on this machine: the bundled one under another name
        os.symlink(bundled[: -len(".onnx")] + suffix, voices / (COPY + suffix))
    config = f"llm:\n  max_tokens: 120\ntts:\n  voices_dir: {voices}\nserve:\n  api_key: {KEY}\n  idle_timeout_s: 120\n"
    with ServeProcess(tmp_path_factory.mktemp("realtime-options"), config=config) as server:
        yield server
    assert "Traceback" not in server.log_text(), server.log_text()


def say(conn, text: str) -> None:
    """The user says ``text`` (24 kHz PCM in 40 ms appends, then silence)."""
    pcm = (
        (np.concatenate([np.zeros(rt.RATE // 2), speak(text, sample_rate=rt.RATE), np.zeros(rt.RATE * 2)]) * 32767).astype("<i2").tobytes()
    )
    block = rt.RATE * 2 * 40 // 1000
    for start in range(0, len(pcm), block):
        conn.input_audio_buffer.append(audio=base64.b64encode(pcm[start : start + block]).decode())


def last_turns(server: ServeProcess, n: int, *, total: int = 0) -> list[tuple]:
    """The last n turns in the history; ``total``: first wait until it holds that many (a turn is written just after
    its response.done is sent)."""
    import time

    deadline = time.monotonic() + 30
    while history_size(server) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    with sqlite3.connect(server.workdir / "history.sqlite3") as db:
        return db.execute("SELECT user_text, assistant_text, interrupted FROM turns ORDER BY id DESC LIMIT ?", (n,)).fetchall()


def history_size(server: ServeProcess) -> int:
    path = server.workdir / "history.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM turns").fetchone()[0]
        except sqlite3.OperationalError:  # (not created yet)
            return 0


def text_of(events: list) -> str:
    return next(e for e in events if e.type == "response.output_text.done").text


def test_create_response_false_commits_a_spoken_turn_and_answers_only_on_response_create(served):
    before = history_size(served)
    with sdk(served).realtime.connect(model="gpt-realtime") as conn:
        assert conn.recv().type == "session.created"
        transcription = {"model": "gpt-4o-transcribe", "language": "en", "prompt": "A geography quiz."}
        turn = {"type": "server_vad", "create_response": False}
        conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "audio": {"input": {"transcription": transcription, "turn_detection": turn}},
            }
        )
        updated = conn.recv().session.audio.input
        assert updated.turn_detection.create_response is False and updated.transcription.model == "gpt-4o-transcribe"
        say(conn, QUESTION)
        heard = collect(conn, "conversation.item.input_audio_transcription.completed")
        conn.response.create()
        answer = collect(conn, "response.done")
    assert not [e for e in heard if e.type.startswith("response.")]  # committed and read, not answered
    transcript = heard[-1].transcript
    assert wer(QUESTION, transcript) <= 0.2 and [e.type for e in answer if e.type.startswith("response.")][0] == "response.created"
    assert answer[-1].response.status == "completed" and "paris" in text_of(answer).lower()
    assert last_turns(served, 1, total=before + 1)[0][:2] == (transcript, text_of(answer))


def test_a_greeting_an_out_of_band_response_with_its_own_input_and_a_token_limit(served):
    before = history_size(served)
    with sdk(served).realtime.connect(model="gpt-realtime") as conn:
        assert conn.recv().type == "session.created"
        conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": "You are a friendly assistant. Greet the user in one short sentence.",
            }
        )
        assert conn.recv().type == "session.updated"
        conn.response.create()  # no new item: a greeting from the instructions alone
        greeting = collect(conn, "response.done")
        greeting_item = next(e for e in greeting if e.type == "response.output_item.done").item.id
        question = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Was that a greeting? Answer yes or no."}],
        }
        conn.response.create(
            response={
                "conversation": "none",
                "instructions": "Answer with one word.",
                "input": [{"type": "item_reference", "id": greeting_item}, question],
                "metadata": {"topic": "check"},
            }
        )
        aside = collect(conn, "response.done")
        conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me a story."}]}
        )
        conn.response.create(response={"max_output_tokens": 3})
        cut = collect(conn, "response.done")
    assert greeting[-1].response.status == "completed" and text_of(greeting).strip()
    assert aside[-1].response.conversation_id is None and "conversation.item.added" not in [e.type for e in aside]
    assert text_of(aside).strip()
    done = cut[-1].response
    assert done.status == "incomplete" and done.status_details.reason == "max_output_tokens" and done.usage.output_tokens <= 3
    rows = last_turns(served, 2, total=before + 2)  # the story cut short, the greeting (with no user words); the aside is not kept
    assert [r[0] for r in rows] == ["Tell me a story.", ""] and rows[1][1] == text_of(greeting)
    assert text_of(aside) not in [r[1] for r in rows]


def test_voice_and_speed_are_the_loaded_voices_and_an_unknown_voice_falls_back_and_says_so(served, hear):
    with sdk(served).realtime.connect(model="gpt-realtime") as conn:
        assert conn.recv().type == "session.created"
        conn.session.update(session={"type": "realtime", "audio": {"output": {"voice": COPY}}})
        assert conn.recv().session.audio.output.voice == COPY
        conn.session.update(session={"type": "realtime", "audio": {"output": {"voice": "marin"}}})
        assert conn.recv().session.audio.output.voice != "marin"  # the voice that speaks, not the name asked
        takes = []
        for speed in (1.0, 1.5):  # the same words (an out-of-band response on the same input), at two speeds
            item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say: the quick brown fox."}]}
            conn.response.create(response={"conversation": "none", "input": [item], "audio": {"output": {"voice": COPY, "speed": speed}}})
            events = collect(conn, "response.done")
            pcm = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")
            transcript = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
            takes.append((len(pcm) / 2 / rt.RATE, transcript, np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768))
    (normal, said, _), (fast, said_fast, audio) = takes
    assert said == said_fast and fast < 0.85 * normal
    assert wer(said, hear(audio, rt.RATE)) <= 0.35
    assert "marin" in served.log_text()


def test_idle_timeout_ms_prompts_a_response_after_the_reply(served):
    with sdk(served).realtime.connect(model="gpt-realtime") as conn:
        assert conn.recv().type == "session.created"
        turn = {"type": "server_vad", "idle_timeout_ms": 1000}
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "audio": {"input": {"turn_detection": turn}}})
        assert conn.recv().session.audio.input.turn_detection.idle_timeout_ms == 1000
        conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello!"}]})
        conn.response.create()
        first = collect(conn, "response.done")
        later = collect(conn, "response.done")  # nobody speaks
    types = [e.type for e in later]
    assert types[:2] == ["input_audio_buffer.timeout_triggered", "input_audio_buffer.committed"]
    assert later[0].item_id == later[1].item_id and "response.created" in types
    assert first[-1].response.id != later[-1].response.id and later[-1].response.status == "completed"


def test_truncating_a_finished_reply_amends_its_history_row(served):
    with sdk(served).realtime.connect(model="gpt-realtime") as conn:
        assert conn.recv().type == "session.created"
        story = "Tell me a story about a brave dragon."
        conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": story}]})
        conn.response.create(response={"max_output_tokens": 40})
        events = collect(conn, "response.done")
        item = next(e for e in events if e.type == "response.output_item.done").item.id
        said = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
        conn.conversation.item.truncate(item_id=item, content_index=0, audio_end_ms=1000)
        assert collect(conn, "conversation.item.truncated")[-1].item_id == item
    deadline = time.monotonic() + 30  # (the row is amended off the event loop)
    while (not last_turns(served, 1) or last_turns(served, 1)[0][2] == 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    user, assistant, interrupted = last_turns(served, 1)[0]
    assert user == story and interrupted == 1
    assert said.startswith(assistant) and 0 < len(assistant.split()) < len(said.split())


def test_interrupt_response_false_speech_over_a_reply_is_announced_and_answered_after_it(served):
    with sdk(served).realtime.connect(model="gpt-realtime") as conn:
        assert conn.recv().type == "session.created"
        turn = {"type": "server_vad", "interrupt_response": False}
        conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": turn}}})
        assert conn.recv().type == "session.updated"
        conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me a long story."}]}
        )
        conn.response.create(response={"max_output_tokens": 60})
        first = collect(conn, "response.output_audio.delta")[-1]
        say(conn, QUESTION)
        events = collect(conn, "response.done")
        events += collect(conn, "response.done")
    done = [e for e in events if e.type == "response.done"]
    types = [e.type for e in events]
    assert done[0].response.id == first.response_id and done[0].response.status in ("completed", "incomplete")  # not cancelled
    assert "input_audio_buffer.speech_started" in types
    heard = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert wer(QUESTION, heard.transcript) <= 0.2 and done[1].response.status == "completed"


def sdk(server: ServeProcess):
    return rtsdk.sdk(server, KEY)
