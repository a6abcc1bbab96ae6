"""Clients that pause a reply for speech over it (``/v1/voice?hold=1``): the web page and ``talk --server``.

Speech over a reply, once its words say it is not the reply's own echo (the client cancels that), pauses the reply
where it plays and, if it was a backchannel ("okay, I see") or a cough, lets it go on from there, as ``talk`` does on a
sound card (voice.barge). A client that plays the reply itself says ``hold=1`` and gets ``audio_hold`` messages;
others are never paused (speech over a reply stops it, as before).

The server side and the thin client's handling are checked message by message; the page in a real browser: a typed
question's reply plays, the fake microphone says "Okay, I see." over it, and the reply pauses, goes on and is played whole,
with the backchannel sent nowhere."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.chromium import with_microphone
from tests.helpers import speak, write_wav
from tests.serveproc import ServeProcess
from voicechat.engines.base import AudioChunk
from voicechat.serve.wsio import ClientSink

KEY = "hold-key"
STORY = "Tell me a long story about a dragon who lived by the sea."


class Wire:
    """What a ClientSink sends to its client."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def __call__(self, header: dict, pcm: bytes | None) -> None:
        self.sent.append(header)

    def kinds(self) -> list[tuple]:
        return [(h["type"], h.get("on")) for h in self.sent if h["type"] != "audio"]


def sink_playing(pausable: bool) -> tuple[ClientSink, Wire]:
    wire = Wire()
    sink = ClientSink(wire, threading.Event(), pausable=pausable)
    sink.begin()
    sink.play(AudioChunk(np.zeros(16000, np.float32), 16000, "Once upon a time."))
    return sink, wire


@pytest.mark.fast
def test_a_client_that_can_pause_is_told_to_pause_and_go_on():
    sink, wire = sink_playing(pausable=True)
    assert sink.hold(True) and sink.hold(True)  # (asked twice: said once)
    assert sink.hold(False)
    assert wire.kinds() == [("audio_hold", True), ("audio_hold", False)]
    assert all(h["reply"] == sink.reply for h in wire.sent)


@pytest.mark.fast
def test_a_client_that_cannot_pause_is_never_told_to():
    sink, wire = sink_playing(pausable=False)
    assert not sink.hold(True)
    assert wire.kinds() == []


@pytest.mark.fast
def test_nothing_playing_or_a_stopped_reply_is_not_paused():
    wire = Wire()
    sink = ClientSink(wire, threading.Event(), pausable=True)
    sink.begin()
    assert not sink.hold(True)  # no audio sent yet
    sink, wire = sink_playing(pausable=True)
    sink.stop()
    assert not sink.hold(True) and wire.kinds() == [("audio_stop", None)]


@pytest.mark.fast
def test_paused_time_is_not_counted_as_played(monkeypatch):
    """A stopped reply the client never reported: what real-time playback reached, less the time it was paused
    (0.8 s sounded of a 1 s sentence here, not 1.4 s)."""
    import voicechat.serve.wsio as wsio

    clock = [100.0]
    monkeypatch.setattr(wsio.time, "perf_counter", lambda: clock[0])
    sink, _ = sink_playing(pausable=True)
    sink.confirm_wait_s = 0.0  # (the client never reports)
    clock[0] = 100.3
    sink.hold(True)
    clock[0] = 100.9  # paused 0.6 s
    sink.hold(False)
    clock[0] = 101.4
    sink.stop()
    heard = sink.playback().text
    assert sink._paused_s() == pytest.approx(0.6)
    assert heard and "Once upon a time."[: len(heard)] == heard and len(heard) < len("Once upon a time."), heard


@pytest.mark.fast
def test_the_thin_client_asks_to_be_paused_only_with_a_sound_card_and_pauses_it():
    from voicechat.talk.remote import RemoteSession

    class Card:
        pausable = True

        def __init__(self) -> None:
            self.holds: list[bool] = []

        def hold(self, on: bool) -> bool:
            self.holds.append(on)
            return True

    card = Card()
    remote = RemoteSession("http://127.0.0.1:9", api_key=None, source=None, sink=card)
    assert "hold=1" in remote.url
    assert "hold" not in RemoteSession("http://127.0.0.1:9", api_key=None, source=None, sink=object()).url
    remote._reply = 3
    remote._handle({"type": "audio_hold", "reply": 3, "on": True})
    remote._handle({"type": "audio_hold", "reply": 2, "on": False})  # (an older reply's: ignored)
    remote._handle({"type": "audio_hold", "reply": 3, "on": False})
    assert card.holds == [True, False]


# -- the page in a real browser -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("hold-home")
    env = {f"VOICECHAT_{n}_DIR": str(home / n.lower()) for n in ("CONFIG", "DATA", "CACHE")}
    with ServeProcess(
        tmp_path_factory.mktemp("hold-serve"),
        "--api-key",
        KEY,
        config="llm:\n  max_tokens: 64\nlisten:\n  barge_in: true\n",
        env={**env, "HF_HUB_OFFLINE": "1"},
    ) as s:
        yield s


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium whose fake microphone says "Okay, I see." once, half a second after it is opened."""
    audio = np.concatenate([np.zeros(8000, np.float32), speak("Okay, I see.", steady=True), np.zeros(16000 * 10, np.float32)])
    with with_microphone(write_wav(tmp_path_factory.mktemp("hold-wav") / "backchannel.wav", audio)) as b:
        yield b


@pytest.mark.serial
def test_the_page_pauses_a_reply_for_a_backchannel_and_plays_it_whole(browser, server, tmp_path):
    import json

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"localStorage.setItem('voicechat.key', {json.dumps(KEY)})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_function("window.voicechat && window.voicechat.connected", timeout=30_000)
    page.fill("#text", STORY)
    page.press("#text", "Enter")
    page.wait_for_function("window.voicechat.stats.audioSeconds > 1", timeout=60_000)  # the reply is playing
    page.click("#mic")  # the fake microphone says "Okay, I see." over it
    page.wait_for_function("window.voicechat.stats.playedReplies >= 1", timeout=60_000)
    page.click("#mic")
    stats = page.evaluate("window.voicechat.stats")
    turns = page.evaluate("window.voicechat.turns")
    notices = page.locator("body").inner_text()
    page.screenshot(path=str(tmp_path / "hold.png"), animations="disabled")
    context.close()
    assert stats["holds"] >= 1 and stats["resumes"] == stats["holds"], stats  # paused for it, and went on
    assert stats["playedSeconds"] == pytest.approx(stats["audioSeconds"], abs=0.05), stats  # played whole, once
    assert [t["role"] for t in turns] == ["user", "assistant"], turns  # the backchannel was sent nowhere
    assert turns[1]["interrupted"] is not True, turns
    assert "went on with the reply (backchannel" in notices.lower() and notices.count("I see") == 1, notices  # (no bubble of it)
    assert not errors, errors
