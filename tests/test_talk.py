"""`voicechat talk` end to end: real engines, a virtual sound card, real subprocesses and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from tests.events import Events
from tests.helpers import VOICECHAT, assert_one_line_error, isolate, normalize_words, run_cli, run_clis, speak, wer, write_wav
from tests.soundcard import PulseCard
from voicechat import paths
from voicechat.conversation.history import History
from voicechat.voice.self_echo import is_stop

Q1 = "What is the capital of France?"
Q2 = "Tell me a fun fact about cats."
FAST_LLM = {"VOICECHAT_LLM_MAX_TOKENS": "48", "VOICECHAT_LLM_TEMPERATURE": "0"}


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16000 * seconds), dtype=np.float32)


@pytest.fixture(scope="module")
def questions():
    return speak(Q1), speak(Q2)


def history_turns():
    if not paths.history_db().exists():
        return []
    with History(paths.history_db()) as h:
        sid = h.last_session_id()
        return h.turns(sid) if sid else []


_live: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_stray_processes():
    """A failing test must not leave a talk process behind."""
    yield
    while _live:
        proc = _live.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class TalkProcess:
    """`voicechat talk --json` as a subprocess; events (stdout) and stderr are read by threads, so a flood
    on either never stalls the process."""

    def __init__(self, *args: str, env: dict | None = None, stdin=subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(
            [VOICECHAT, "talk", "--json", *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **FAST_LLM, **(env or {})},
        )
        _live.append(self.proc)
        self._log = Events()
        self.events: list[dict] = self._log.items
        self._err: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                self._log.add(json.loads(line))
        finally:
            self._log.end()  # stdout closed (the process ended) or a line that is not JSON: no more events

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self._err.append(line)

    def wait_for(self, predicate, timeout: float = 120.0, after: dict | None = None) -> dict:
        """The first event matching predicate (after the given event, if any)."""
        return self._log.wait_for(predicate, timeout, after, why=lambda: f"{self.story()}; stderr: {self.stderr_text()[-2000:]}")

    def story(self) -> str:
        """What happened, one short line per event that matters (partial transcripts and timings left out)."""
        lines = []
        for e in self.events:
            kind = e["type"]
            if kind in ("user", "reply"):
                cut = " (interrupted)" if e.get("interrupted") else ""
                lines.append(f"{kind}{cut}: {e.get('text', '')[:80]!r}")
            elif kind == "notice":
                lines.append(f"notice: {e['message'][:100]}")
            elif kind == "status":
                lines.append(e["state"])
        return "events: " + " | ".join(lines)

    def count(self, type_: str) -> int:
        return sum(1 for e in self.events if e["type"] == type_)

    def stderr_text(self) -> str:
        """What the process wrote on stderr so far (all of it once it has ended)."""
        if self.proc.poll() is not None:
            self._err_reader.join(5)
        return b"".join(self._err).decode(errors="replace")

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        self._err_reader.join(5)
        return code


@pytest.mark.serial
def test_two_questions_through_the_sound_card(tmp_path, questions, hear):
    """Two spoken questions with silence between: exactly two turns, two replies out of the speaker, both logged."""
    if not PulseCard.available():
        pytest.fail("PulseAudio is required (scripts/setup.sh test installs it)")
    with PulseCard(tmp_path / "pulse") as card:
        card.start_recording()
        talk = TalkProcess()
        talk.wait_for(lambda e: e == {"type": "status", "state": "listening"})
        card.feed_mic(np.concatenate([questions[0], silence(1.0)])).wait()
        reply = talk.wait_for(lambda e: e["type"] == "reply")
        talk.wait_for(lambda e: e == {"type": "status", "state": "listening"}, after=reply)
        card.feed_mic(np.concatenate([questions[1], silence(1.0)])).wait()
        reply = talk.wait_for(lambda e: e["type"] == "reply", after=reply)
        talk.wait_for(lambda e: e == {"type": "status", "state": "listening"}, after=reply)
        time.sleep(0.5)
        talk.proc.send_signal(signal.SIGINT)
        assert talk.finish() == 0, talk.stderr_text()
        played = card.stop_recording()
    users = [e["text"] for e in talk.events if e["type"] == "user"]
    replies = [e["text"] for e in talk.events if e["type"] == "reply"]
    assert len(users) == 2 and len(replies) == 2
    assert wer(Q1, users[0]) <= 0.25 and wer(Q2, users[1]) <= 0.25
    assert all(r.strip() for r in replies)
    heard = hear(played, 48000)
    said, got = set(normalize_words(" ".join(replies))), set(normalize_words(heard))
    # every reply was played; Whisper shortens a model's reply that repeats itself ("3. The cat is the most
    # popular animal in" again and again, in CI), so such a reply is judged by the words heard of it
    assert wer(" ".join(replies), heard) <= 0.35 or len(said & got) >= 0.6 * len(said), (replies, heard)
    summary = talk.events[-1]
    assert summary["type"] == "summary" and summary["turns"] == 2 and summary["p50"] > 0
    stats = [e for e in talk.events if e["type"] == "turn_stats"]
    assert all({"stt", "first_token", "first_audio", "voice_to_voice"} <= set(s["latency"]) for s in stats)
    turns = history_turns()
    assert [t.user_text for t in turns] == users and [t.assistant_text for t in turns] == replies
    assert all(t.latency.get("voice_to_voice") for t in turns)


@pytest.mark.serial
def test_barge_in_stops_playback_and_truncates_the_logged_reply(tmp_path, questions):
    if not PulseCard.available():
        pytest.fail("PulseAudio is required (scripts/setup.sh test installs it)")
    with PulseCard(tmp_path / "pulse") as card:
        talk = TalkProcess(
            "--barge-in",
            "--system",
            "Answer with a long, detailed story of at least ten sentences.",
            env={"VOICECHAT_LLM_MAX_TOKENS": "200"},
        )
        talk.wait_for(lambda e: e == {"type": "status", "state": "listening"})
        card.feed_mic(np.concatenate([questions[1], silence(1.0)])).wait()
        talk.wait_for(lambda e: e["type"] == "status" and e["state"] == "speaking")
        # (well into the first reply, past the canceller's start-up: it keeps the microphone deaf until converged,
        # and takes about 1.3 s of playback to find that this one does not hear the speaker; spoken at 1 s, under
        # CI's load, the words once went unheard, most likely for that reason)
        time.sleep(2.5)
        card.feed_mic(np.concatenate([speak("Stop, wait a moment."), silence(1.0)])).wait()
        talk.wait_for(lambda e: e["type"] == "notice" and e["message"].startswith("barge-in"))
        first_reply = talk.wait_for(lambda e: e["type"] == "reply")
        # the interjection stopped the reply; it is not a question (on a loaded machine it may end as two turns)
        cut = talk.wait_for(
            lambda e: e["type"] == "user" or (e["type"] == "notice" and e["message"].startswith("stopped")), after=first_reply
        )
        if cut["type"] == "user":  # misheard, it is a turn like any other (CI under load heard "Scott, wait a moment.")
            assert not is_stop(cut["text"], ""), talk.story()
            cut = talk.wait_for(lambda e: e["type"] == "reply", after=cut, timeout=180)
        talk.wait_for(lambda e: e == {"type": "status", "state": "listening"}, after=cut)
        time.sleep(2.0)
        card.feed_mic(np.concatenate([questions[0], silence(1.0)])).wait()
        asked = talk.wait_for(lambda e: e["type"] == "user", after=cut)
        talk.wait_for(lambda e: e["type"] == "reply", after=asked, timeout=180)
        talk.proc.send_signal(signal.SIGINT)
        assert talk.finish() == 0
    streamed = "".join(e["text"] for e in talk.events[: talk.events.index(first_reply)] if e["type"] == "reply_delta")
    assert first_reply["interrupted"] is True
    assert len(first_reply["text"]) < len(streamed.strip()), "only what was played is kept"
    assert wer(Q1, asked["text"]) <= 0.25, asked
    turns = history_turns()
    assert turns[0].interrupted and turns[0].assistant_text == first_reply["text"]
    users = [e["text"] for e in talk.events if e["type"] == "user"]
    assert users[-1] == asked["text"] and len(users) in (2, 3) and [t.user_text for t in turns] == users, talk.story()


def test_file_input_fast_with_output_file(tmp_path, questions, hear):
    conv = write_wav(tmp_path / "conv.wav", np.concatenate([silence(0.5), questions[0], silence(1.5), questions[1], silence(0.5)]))
    out = tmp_path / "replies.wav"
    result = run_cli("talk", "--input", str(conv), "--fast", "--output", str(out), "--json", env=FAST_LLM)
    assert result.returncode == 0, result.stderr.decode()
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    users = [e["text"] for e in events if e["type"] == "user"]
    replies = [e["text"] for e in events if e["type"] == "reply"]
    assert len(users) == 2 and wer(Q1, users[0]) <= 0.25
    audio, rate = sf.read(str(out))
    assert wer(" ".join(replies), hear(audio, rate)) <= 0.35
    assert len(history_turns()) == 2


NO_SPEECH = ("silence", "noise", "cough")


@pytest.fixture(scope="module")
def no_speech_runs(tmp_path_factory) -> dict:
    """`talk --input` on each recording with no speech in it, the three processes side by side, each with
    its own data dir: kind -> (result, the turns its history holds)."""
    rng = np.random.default_rng(0)
    calls, homes = [], {}
    for kind in NO_SPEECH:
        home = tmp_path_factory.mktemp(f"no-speech-{kind}")
        if kind == "silence":
            audio = silence(6)
        elif kind == "noise":
            audio = (rng.standard_normal(16000 * 6) * 0.02).astype(np.float32)
        else:  # a short loud burst
            audio = np.concatenate([silence(2), (rng.standard_normal(1600) * 0.5).astype(np.float32), silence(3)])
        path = write_wav(home / f"{kind}.wav", audio)
        env = {f"VOICECHAT_{name}_DIR": str(home / name.lower()) for name in ("CONFIG", "DATA", "CACHE")}
        calls.append({"args": ("talk", "--input", str(path), "--fast", "--output", str(home / "o.wav"), "--json"), "env": env})
        homes[kind] = home / "data"
    with pytest.MonkeyPatch.context() as mp:  # (module fixtures run before the per-test isolation)
        isolate(mp, tmp_path_factory.mktemp("no-speech-home"))
        results = run_clis(*calls)
    runs = {}
    for kind, result in zip(NO_SPEECH, results, strict=True):
        db = homes[kind] / paths.history_db().name
        turns = []
        if db.exists():
            with History(db) as h:
                sid = h.last_session_id()
                turns = h.turns(sid) if sid else []
        runs[kind] = (result, turns)
    return runs


@pytest.mark.parametrize("kind", NO_SPEECH)
def test_no_speech_gives_zero_turns(no_speech_runs, kind):
    result, turns = no_speech_runs[kind]
    assert result.returncode == 0, result.stderr.decode()
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert not [e for e in events if e["type"] in ("user", "reply")]
    assert events[-1]["type"] == "summary" and events[-1]["turns"] == 0
    assert turns == []


def test_typed_input_without_microphone(tmp_path):
    """No sound devices at all: talk says so once and takes typed messages; replies are printed."""
    env = {**FAST_LLM, "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"}
    result = run_cli("talk", input=b"Hello, who are you?\n/tokens\n", env=env)
    assert result.returncode == 0, result.stderr.decode()
    out, err = result.stdout.decode(), result.stderr.decode()
    assert "you: Hello, who are you?" in out and "assistant: " in out
    assert err.count("no microphone") == 1 and "no speaker" in err
    assert [t.user_text for t in history_turns()] == ["Hello, who are you?"]
    again = run_cli("talk", "--continue", input=b"And what can you do?\n", env=env)
    assert again.returncode == 0, again.stderr.decode()
    assert "resumed session" in again.stderr.decode()
    assert [t.user_text for t in history_turns()] == ["Hello, who are you?", "And what can you do?"]


def test_bad_input_file_and_options(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    r = run_clis(
        {"args": ("talk", "--input", str(bad))},
        {"args": ("talk", "--mode", "ptt")},
        {"args": ("talk", "--mode", "loud"), "input": b""},
        {"args": ("talk", "--output", str(tmp_path / "x.mp3"))},
        {"args": ("talk",), "input": b"", "env": {"VOICECHAT_TURN_MODEL": str(tmp_path / "none.onnx")}},
        {"args": ("talk",), "input": b"", "env": {"VOICECHAT_TURN_DETECTOR": "vibes"}},
    )
    assert r[0].returncode == 1
    assert_one_line_error(r[0].stderr.decode(), "bad.wav", "not an audio file")
    assert_one_line_error(r[1].stderr.decode(), "push-to-talk needs a terminal")
    assert_one_line_error(r[2].stderr.decode(), "--mode is 'loud'")
    assert_one_line_error(r[3].stderr.decode(), "unsupported audio extension")
    assert r[4].returncode == 1
    assert_one_line_error(r[4].stderr.decode(), "turn.model", "does not exist")
    assert r[5].returncode == 2  # a configuration error, like every bad config value
    assert_one_line_error(r[5].stderr.decode(), "turn.detector")


@pytest.mark.serial
@pytest.mark.parametrize("stage", ["listening", "thinking", "speaking"])
def test_ctrl_c_at_each_stage_exits_cleanly(tmp_path, questions, stage):
    if not PulseCard.available():
        pytest.fail("PulseAudio is required (scripts/setup.sh test installs it)")
    with PulseCard(tmp_path / "pulse") as card:
        talk = TalkProcess(env={"VOICECHAT_LLM_MAX_TOKENS": "120"})
        talk.wait_for(lambda e: e == {"type": "status", "state": "listening"})
        completed = 0
        if stage != "listening":
            card.feed_mic(np.concatenate([questions[0], silence(1.0)])).wait()
            reply = talk.wait_for(lambda e: e["type"] == "reply")  # one completed turn first
            talk.wait_for(lambda e: e == {"type": "status", "state": "listening"}, after=reply)
            completed = 1
            card.feed_mic(np.concatenate([questions[1], silence(1.0)]))
            talk.wait_for(lambda e: e == {"type": "status", "state": stage}, after=reply)
        talk.proc.send_signal(signal.SIGINT)
        code = talk.finish()
    assert code == 0, talk.stderr_text()
    assert talk.events[-1]["type"] == "summary"
    turns = history_turns()
    assert len(turns) >= completed
    assert all(t.user_text for t in turns)
    if stage == "listening":
        assert turns == []


@pytest.mark.serial
def test_push_to_talk_from_a_pseudo_terminal(tmp_path, questions):
    """Space starts recording, space stops it; the recording becomes a turn. Driven through a real pty."""
    import pty
    import select

    if not PulseCard.available():
        pytest.fail("PulseAudio is required (scripts/setup.sh test installs it)")
    with PulseCard(tmp_path / "pulse") as card:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [VOICECHAT, "talk", "--json", "--mode", "ptt"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, **FAST_LLM},
            close_fds=True,
        )
        _live.append(proc)
        os.close(slave)
        buf = b""

        def read_until(needle: bytes, timeout: float = 120) -> None:
            nonlocal buf
            deadline = time.monotonic() + timeout
            while needle not in buf:
                assert time.monotonic() < deadline, buf.decode(errors="replace")[-2000:]
                if select.select([master], [], [], 0.2)[0]:
                    try:
                        buf += os.read(master, 65536)
                    except OSError:
                        break

        read_until(b'"state": "idle"')
        os.write(master, b" ")
        read_until(b'"state": "recording"')
        card.feed_mic(np.concatenate([questions[0], silence(0.3)])).wait()
        os.write(master, b" ")
        read_until(b'"type": "reply"')
        os.write(master, b"/quit\n")
        read_until(b'"type": "summary"')
        assert proc.wait(30) == 0
        os.close(master)
    users = [json.loads(line)["text"] for line in buf.decode(errors="replace").splitlines() if line.startswith('{"type": "user"')]
    assert len(users) == 1 and wer(Q1, users[0]) <= 0.3


def test_sigterm_ends_talk_like_ctrl_c_and_keeps_the_replies(tmp_path, questions):
    conv = write_wav(tmp_path / "conv.wav", np.concatenate([silence(0.5), questions[0], silence(8.0), questions[1], silence(8.0)]))
    out = tmp_path / "replies.wav"
    talk = TalkProcess("--input", str(conv), "--output", str(out), env={"ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"})
    talk.wait_for(lambda e: e["type"] == "reply")
    talk.proc.send_signal(signal.SIGTERM)
    assert talk.finish() == 0, talk.stderr_text()
    assert talk.events[-1]["type"] == "summary" and talk.events[-1]["turns"] >= 1
    audio, rate = sf.read(str(out))
    assert len(audio) > rate // 2
    assert not list(tmp_path.glob(".replies*"))
    assert len(history_turns()) >= 1
