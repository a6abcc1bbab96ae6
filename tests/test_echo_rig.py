"""Barge-in on loudspeakers: `voicechat talk --barge-in` in a PulseAudio room where the speaker reaches
the microphone 80 ms later through a loopback. The assistant's echo never interrupts it; the user
speaking over it does; the question after the interruption is answered."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from tests.helpers import speak
from tests.soundcard import PulseCard
from tests.test_talk import TalkProcess, history_turns, no_stray_processes, silence  # noqa: F401 (the fixture ends a failed test's talk)

LONG = "Answer every question with a detailed explanation of at least four sentences."


def test_its_own_echo_never_interrupts_it_the_user_does_and_is_answered(tmp_path):
    """In a room with echo: two replies play to their end with nobody speaking (the echo may pause a reply,
    never stop it). Then the user speaks over a long reply: playback stops, the reply is kept as far as it
    was played, and what the user said (not the assistant's echo) is the next turn, and is answered."""
    if not PulseCard.available():
        pytest.fail("PulseAudio is required (scripts/setup.sh test installs it)")
    stop_q = "Stop. What is the capital of Italy?"
    with PulseCard(tmp_path / "pulse", room_ms=80, room_volume=0.8) as card:
        talk = TalkProcess("--barge-in", "--system", LONG, env={"VOICECHAT_LLM_MAX_TOKENS": "120"})
        talk.wait_for(lambda e: e["type"] == "notice" and "echo cancellation on" in e["message"])
        mark = talk.wait_for(lambda e: e == {"type": "status", "state": "listening"})
        alone = []
        for question in ("Why is the sky blue?", "How do trains work?"):
            card.feed_mic(np.concatenate([speak(question), silence(1.0)])).wait()
            alone.append(talk.wait_for(lambda e: e["type"] == "reply", after=mark, timeout=180))
            mark = talk.wait_for(lambda e: e == {"type": "status", "state": "listening"}, after=alone[-1])
        notices = [e["message"] for e in talk.events if e["type"] == "notice"]
        assert [r["interrupted"] for r in alone] == [False, False], ([r["interrupted"] for r in alone], notices)
        assert not any(m.startswith("barge-in") for m in notices), notices
        card.feed_mic(np.concatenate([speak("Tell me a long story about a dragon."), silence(1.0)])).wait()
        speaking = talk.wait_for(lambda e: e == {"type": "status", "state": "speaking"}, after=mark)
        card.feed_mic(np.concatenate([silence(2.5), speak(stop_q), silence(1.0)])).wait()
        # the question is understood (the turn may begin with a word of the reply's echo from before the pause)
        asked = talk.wait_for(lambda e: e["type"] == "user" and "capital of italy" in e["text"].lower(), after=speaking, timeout=180)
        answer = talk.wait_for(lambda e: e["type"] == "reply", after=asked, timeout=180)
        talk.proc.send_signal(signal.SIGINT)
        assert talk.finish() == 0, talk.stderr_text()
    assert any(e["type"] == "notice" and e["message"].startswith("barge-in") for e in talk.events)
    cut = [e for e in talk.events[: talk.events.index(asked)] if e["type"] == "reply"]
    assert cut and cut[-1]["interrupted"] is True
    assert answer["text"].strip()
    turns = history_turns()
    assert any(t.interrupted and t.assistant_text == cut[-1]["text"] for t in turns)


def test_check_echo_measures_the_room_and_its_absence(tmp_path):
    """`voicechat devices --check-echo` plays a short sound: in the room it hears the echo, finds its delay
    (the loopback's 80 ms plus the devices') and reports the echo removed; without a room, no echo."""
    import json

    from tests.helpers import run_cli

    if not PulseCard.available():
        pytest.fail("PulseAudio is required (scripts/setup.sh test installs it)")
    with PulseCard(tmp_path / "room", room_ms=80, room_volume=0.8):
        r = run_cli("devices", "--check-echo", "--json")
        assert r.returncode == 0, r.stderr.decode()
        room = json.loads(r.stdout)
        text = run_cli("devices", "--check-echo")
    assert room["echo_heard"] is True and room["engine"] == "dual"
    assert 60 <= room["delay_ms"] <= 400, room
    assert room["erle_db"] >= 10, room
    assert "echo removed:" in text.stdout.decode()
    with PulseCard(tmp_path / "quiet"):
        r = run_cli("devices", "--check-echo", "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["echo_heard"] is False
