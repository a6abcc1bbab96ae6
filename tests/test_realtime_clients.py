"""Realtime clients nobody here wrote, unchanged but for the URL, against `voicechat serve` (issue 23).

Two frameworks each hold a spoken conversation of two turns with a real server on loopback (bundled Whisper,
Piper, SmolLM2), speech in at real-time pace as a microphone sends it: the OpenAI Agents SDK (`RealtimeAgent` +
`RealtimeRunner`, model_config url) and pipecat's `OpenAIRealtimeLLMService` (base_url) in a pipeline. Both
validate every server event against their own models of the API (pydantic); the Agents SDK reports a mismatch as
an error event, pipecat stops the session. The fast test checks each event the mapping makes against the API's
schema, without a server. (pipecat-ai pins older protobuf/soundfile/soxr than voicechat uses, so it is installed
with --no-deps plus loguru, docstring-parser, loudness, resampy, sentencex and wait-for2; without it its test skips.)"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Annotated, Any

import numpy as np
import pytest

from tests.helpers import speak, wer
from tests.serveproc import ServeProcess
from voicechat.serve import realtime_events as rt
from voicechat.voice import events as ev

KEY = "realtime-clients-key"
TURNS = ("My name is Ada.", "What is my name?")
BLOCK_S = 0.04  # a microphone's block


def api_schema() -> Any:
    """The GA server events as the openai types define them: what the Agents SDK (and LiveKit) validate against."""
    from openai.types.realtime import RealtimeServerEvent
    from pydantic import Field, TypeAdapter

    return TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])


@pytest.mark.fast
def test_every_event_of_a_conversation_validates_against_the_api_schema():
    settings = rt.Settings(model="gpt-realtime", voice="joe", instructions="Be brief.", silence_ms=600)
    t = rt.Translator(settings)
    out = [{"type": "session.created", "session": settings.to_dict("sess_1")}]
    t.audio_ms = 500
    out += t.translate(ev.Speech("started"))
    out += t.translate(ev.Partial("My name"))
    t.audio_ms = 2500
    out += t.translate(ev.Speech("ended"))
    out += t.translate(ev.UserText("My name is Ada.", "voice"))
    out += t.translate(ev.ReplyDelta("Hello Ada."))
    out += t.audio(b"\x01\x00" * 2400)
    out += t.translate(ev.ReplyDone("Hello Ada."))
    out += t.translate(ev.TurnStats(prompt_tokens=30, completion_tokens=3))
    rt.apply_update(settings, {"type": "realtime", "output_modalities": ["text"]})
    out.append({"type": "session.updated", "session": settings.to_dict("sess_1")})
    out += t.user_text_item("item_1", "Tell me a story.")
    t.requested.append(rt.ResponseOptions())
    out += t.translate(ev.UserText("Tell me a story.", "typed"))
    out += t.translate(ev.ReplyDelta("Once"))
    out += t.translate(ev.ReplyDone("Once", interrupted=True))
    out += t.translate(ev.TurnStats())
    out += t.translate(ev.UserText("again", "typed"))
    out += t.translate(ev.Error("the model failed"))
    out.append(rt.error_event("bad event", param="type", event_id="evt_1", code="unknown_event"))
    schema = api_schema()
    assert len({d["type"] for d in out}) >= 20
    for doc in out:
        parsed = schema.validate_python(rt.stamp(doc))
        assert parsed.type == doc["type"]


# --- the Agents SDK against a real server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with ServeProcess(tmp_path_factory.mktemp("rtclients"), config=f"llm:\n  max_tokens: 32\nserve:\n  api_key: {KEY}\n") as server:
        yield server
    assert "Traceback" not in server.log_text(), server.log_text()


def pcm24(text: str) -> bytes:
    audio = np.concatenate([np.zeros(rt.RATE // 4), speak(text, sample_rate=rt.RATE)])
    return (audio * 32767).astype("<i2").tobytes()


async def microphone(send: Any, utterances: asyncio.Queue) -> None:
    """Audio at real-time pace, as a microphone sends it: silence, and each utterance when it is queued."""
    block = int(rt.RATE * BLOCK_S) * 2
    silence = bytes(block)
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    pending = b""
    while True:
        if not pending and not utterances.empty():
            pending = utterances.get_nowait()
        chunk, pending = (pending[:block], pending[block:]) if pending else (silence, b"")
        await send(chunk.ljust(block, b"\x00"))
        next_at += BLOCK_S
        await asyncio.sleep(max(0.0, next_at - loop.time()))


def test_agents_sdk_holds_a_spoken_conversation_of_two_turns(served, hear):
    from agents.realtime import RealtimeAgent, RealtimePlaybackTracker, RealtimeRunner

    async def converse() -> tuple[list, list, list[bytes]]:
        agent = RealtimeAgent(name="Assistant", instructions="You are a helpful assistant. Answer in one short sentence.")
        playback = RealtimePlaybackTracker()  # this client "plays" each piece as it arrives (a recorder, say)
        url = served.url.replace("http", "ws") + "/v1/realtime?model=gpt-realtime"
        session = await RealtimeRunner(agent).run(model_config={"url": url, "api_key": KEY, "playback_tracker": playback})
        events: list = []
        history: list = []
        replies: list[bytes] = [b""]
        utterances: asyncio.Queue = asyncio.Queue()
        async with session:
            mic = asyncio.create_task(microphone(session.send_audio, utterances))
            utterances.put_nowait(pcm24(TURNS[0]))
            try:
                async for event in session:
                    events.append(event)
                    if event.type == "audio":
                        playback.on_play_bytes(event.audio.item_id, event.audio.content_index, event.audio.data)
                        replies[-1] += event.audio.data
                    elif event.type == "history_updated":
                        history = list(event.history)
                    elif event.type == "agent_end":
                        if len(replies) == len(TURNS):
                            break
                        replies.append(b"")
                        utterances.put_nowait(pcm24(TURNS[1]))  # the user answers once the reply is heard
            finally:
                mic.cancel()
        return events, history, replies

    events, history, replies = asyncio.run(asyncio.wait_for(converse(), 300))
    types = [e.type for e in events]
    errors = [e.error for e in events if e.type == "error"]
    assert types.count("agent_start") == types.count("agent_end") == 2 and types.count("audio_end") == 2
    messages = [(item.role, item) for item in history if item.type == "message"]
    assert [role for role, _ in messages] == ["user", "assistant", "user", "assistant"]
    heard = [item.content[0].transcript for role, item in messages if role == "user"]
    assert wer(TURNS[0], heard[0]) <= 0.2 and wer(TURNS[1], heard[1]) <= 0.2
    said = [item.content[0].transcript for role, item in messages if role == "assistant"]
    assert all(s and s.strip() for s in said) and all(item.status == "completed" for role, item in messages if role == "assistant")
    assert all(replies)
    last = np.frombuffer(replies[-1], dtype="<i2").astype(np.float32) / 32768
    assert wer(said[-1], hear(last, rt.RATE)) <= 0.35  # the second reply's 24 kHz audio says its transcript
    with sqlite3.connect(served.workdir / "history.sqlite3") as db:
        rows = db.execute("SELECT session_id, user_text, assistant_text FROM turns ORDER BY id").fetchall()
    assert len(rows) == 2 and rows[0][0] == rows[1][0]  # one conversation, both turns
    assert [r[2] for r in rows] == said
    # the SDK reports any event it cannot validate and any error event; it asks for the last assistant item
    # (conversation.item.retrieve) after each transcript, which the server must answer
    assert not errors, errors


def test_pipecat_realtime_service_holds_a_spoken_conversation_of_two_turns(served, hear):
    pytest.importorskip("pipecat", reason="pipecat-ai is a test extra installed without its pins (see the module doc)")
    from pipecat.frames.frames import (
        EndFrame,
        ErrorFrame,
        InputAudioRawFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        TranscriptionFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
        TTSTextFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.task import PipelineParams
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameProcessor
    from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
    from pipecat.workers.runner import WorkerRunner

    heard: list[str] = []
    said: list[str] = []
    replies: list[bytes] = []
    errors: list[str] = []

    async def converse() -> None:
        utterances: asyncio.Queue = asyncio.Queue()
        ended = asyncio.Event()
        started: list[float] = []  # when each reply's audio began to come
        later: list[asyncio.Task] = []

        class Tap(FrameProcessor):
            """What the service pushes either way: transcripts upstream, the reply (text and audio) downstream."""

            async def process_frame(self, frame, direction):
                await super().process_frame(frame, direction)
                if isinstance(frame, TranscriptionFrame):
                    heard.append(frame.text)
                elif isinstance(frame, LLMFullResponseStartFrame):
                    said.append("")
                    replies.append(b"")
                elif isinstance(frame, TTSTextFrame) and said:
                    said[-1] += frame.text
                elif isinstance(frame, TTSAudioRawFrame) and replies:
                    replies[-1] += frame.audio
                    if len(replies[-1]) == len(frame.audio):
                        started.append(asyncio.get_running_loop().time())
                elif isinstance(frame, ErrorFrame):
                    errors.append(frame.error)
                elif isinstance(frame, TTSStoppedFrame) and said and len(said) < len(TURNS):  # (at response.done)
                    later.append(asyncio.create_task(answer_once_heard(len(said))))
                elif isinstance(frame, LLMFullResponseEndFrame) and len(said) == len(TURNS):
                    ended.set()
                await self.push_frame(frame, direction)

        async def answer_once_heard(turn: int) -> None:
            """The user answers once the reply has played: the service counts what was heard from when its audio
            began (and says so with a truncate if the user speaks sooner), as a listener's ears would."""
            size = len(replies[-1])  # all of it: the response is done
            played_until = (started[-1] if started else 0.0) + size / 2 / rt.RATE
            await asyncio.sleep(max(0.0, played_until - asyncio.get_running_loop().time()) + 0.3)
            utterances.put_nowait(pcm24(TURNS[turn]))

        llm = OpenAIRealtimeLLMService(
            api_key=KEY,
            base_url=served.url.replace("http", "ws") + "/v1/realtime",
            settings=OpenAIRealtimeLLMService.Settings(
                model="gpt-realtime", system_instruction="You are a helpful assistant. Answer in one short sentence."
            ),
        )
        worker = PipelineWorker(
            Pipeline([Tap(), llm, Tap()]),
            params=PipelineParams(audio_in_sample_rate=rt.RATE, audio_out_sample_rate=rt.RATE),
            enable_rtvi=False,
            idle_timeout_secs=None,
        )
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        running = asyncio.create_task(runner.run())

        async def send(block: bytes) -> None:
            await worker.queue_frame(InputAudioRawFrame(audio=block, sample_rate=rt.RATE, num_channels=1))

        mic = asyncio.create_task(microphone(send, utterances))
        utterances.put_nowait(pcm24(TURNS[0]))
        try:
            await ended.wait()
        finally:
            mic.cancel()
            await worker.queue_frame(EndFrame())
            await running

    asyncio.run(asyncio.wait_for(converse(), 300))
    assert not errors, errors  # the service treats any error event, or an event it cannot parse, as fatal
    assert len(heard) == len(said) == len(TURNS)
    assert wer(TURNS[0], heard[0]) <= 0.2 and wer(TURNS[1], heard[1]) <= 0.2
    assert all(s.strip() for s in said) and all(replies)
    last = np.frombuffer(replies[-1], dtype="<i2").astype(np.float32) / 32768
    assert wer(said[-1], hear(last, rt.RATE)) <= 0.35
    with sqlite3.connect(served.workdir / "history.sqlite3") as db:
        rows = db.execute("SELECT session_id, user_text, assistant_text FROM turns ORDER BY id DESC LIMIT 2").fetchall()[::-1]
    assert rows[0][0] == rows[1][0] and [r[1] for r in rows] == heard
    assert [" ".join(r[2].split()) for r in rows] == [" ".join(s.split()) for s in said]
