"""`voicechat say`: every TTS engine, through a real (virtual) sound card or into files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.helpers import VOICECHAT, assert_one_line_error, run_cli, wer
from tests.servers import OpenAILikeServer
from tests.soundcard import SPEAKER_RATE
from voicechat.cli import app

runner = CliRunner()
TEXT = "Hello there. This is a test of the speech system, and it should sound clear."


def test_say_plays_through_the_sound_card(card, hear):
    result = run_cli("say", TEXT, env=card.env)
    assert result.returncode == 0, result.stderr.decode()
    audio = card.speaker_audio()
    seconds = len(audio) / SPEAKER_RATE
    assert 2.5 < seconds < 8, seconds  # the device's rate (48 kHz) after conversion from piper's 22.05 kHz
    assert np.abs(audio).max() > 0.1
    assert wer(TEXT, hear(audio, SPEAKER_RATE)) <= 0.2


def test_output_device_by_name_and_index(card, hear):
    from voicechat.audio import list_devices

    index = next(d["index"] for d in list_devices() if d["name"] == "vc_speaker")
    for spec in ("VC_SPEAKER", str(index)):
        card.clear_speaker()
        result = run_cli("say", "One two three.", "--output-device", spec, env=card.env)
        assert result.returncode == 0, result.stderr.decode()
        assert len(card.speaker_audio()) > SPEAKER_RATE * 0.5


@pytest.mark.parametrize(
    "spec,needle", [("vc_", "ambiguous"), ("no-such-card", "no output device matches"), ("99", "no output device with index 99")]
)
def test_bad_device_lists_choices(card, spec, needle):
    result = runner.invoke(app, ["say", "hi", "--output-device", spec])  # in this process: the card is its sound card
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, needle, "vc_speaker")


def test_devices_table(card):
    result = runner.invoke(app, ["devices", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    names = {r["name"] for r in rows}
    assert {"vc_mic", "vc_speaker", "default"} <= names
    assert any(r["default_output"] for r in rows)
    table = runner.invoke(app, ["devices"])
    assert "vc_speaker" in table.stdout


def test_no_sound_device_is_one_line(tmp_path):
    result = run_cli("say", "hello", env={"ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"})
    assert result.returncode == 1
    assert_one_line_error(result.stderr.decode(), "no output sound device")


def test_missing_portaudio_is_one_line(tmp_path):
    """sounddevice raises OSError when libportaudio is absent; voicechat says what to install."""
    fake = tmp_path / "noportaudio"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    result = run_cli("devices", env={"PYTHONPATH": str(fake)})
    assert result.returncode == 1
    assert_one_line_error(result.stderr.decode(), "libportaudio2")


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_say_to_file(tmp_path, hear, ext):
    out = tmp_path / f"speech.{ext}"
    result = runner.invoke(app, ["say", TEXT, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    audio, rate = sf.read(str(out), dtype="float32")
    assert rate == 22050 and 2.5 < len(audio) / rate < 8
    assert wer(TEXT, hear(audio, rate)) <= 0.2
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_say_reads_stdin(tmp_path, hear):
    out = tmp_path / "piped.wav"
    result = run_cli("say", "-o", str(out), input=b"Reading from a pipe works fine.")
    assert result.returncode == 0, result.stderr.decode()
    audio, rate = sf.read(str(out))
    assert wer("Reading from a pipe works fine.", hear(audio, rate)) <= 0.2


@pytest.mark.parametrize(
    "args,stdin,needle",
    [
        (["   "], None, "empty"),
        (["-"], b"  \n\t ", "empty"),
        (["\U0001f600\U0001f389"], None, "nothing speakable"),
        (["hi", "--voice", "/nope/voice.onnx"], None, "not found"),
        (["hi", "--engine", "sapi"], None, "unknown text-to-speech engine 'sapi'"),
        (["hi", "-o", "/no/such/dir/x.wav"], None, "does not exist"),
        (["hi", "-o", "out.mp3"], None, "unsupported audio extension '.mp3'"),
        (["hi", "--engine", "espeak", "--voice", "klingon"], None, "no voice 'klingon'"),
    ],
)
def test_say_bad_input(tmp_path, args, stdin, needle):
    result = runner.invoke(app, ["say", *args], input=stdin or b"")  # (the console script's own wrapper: test_no_sound_device_is_one_line)
    assert result.exit_code != 0
    assert_one_line_error(result.stderr, needle)
    assert not list(tmp_path.iterdir())


def test_awkward_text_is_spoken(tmp_path, hear):
    text = "Warning:\x07 <b>bold</b> & <script>alert(1)</script> costs \u20ac5 \U0001f600 today."
    out = tmp_path / "awkward.wav"
    result = run_cli("say", text, "-o", str(out))
    assert result.returncode == 0, result.stderr.decode()
    audio, rate = sf.read(str(out))
    assert "today" in re.sub(r"[^a-z]", "", hear(audio, rate).lower())  # (Whisper may write "to-day")


def _say_peak_rss_kb(text: str, env: dict) -> int:
    """Peak RSS of `voicechat say --engine espeak -` reading ``text`` from stdin (from a small wrapper process,
    so that pytest's own pages are not counted)."""
    code = (
        "import resource, subprocess, sys\n"
        f"p = subprocess.run([{VOICECHAT!r}, 'say', '--engine', 'espeak', '-'], input=sys.stdin.buffer.read(), capture_output=True)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.stderr.decode()[-300:])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=text.encode(), capture_output=True, env=env, timeout=600)
    rc, maxrss_kb, err = out.stdout.decode().split(" ", 2)
    assert rc == "0", err
    return int(maxrss_kb)


def test_huge_text_streams_in_bounded_memory(card):
    """A long text from stdin through espeak: memory does not grow with the text (it is chunked as it is read,
    and each chunk's audio is played and let go). Measured at two lengths: 10,000 more characters are about
    11 minutes of speech, 57 MB as float32 at espeak's 22.05 kHz (more once resampled for the device); a
    `say` that held the text's audio, or ran ahead of the speaker, grows by that much."""
    text = " ".join(f"This is sentence number {i} of a very long text." for i in range(300))
    env = {**os.environ, **card.env, "VC_SPEAKER_FILE": "/dev/null"}
    short = _say_peak_rss_kb(text[:2_000], env)
    long = _say_peak_rss_kb(text[:12_000], env)
    assert long - short < 20_000, f"peak RSS {short // 1024} MB for 2,000 characters, {long // 1024} MB for 12,000"


def test_espeak_engine(tmp_path, hear):
    out = tmp_path / "e.wav"
    result = runner.invoke(app, ["say", "The quick brown fox.", "--engine", "espeak", "--speed", "0.9", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    audio, rate = sf.read(str(out))
    assert rate == 22050 and "fox" in hear(audio, rate).lower()
    voices = runner.invoke(app, ["say", "--engine", "espeak", "--list-voices"])
    assert "en-us" in voices.stdout


def test_piper_list_voices_and_speed(tmp_path):
    result = runner.invoke(app, ["say", "--list-voices"])
    assert "en_US-joe-medium" in result.stdout
    lengths = {}
    for speed in ("1.0", "2.0"):
        out = tmp_path / f"s{speed}.wav"
        assert runner.invoke(app, ["say", "Counting one two three four five.", "--speed", speed, "-o", str(out)]).exit_code == 0
        lengths[speed] = sf.info(str(out)).duration
    assert lengths["2.0"] < 0.7 * lengths["1.0"]


def test_openai_engine_streams_from_loopback_server(tmp_path, hear):
    with OpenAILikeServer() as server:
        out = tmp_path / "o.wav"
        result = runner.invoke(
            app,
            ["say", TEXT, "--engine", "openai", "--voice", "nova", "-o", str(out)],
            env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-abcdefghijklmnop"},
        )
        assert result.exit_code == 0, result.stderr
        audio, rate = sf.read(str(out))
        assert rate == 24000
        assert wer(TEXT, hear(audio, rate)) <= 0.2
        bodies = [json.loads(r["body"]) for r in server.requests]
        assert all(b["response_format"] == "pcm" and b["voice"] == "nova" for b in bodies)
        assert len(bodies) >= 2, "one request per chunk, so the first sentence plays early"
        server.mode = "401"
        bad = runner.invoke(
            app,
            ["say", "hi", "--engine", "openai", "-o", str(tmp_path / "x.wav")],
            env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-wrong-abcdefghijklmnop"},
        )
        assert bad.exit_code == 1 and "rejected the API key" in bad.stderr
        assert "sk-wrong-abcdefghijklmnop" not in bad.stderr


def test_coqui_engine_with_a_model_built_here(tmp_path, card):
    """A tiny random VITS saved to disk and loaded through Coqui's public API, as a user's model would be.
    The file is written by the installed command (a process of its own, as a user runs it); playback and the
    missing-model error run in this process, where building the model has already imported Coqui and torch
    (each process of its own would spend seconds importing them again)."""
    from tests.coqui_tiny import build

    checkpoint, config = build(tmp_path / "vits")
    out = tmp_path / "c.wav"
    result = run_cli(
        "say",
        "Hello from coqui. A second sentence.",
        "--engine",
        "coqui",
        "--voice",
        str(checkpoint),
        "-o",
        str(out),
        env={"VOICECHAT_TTS_MODEL": str(config)},
    )
    assert result.returncode == 0, result.stderr.decode()
    audio, rate = sf.read(str(out))
    assert rate == 16000 and len(audio) > 1600 and np.abs(audio).max() > 0
    played = runner.invoke(
        app, ["say", "Through the speaker.", "--engine", "coqui", "--voice", str(checkpoint)], env={"VOICECHAT_TTS_MODEL": str(config)}
    )
    assert played.exit_code == 0, played.stderr
    assert len(card.speaker_audio()) > 0
    missing = runner.invoke(app, ["say", "x", "--engine", "coqui", "--voice", str(tmp_path / "nope.pth")])
    assert missing.exit_code == 1
    assert_one_line_error(missing.stderr, "nope.pth")


def test_first_audio_comes_before_the_paragraph_is_synthesized(card):
    """Streaming: the speaker gets the first chunk while later sentences are still being synthesized."""
    import time

    from voicechat import sentences
    from voicechat.audio import Speaker
    from voicechat.config import resolve
    from voicechat.engines import registry

    tts = registry.create("tts", resolve(environ={}))
    done_at = []
    with Speaker("vc_speaker") as speaker:
        for chunk in sentences.chunks("One. Two is here. Three is here too. Four follows. Five ends it."):
            for audio in tts.synthesize(chunk):
                speaker.play(audio)
            done_at.append(time.perf_counter())
    assert len(done_at) == 5
    assert speaker.first_audio_at is not None and speaker.first_audio_at < done_at[1]


def test_speaker_stop_is_immediate_and_reports_what_played(card):
    from voicechat.audio import Speaker
    from voicechat.engines.base import AudioChunk

    with Speaker("vc_speaker") as speaker:
        speaker.play(AudioChunk(np.full(22050 * 3, 0.1, dtype=np.float32), 22050, "one two three four five six"))
        speaker.stop()
    played = speaker.played
    assert played.samples < 48000 * 3
    assert played.texts == []


@pytest.mark.serial
def test_device_vanishing_mid_stream_is_one_line(tmp_path):
    """Kill the sound server while `say` plays: one clear line, non-zero exit, no traceback."""
    import time

    from tests.soundcard import PulseCard

    if not PulseCard.available():
        pytest.fail("PulseAudio is required for this test (scripts/setup.sh test installs it)")
    with PulseCard(tmp_path / "pulse") as pulse:
        proc = subprocess.Popen(
            [VOICECHAT, "say", "--engine", "espeak", "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ)
        )
        proc.stdin.write(b"This goes on for a while. " * 40)
        proc.stdin.close()
        time.sleep(2.0)
        pulse.proc.kill()
        pulse.proc.wait()
        err = proc.stderr.read().decode()
        assert proc.wait(30) != 0
    assert_one_line_error(err, "device")


@pytest.mark.serial
def test_speaker_hold_pauses_at_once_and_goes_on_without_losing_audio(tmp_path):
    """hold(True) silences the speaker now (the device's buffer is dropped, not played out), hold(False) goes on
    where it stopped: the play times the speaker reports (what an echo canceller hears of it) jump by the pause,
    the drop is reported, and the tone is heard whole but for what the sound server itself had buffered."""
    import time

    from tests.soundcard import PulseCard
    from voicechat.audio import Speaker
    from voicechat.engines.base import AudioChunk

    class Tap:  # the interface an echo canceller's far end has
        def __init__(self) -> None:
            self.blocks: list[tuple[float, int]] = []
            self.cuts: list[float] = []

        def add(self, samples: np.ndarray, rate: int, play_time: float) -> None:
            self.blocks.append((play_time, len(samples)))

        def cut(self, at: float) -> None:
            self.cuts.append(at)

    if not PulseCard.available():
        pytest.fail("PulseAudio is required for this test (scripts/setup.sh test installs it)")
    rate = 24000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate * 3) / rate).astype(np.float32)
    tap = Tap()
    with PulseCard(tmp_path / "pulse") as pulse:
        pulse.start_recording()
        with Speaker("pulse", latency=0.1, sample_rate=rate) as speaker:
            speaker.tap = tap
            speaker.play(AudioChunk(tone, rate, "a three second tone"))
            time.sleep(1.0)
            held_at = time.perf_counter()
            assert speaker.hold(True), "the tone was playing"
            assert speaker.held
            time.sleep(1.0)
            speaker.hold(False)
            speaker.drain()
            assert speaker.hold(True) is False  # nothing playing: nothing held
            speaker.hold(False)
        time.sleep(0.5)
        heard = pulse.stop_recording()
    assert len(tap.cuts) == 1 and held_at <= tap.cuts[0]  # (how soon is measured by bench/echo_rig.py, not here)
    late = [b[0] - a[0] - a[1] / rate for a, b in zip(tap.blocks, tap.blocks[1:], strict=False)]
    assert max(late) >= 0.9, "playback did not pause"
    assert sum(n for _, n in tap.blocks) > len(tone), "what the pause dropped from the buffer was not played again"
    hop = 480  # 10 ms at 48 kHz
    n = len(heard) // hop
    loud = int((np.sqrt(np.mean(heard[: n * hop].reshape(n, hop) ** 2, axis=1)) > 0.05).sum())
    assert 270 <= loud <= 310, f"{loud} loud 10 ms blocks; the tone has 300"
    assert speaker.played.texts == ["a three second tone"]


def test_alsa_lines_do_not_reach_the_terminal():
    """ALSA's library prints its recoveries ("underrun occurred") on stderr, over the live view; once voicechat has
    loaded the sound library they go nowhere, unless --debug (VOICECHAT_DEBUG) asks for them. An unknown ALSA
    device makes ALSA complain the same way."""
    code = (
        "import ctypes; from voicechat.audio import sd; sd(); p = ctypes.c_void_p(); "
        "print(ctypes.CDLL('libasound.so.2').snd_pcm_open(ctypes.byref(p), b'no_such_pcm', 0, 0))"
    )
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, env={**os.environ, "VOICECHAT_DEBUG": ""})
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, env={**os.environ, "VOICECHAT_DEBUG": "1"})
    assert int(quiet.stdout) < 0 and int(loud.stdout) < 0  # ALSA refused the device both times
    assert b"no_such_pcm" in loud.stderr, loud.stderr
    assert quiet.stderr == b"", quiet.stderr
