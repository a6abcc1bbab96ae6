"""The wake word: spoken by two voices (piper's joe and espeak-ng) it wakes the session; other speech
and noise do not; asleep, talk ignores what it hears; awake, it takes one request (or more, for
listen.wake_stay_s after the last turn)."""

from __future__ import annotations

import io
import json
import subprocess

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import run_cli, speak, wer, write_wav

OTHER = [
    "The weather today is mild with a light breeze from the west.",
    "Could you pass me the salt, please?",
    "Jarvis Cocker was the singer of the band.",
    "Hey, how are you doing today?",
]


def espeak(text: str, voice: str = "en-us") -> np.ndarray:
    import soxr

    wav = subprocess.run(["espeak-ng", "--stdout", "-v", voice, "-s", "150", text], capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, 16000).astype(np.float32)


def detections(audio: np.ndarray, word: str = "hey_jarvis") -> int:
    from voicechat.voice.wake import WakeWord

    detector = WakeWord(word)
    pcm = (np.clip(np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(16000, np.float32)]), -1, 1) * 32767).astype("<i2").tobytes()
    hits = 0
    for i in range(0, len(pcm), 960):  # 30 ms frames, as the listener reads them
        if detector.heard(pcm[i : i + 960]):
            hits += 1
            detector.reset()
    detector.close()
    return hits


def test_the_bundled_models_are_the_words_offered():
    from pyopen_wakeword import Model

    from voicechat.voice.wake import WORDS

    assert sorted(WORDS) == sorted(m.value for m in Model)


@pytest.mark.parametrize("voice", ["piper", "espeak"])
def test_the_wake_word_wakes_it(voice):
    audio = speak("Hey Jarvis.") if voice == "piper" else espeak("hey jarvis")
    assert detections(audio) == 1


def test_other_speech_and_noise_do_not():
    rng = np.random.default_rng(0)
    # (piper's steady takes: a random take of them once woke it, in 1 run of 11 here; bench/wake.py measures false wakes per hour)
    speech = np.concatenate([speak(t, steady=True) for t in OTHER] + [espeak(t) for t in OTHER])
    noise = np.concatenate(
        [
            (rng.standard_normal(16000 * 10) * 0.05).astype(np.float32),  # hiss
            (np.sin(2 * np.pi * 440 * np.arange(16000 * 5) / 16000) * 0.3).astype(np.float32),
        ]
    )  # a tone
    assert detections(speech) == 0
    assert detections(noise) == 0


def test_unknown_wake_word_is_a_clear_error():
    r = run_cli("talk", "--wake", "computer", input=b"")
    assert r.returncode == 1
    assert "no wake word 'computer'" in r.stderr.decode() and "hey_jarvis" in r.stderr.decode()


def silence(s: float) -> np.ndarray:
    return np.zeros(int(16000 * s), dtype=np.float32)


@pytest.mark.parametrize("stay", [0, 30])
def test_talk_sleeps_until_the_wake_word(tmp_path, stay):
    """Speech before the wake word is not a turn; after it, one request (stay 0) or every request within
    the stay time."""
    q1, q2 = "What is the capital of France?", "How many legs does a spider have?"
    conv = np.concatenate(
        [
            silence(0.5),
            speak("Turn on the lights in the kitchen."),
            silence(1.5),
            speak("Hey Jarvis."),
            silence(0.5),
            speak(q1),
            silence(3.0),
            speak(q2),
            silence(3.0),
        ]
    )
    path = write_wav(tmp_path / "conv.wav", conv)
    r = run_cli(
        "talk",
        "--input",
        str(path),
        "--fast",
        "--output",
        str(tmp_path / "out.wav"),
        "--json",
        "--wake",
        "hey jarvis",
        env={"VOICECHAT_LLM_MAX_TOKENS": "24", "VOICECHAT_LISTEN_WAKE_STAY_S": str(stay)},
    )
    assert r.returncode == 0, r.stderr.decode()
    events = [json.loads(line) for line in r.stdout.decode().splitlines()]
    users = [e["text"] for e in events if e["type"] == "user"]
    assert {"type": "status", "state": "asleep"} in events
    assert any(e["type"] == "notice" and e["message"] == "wake word: hey_jarvis" for e in events)
    if stay == 0:
        assert len(users) == 1 and wer(q1, users[0]) <= 0.25, users
    else:
        assert len(users) == 2 and wer(q1, users[0]) <= 0.25 and wer(q2, users[1]) <= 0.25, users
