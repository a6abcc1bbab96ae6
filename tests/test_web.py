"""The web page at GET / in a real browser: Debian's chromium, headless, driven by Playwright, against
`voicechat serve` on loopback with the bundled models. A fake microphone plays a spoken question from a WAV
file; the page must show its transcript and a reply and play the reply audio. Typed text, stop, clear, the
CSV download and the API key prompt too. Screenshots go to the test's directory (and to
$VOICECHAT_TEST_SCREENS when set, for people to look at)."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.chromium import with_microphone
from tests.helpers import normalize_words, speak, write_wav
from tests.serveproc import ServeProcess

KEY = "web-key>>?~ok"  # base64 of it has '+', '/' and padding: the page must send the url-safe form
QUESTION = "What is the capital of France?"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENS = os.environ.get("VOICECHAT_TEST_SCREENS")  # read now: the isolation fixture clears VOICECHAT_* variables


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("web-home")
    env = {f"VOICECHAT_{n}_DIR": str(home / n.lower()) for n in ("CONFIG", "DATA", "CACHE")}
    with ServeProcess(
        tmp_path_factory.mktemp("web-serve"), "--api-key", KEY, config="llm:\n  max_tokens: 48\n", env={**env, "HF_HUB_OFFLINE": "1"}
    ) as s:
        yield s


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    """The question as the fake microphone plays it once: half a second of silence, the words, then silence."""
    audio = np.concatenate([np.zeros(8000, np.float32), speak(QUESTION), np.zeros(16000 * 4, np.float32)])
    return write_wav(tmp_path_factory.mktemp("web-wav") / "question.wav", audio)


@pytest.fixture(scope="module")
def browser(question_wav):
    with with_microphone(question_wav) as b:
        yield b


@pytest.fixture()
def shots(tmp_path):
    """shots(page, name): a screenshot in the test's directory, copied to $VOICECHAT_TEST_SCREENS when set."""
    out = tmp_path / "screens"
    out.mkdir()

    def take(page, name: str) -> Path:
        path = out / f"{name}.png"
        page.screenshot(path=str(path), animations="disabled")
        if SCREENS:
            Path(SCREENS).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(SCREENS) / path.name)
        return path

    return take


def open_page(browser, server, *, key: str | None = KEY, viewport=DESKTOP, **options):
    context = browser.new_context(viewport=viewport, **options)
    if key is not None:
        context.add_init_script(f"localStorage.setItem('voicechat.key', {json.dumps(key)})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    return page, errors


def wait_connected(page) -> None:
    page.wait_for_function("window.voicechat && window.voicechat.connected", timeout=30_000)


def texts(page, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def no_horizontal_scroll(page) -> None:
    width, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width <= client, f"the page scrolls sideways: {width} px wide in {client} px"


@pytest.mark.serial
def test_a_spoken_question_shows_its_transcript_and_a_reply_and_plays_the_reply(browser, server, shots):
    page, errors = open_page(browser, server)
    wait_connected(page)
    assert page.locator("#key").is_hidden()
    page.click("#mic")
    page.wait_for_function(
        """() => {
        const v = window.voicechat;
        return v.turns.some(t => t.role === 'assistant') && v.stats.playedReplies > 0;
    }""",
        timeout=60_000,
    )
    page.click("#mic")  # off: the microphone only hears the fake file's silence now

    heard = texts(page, ".turn.user:not(.partial) .text")[0]
    said = set(normalize_words(QUESTION))
    assert len(said & set(normalize_words(heard))) >= len(said) // 2, heard
    reply = texts(page, ".turn.assistant .text")[0]
    assert normalize_words(reply), "the reply bubble is empty"
    assert "voice to voice" in texts(page, ".turn.assistant .meta")[0]

    stats = page.evaluate("window.voicechat.stats")
    assert stats["micSamples"] > 16000, stats  # the microphone streamed (more than a second of 16 kHz audio)
    assert stats["partials"] > 0, stats  # the words showed while they were spoken
    assert stats["audioSamples"] > 0 and stats["audioSeconds"] > 0.2, stats  # reply audio reached the page
    assert 0 < stats["playedSeconds"] <= stats["audioSeconds"] + 0.01, stats  # ... and was played through
    turns = page.evaluate("window.voicechat.turns")
    assert [t["role"] for t in turns[:2]] == ["user", "assistant"]
    assert turns[0]["source"] == "voice" and turns[1]["latency"]["seconds"] > 0
    shots(page, "voice-desktop")
    page.set_viewport_size(PHONE)
    no_horizontal_scroll(page)
    shots(page, "voice-phone")
    assert not errors, errors
    page.context.close()


@pytest.mark.serial
def test_typed_text_stop_csv_and_clear(browser, server, shots, tmp_path):
    page, errors = open_page(browser, server, viewport=PHONE, color_scheme="dark", has_touch=True, is_mobile=True)
    wait_connected(page)
    shots(page, "empty-phone-dark")

    page.fill("#text", "Say hello in one short sentence.")
    page.press("#text", "Enter")
    page.wait_for_function(
        "window.voicechat.turns.filter(t => t.role === 'assistant').length === 1 && window.voicechat.stats.playedReplies === 1",
        timeout=60_000,
    )
    assert texts(page, ".turn.user .text") == ["Say hello in one short sentence."]
    assert "typed" in texts(page, ".turn.user .meta")[0]
    assert "to first audio" in texts(page, ".turn.assistant .meta")[0]
    assert page.evaluate("window.voicechat.stats.playedSeconds") > 0

    # stop: the reply stops at once, the page says how much it played, the turn is marked interrupted
    before = page.evaluate("window.voicechat.stats.audioMessages")
    page.fill("#text", "Count from one to forty, writing every number as a word.")
    page.press("#text", "Enter")
    page.wait_for_function(f"window.voicechat.stats.audioMessages > {before}", timeout=60_000)
    page.wait_for_timeout(400)  # some of it plays
    page.click("#stop")
    page.wait_for_function("window.voicechat.turns.filter(t => t.role === 'assistant').length === 2", timeout=30_000)
    last = page.evaluate("window.voicechat.turns.at(-1)")
    assert last["interrupted"] is True, last
    assert page.locator(".turn.assistant.interrupted .tag").inner_text() == "interrupted"
    no_horizontal_scroll(page)
    shots(page, "typed-phone-dark")
    page.set_viewport_size(DESKTOP)
    shots(page, "typed-desktop-dark")

    with page.expect_download() as download:
        page.click("#download")
    path = tmp_path / "turns.csv"
    download.value.save_as(path)
    assert download.value.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
    shown = page.evaluate("window.voicechat.turns")
    assert [r["role"] for r in rows] == ["user", "assistant", "user", "assistant"]
    assert [r["text"] for r in rows] == [t["text"] for t in shown]
    assert rows[0]["text"] == "Say hello in one short sentence."
    assert [r["interrupted"] for r in rows] == ["", "false", "", "true"]
    assert float(rows[1]["latency_s"]) > 0 and rows[0]["latency_s"] == ""
    assert all(r["time"].endswith("Z") for r in rows)

    # clear, in the middle of a reply: the view empties and what is left of that reply does not come back
    before = page.evaluate("window.voicechat.stats.audioMessages")
    page.fill("#text", "Tell me a long story about a dragon and a knight.")
    page.press("#text", "Enter")
    page.wait_for_function(f"window.voicechat.stats.audioMessages > {before}", timeout=60_000)
    page.click("#clear")
    page.wait_for_selector(".line.notice:has-text('cleared')", timeout=10_000)  # the server's word
    page.wait_for_function("window.voicechat.status === 'listening'", timeout=30_000)  # that turn is over
    assert page.locator(".turn").count() == 0
    assert page.evaluate("window.voicechat.turns.length") == 0
    assert page.locator("#download").is_disabled()
    assert not errors, errors
    page.context.close()


@pytest.mark.serial
def test_the_page_asks_for_the_key_and_works_once_it_is_entered(browser, server, shots):
    page, errors = open_page(browser, server, key=None, viewport=PHONE)
    page.wait_for_selector("#key:not([hidden])", timeout=15_000)
    assert page.locator("#status").inner_text() == "needs a key"
    assert page.locator("#text").is_disabled() and page.locator("#clear").is_disabled() and page.locator("#mic").is_disabled()
    shots(page, "key-phone")

    page.fill("#key-input", "not the key")
    page.press("#key-input", "Enter")
    page.wait_for_selector("#key.wrong", timeout=15_000)
    assert "not accept" in page.locator("#key-why").inner_text()

    page.fill("#key-input", KEY)
    page.click("#key-submit")
    wait_connected(page)
    assert page.locator("#key").is_hidden()
    page.fill("#text", "Hello!")
    page.press("#text", "Enter")
    page.wait_for_function("window.voicechat.turns.some(t => t.role === 'assistant')", timeout=60_000)

    page.reload()  # the key stays in this browser
    wait_connected(page)
    assert page.locator("#key").is_hidden()
    assert not errors, errors
    page.context.close()
    assert KEY not in server.log_text()
    assert base64.urlsafe_b64encode(KEY.encode()).decode().rstrip("=") not in server.log_text()
