"""`/v1/realtime` (issue 23): the official `openai` SDK's realtime client, unchanged but for base_url, against a
real `voicechat serve` on loopback with the bundled models; and the event mapping on its own (fast tier)."""

from __future__ import annotations

import base64

import pytest

from voicechat.serve import realtime_events as rt
from voicechat.voice import events as ev


def settings() -> rt.Settings:
    return rt.Settings(model="m", voice="joe", instructions="Be brief.", silence_ms=600)


# --- the mapping, no models ---------------------------------------------------------------------------


@pytest.mark.fast
def test_a_spoken_turn_maps_to_the_ga_events_in_order_with_ids_that_refer_to_each_other():
    t = rt.Translator(settings())
    t.audio_ms = 500
    out = t.translate(ev.Status("hearing"))
    t.audio_ms = 2500
    out += t.translate(ev.Status("thinking"))
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
    t.announced.append("Hi")
    out += t.translate(ev.UserText("Hi", "typed"))
    out += t.translate(ev.ReplyDelta("Hello"))
    assert t.audio(b"\x00\x00" * 10) == []  # no audio in a text response
    out += t.translate(ev.ReplyDone("Hello", interrupted=True))
    out += t.translate(ev.TurnStats())
    types = [d["type"] for d in out]
    assert types.count("conversation.item.added") == 2  # the typed item once (announced), and the reply
    assert "response.output_text.delta" in types and "response.output_text.done" in types
    assert out[-1]["response"]["status"] == "cancelled" and out[-1]["response"]["output"][0]["status"] == "incomplete"
    t.announced.append("again")
    t.translate(ev.UserText("again", "typed"))
    failed = t.translate(ev.Error("the model failed"))
    assert [d["type"] for d in failed] == ["error", "response.done"] and failed[1]["response"]["status"] == "failed"
    assert failed[0]["error"]["message"] == "the model failed"


@pytest.mark.fast
@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "session.audio.input.format"),
        ({"audio": {"output": {"format": {"type": "audio/pcmu"}}}}, "session.audio.output.format"),
        ({"output_modalities": ["audio", "text"]}, "session.output_modalities"),
        ({"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}, "session.audio.input.turn_detection"),
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
