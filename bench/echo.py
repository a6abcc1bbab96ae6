"""Echo cancellation, measured.

Offline (a synthetic room: delay 30-150 ms, attenuation, a short reverb; the assistant's piper speech as
the far end, a user's question over it):
  - ERLE (echo return loss enhancement, dB) per canceller, on echo alone after the first second;
  - word error rate of the user's question heard over the echo: raw, cleaned by each canceller, and
    the same question with no echo at all (the baseline);
  - CPU seconds per second of audio for each canceller.

    python bench/echo.py [--rooms N] [--warm 2]

The measured reply comes after --warm others in the same room (the canceller has converged, as it
has in a conversation after the first reply); --warm 0 measures a cold canceller.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import med, speech
from voicechat.voice.echo import cancel_pair, make_canceller
from voicechat.voice.room import erle_db, through_room, to_pcm

REPLIES = [
    "Paris is the capital of France. It sits on the river Seine and is known for the Eiffel Tower, its museums and its cafes.",
    "Cats sleep for about sixteen hours a day. They are most active at dawn and at dusk, when their prey is out.",
    "The weather today is mild, with a light breeze from the west and a few clouds in the afternoon.",
]
QUESTIONS = [
    "Please stop and tell me the time in Tokyo.",
    "Wait, what is the tallest mountain in Europe?",
    "Hold on, how far away is the moon?",
]
OPTIONS = ["dual", "webrtc", "speex", "speex+webrtc"]  # dual: ERLE of its voice detection path (AEC3), WER of its words (speex)


def rooms(n: int) -> list[tuple[int, float]]:
    rng = np.random.default_rng(1)
    return [(int(rng.integers(30, 151)), float(rng.uniform(0.3, 1.0))) for _ in range(n)]


def offline(n_rooms: int, warm: int) -> None:
    from faster_whisper import WhisperModel

    from tests.helpers import wer
    from voicechat import models

    whisper = WhisperModel(models.whisper_model(), device="cpu", compute_type="int8")

    def hear(audio: np.ndarray) -> str:
        return " ".join(s.text.strip() for s in whisper.transcribe(audio.astype(np.float32), beam_size=5)[0])

    replies = [speech(r) for r in REPLIES]
    questions = [speech(q) for q in QUESTIONS]
    erle: dict[str, list[float]] = {o: [] for o in OPTIONS}
    wers: dict[str, list[float]] = {o: [] for o in ["no echo", "raw (echo)", *OPTIONS]}
    cpu: dict[str, float] = {o: 0.0 for o in OPTIONS}
    seconds = 0.0
    for i, (delay, gain) in enumerate(rooms(n_rooms)):
        q, text = questions[i % 3], QUESTIONS[i % 3]
        before = np.concatenate([replies[(i + k) % 3] for k in range(1, 1 + warm)] + [np.zeros(0, dtype=np.float32)])
        reply = np.concatenate([before, replies[i % 3]])  # earlier replies first: a live canceller has converged
        echo = through_room(reply, delay, gain)
        at = len(before) + min(len(reply) - len(before) - len(q) - 1, 48000)
        mic = echo.copy()
        mic[at : at + len(q)] += q
        spoken = slice(at, at + len(q) + 4000)
        wers["no echo"].append(wer(text, hear(q)))
        wers["raw (echo)"].append(wer(text, hear(mic[spoken])))
        seconds += len(mic) / 16000
        for option in OPTIONS:
            canceller = make_canceller(option)
            start = time.process_time()
            cleaned = cancel_pair(canceller, to_pcm(mic), to_pcm(reply))[1].astype(np.float32) / 32767
            cpu[option] += time.process_time() - start
            only_echo = cancel_pair(make_canceller(option), to_pcm(echo), to_pcm(reply))[0].astype(np.float32) / 32767
            erle[option].append(erle_db(echo[len(before) + 16000 :], only_echo[len(before) + 16000 :]))
            wers[option].append(wer(text, hear(cleaned[spoken])))
        print(f"room {i + 1}: delay {delay} ms, gain {gain:.2f}: " + ", ".join(f"{o} {erle[o][-1]:.1f} dB" for o in OPTIONS), flush=True)
    print(
        f"\nsynthetic rooms: {n_rooms} (delay 30-150 ms, gain 0.3-1.0, 60 ms reverb), {seconds:.0f} s of audio, "
        f"{warm} replies before the measured one"
    )
    print("ERLE, dB (median / min):")
    for o in OPTIONS:
        print(f"  {o:14s} {med(erle[o]):6.1f} / {min(erle[o]):6.1f}")
    print("word error rate of the user's question over the echo (mean):")
    base = float(np.mean(wers["no echo"]))
    for o, values in wers.items():
        print(f"  {o:14s} {100 * np.mean(values):5.1f} %   ({100 * (np.mean(values) - base):+.1f} points vs no echo)")
    print("CPU per second of audio:")
    for o in OPTIONS:
        print(f"  {o:14s} {1000 * cpu[o] / seconds:5.1f} ms  ({100 * cpu[o] / seconds:.2f} % of one core)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rooms", type=int, default=9)
    ap.add_argument("--warm", type=int, default=2, help="replies the canceller hears before the measured one (0: cold)")
    args = ap.parse_args()
    offline(args.rooms, args.warm)


if __name__ == "__main__":
    main()
