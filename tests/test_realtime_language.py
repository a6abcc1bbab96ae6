"""/v1/realtime reports each spoken turn's language (issue 25): the input transcription's completed event carries
it in ``languages``, the field the API reports a detected language in, so the official SDK's types read it.

The end-to-end test runs the official openai SDK's realtime client against `voicechat serve` with
listen.languages en,de (the multilingual Whisper bundle) and espeak-ng speech."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import numpy as np
import pytest

from tests import lang_speech as ls
from tests.rtsdk import collect, sdk
from tests.serveproc import ServeProcess
from voicechat.serve import realtime_events as rt
from voicechat.voice import events as ev

KEY = "realtime-language-key"
COMPLETED = "conversation.item.input_audio_transcription.completed"


def completed_event(doc: dict[str, Any]) -> Any:
    """A server event as the openai SDK's own types parse it (the Agents SDK and LiveKit validate against them)."""
    from openai.types.realtime import RealtimeServerEvent
    from pydantic import Field, TypeAdapter

    return TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")]).validate_python(rt.stamp(doc))


@pytest.mark.fast
def test_the_completed_transcription_names_the_turns_language_in_the_apis_field():
    t = rt.Translator(rt.Settings(model="gpt-realtime", voice="joe", instructions="", silence_ms=600))
    languages = []
    for text, language in (("Wie spät ist es?", "de"), ("What time is it?", None)):
        t.translate(ev.Speech("started"))
        t.translate(ev.Speech("ended"))
        done = next(e for e in t.translate(ev.UserText(text, "voice", language=language)) if e["type"] == COMPLETED)
        parsed = completed_event(done)
        languages.append([x.code for x in parsed.languages] if parsed.languages is not None else None)
    assert languages == [["de"], None]  # a turn whose language is not known says nothing about it


def test_official_sdk_gets_each_spoken_turns_language(tmp_path):
    """An English turn, then a German one, in one realtime transcription session: each completed event names its
    turn's language, identified among listen.languages."""
    turns = [("en", ls.SENTENCES["en"][7]), ("de", ls.SENTENCES["de"][7])]  # (espeak-ng's own voice for each)
    pause = np.zeros(rt.RATE * 2, np.float32)
    speech = [ls.trim(ls.speak(text, language, sample_rate=rt.RATE), rt.RATE) for language, text in turns]
    audio = np.concatenate([pause[: rt.RATE // 2]] + [x for said in speech for x in (said, pause)])
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    block = rt.RATE * 2 * 40 // 1000  # 40 ms
    config = f"listen:\n  languages: [en, de]\nserve:\n  api_key: {KEY}\n  idle_timeout_s: 60\n"
    with ServeProcess(tmp_path / "srv", config=config) as server:
        with sdk(server, KEY).realtime.connect(model="gpt-4o-transcribe", extra_query={"intent": "transcription"}) as conn:
            assert conn.recv().type == "session.created"
            for start in range(0, len(pcm), block):
                conn.input_audio_buffer.append(audio=base64.b64encode(pcm[start : start + block]).decode())
            heard = [collect(conn, COMPLETED)[-1] for _ in turns]
    assert "Traceback" not in server.log_text(), server.log_text()
    found = [([x.code for x in e.languages] if e.languages else None, e.transcript) for e in heard]
    assert [f[0] for f in found] == [["en"], ["de"]], found
    assert ls.wer(turns[1][1], found[1][1]) <= 0.5, found
