"""The wake word, measured: how often it wakes on the word (two synthetic voices, several speakers and
speeds), and false wakes per hour of other speech (piper and espeak-ng), the assistant's own voice,
music-like sound and noise. The detector runs exactly as in `talk`: 30 ms frames, reset after a hit.

    python bench/wake.py [--word hey_jarvis] [--minutes 10]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PARAGRAPH, speech
from voicechat.voice.wake import WakeWord

SPOKEN = {
    "alexa": "Alexa",
    "hey_jarvis": "Hey Jarvis",
    "hey_mycroft": "Hey Mycroft",
    "hey_rhasspy": "Hey Rhasspy",
    "okay_nabu": "Okay Nabu",
}
ESPEAK_VOICES = ["en-us", "en-gb", "en-us+f3", "en-us+m3", "en-gb-scotland", "en-029"]
SENTENCES = [
    s.strip() + "."
    for s in (
        PARAGRAPH + " Please call Jarvis and Mike tomorrow at noon. Hey, are you there? "
        "Okay, now put the kettle on. Alexander said the bus was late again. My friend Travis works at the harbour. "
        "Turn the lights off in the living room. What time does the shop open on Sunday? "
        "I think we should leave before it rains. Harvest season starts in September."
    ).split(".")
    if s.strip()
]


def espeak(text: str, voice: str, wpm: int) -> np.ndarray:
    import soundfile as sf
    import soxr

    wav = subprocess.run(["espeak-ng", "--stdout", "-v", voice, "-s", str(wpm), text], capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, 16000).astype(np.float32)


def hits(detector: WakeWord, audio: np.ndarray) -> int:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    n = 0
    for i in range(0, len(pcm), 960):
        if detector.heard(pcm[i : i + 960]):
            n += 1
            detector.reset()
    return n


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Chords of harmonics with a beat: music-like sound."""
    t = np.arange(int(16000 * seconds)) / 16000
    out = np.zeros_like(t)
    for k in range(int(seconds * 2)):
        seg = (t >= k / 2) & (t < (k + 1) / 2)
        root = 110 * 2 ** (rng.integers(0, 12) / 12)
        for ratio in (1, 1.25, 1.5, 2):
            out[seg] += np.sin(2 * np.pi * root * ratio * t[seg]) * np.exp(-3 * (t[seg] - k / 2))
    return (0.1 * out).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--word", default="hey_jarvis")
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of other speech (noise and music add as much again)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    gap = np.zeros(8000, dtype=np.float32)
    detector = WakeWord(args.word)
    # the word itself
    tries = woke = 0
    for voice in ESPEAK_VOICES:
        for wpm in (130, 160, 190):
            tries += 1
            woke += hits(detector, np.concatenate([gap, espeak(SPOKEN[args.word].lower(), voice, wpm), gap])) > 0
            detector.reset()
    piper_tries = piper_woke = 0
    for text in (f"{SPOKEN[args.word]}.", f"{SPOKEN[args.word]}!", f"{SPOKEN[args.word]}, what time is it?"):
        piper_tries += 1
        piper_woke += hits(detector, np.concatenate([gap, speech(text), gap])) > 0
        detector.reset()
    print(
        f"wake word '{args.word}': woke {woke}/{tries} (espeak-ng, {len(ESPEAK_VOICES)} voices x 3 speeds), "
        f"{piper_woke}/{piper_tries} (piper joe)"
    )
    # everything else
    parts = {"other speech (espeak-ng)": [], "other speech (piper)": [], "the assistant's voice (piper)": [], "music-like": [], "noise": []}
    total = 0.0
    while total < args.minutes * 60 / 2:
        for voice in ESPEAK_VOICES:
            a = espeak(SENTENCES[int(rng.integers(len(SENTENCES)))], voice, int(rng.integers(130, 200)))
            parts["other speech (espeak-ng)"].append(a)
            total += len(a) / 16000
    piper_s = 0.0
    for s in SENTENCES:
        a = speech(s)
        parts["other speech (piper)"].append(a)
        piper_s += len(a) / 16000
    parts["the assistant's voice (piper)"].append(speech(PARAGRAPH))
    parts["music-like"].append(music(args.minutes * 60 / 4, rng))
    parts["noise"].append((rng.standard_normal(int(16000 * args.minutes * 60 / 4)) * 0.05).astype(np.float32))
    grand_hits, grand_s = 0, 0.0
    start = time.process_time()
    for name, clips in parts.items():
        audio = np.concatenate([np.concatenate([c, gap]) for c in clips])
        detector.reset()
        h = hits(detector, audio)
        seconds = len(audio) / 16000
        grand_hits += h
        grand_s += seconds
        print(f"  {name:32s} {seconds / 60:6.1f} min  false wakes {h}")
    cpu = time.process_time() - start
    print(f"false wakes: {grand_hits} in {grand_s / 3600:.2f} h = {grand_hits / (grand_s / 3600):.1f} per hour")
    print(f"detector CPU: {1000 * cpu / grand_s:.1f} ms per second of audio")


if __name__ == "__main__":
    main()
