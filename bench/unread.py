"""Benchmark: does a turn's last pause pass read the whole sentence, or stop at a pause in its middle?

Each voice-panel file (bench/voice_panel.py: the paused sentences and the finished questions, every voice and
variant) is cut as the listener cuts a turn (0.3 s before the speech, 0.15 s after it) and decoded as the turn's
last pause pass does: Whisper's short window, beam 5, the last word and where it starts asked for. Two designs
on the same audio, in the same run:

  current  a decode whose last word starts more than whisper_turn.UNREAD_S before the end of the audio is done
           again on the full window (the decoder stopped at a pause and left the rest unread)
  before   the short window's answer, whatever it left unread

Per split (tune / heldout) and kind: paused sentences whose second half was heard (at least half its words),
decodes that left speech unread, the words heard of those said, and the decode's time (mean and p95, ms).
Transcripts the designs disagree on are listed.

    python bench/unread.py [--panel DIR] [--kinds paused,finished]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import voice_panel

RATE = 16000


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def heard(part: list[str], said: list[str]) -> float:
    return sum(w in said for w in part) / max(1, len(part))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--panel", type=Path, default=Path(tempfile.gettempdir()) / "voicechat-unread-panel", help="cache folder for the panel's files"
    )
    ap.add_argument("--kinds", default="paused,finished")
    args = ap.parse_args()

    import soundfile as sf

    from voicechat.config import resolve
    from voicechat.engines import stt_faster_whisper, whisper_turn

    kinds = args.kinds.split(",")
    entries = [e for e in voice_panel.plan(22) if e["kind"] in kinds]
    manifest = args.panel / "manifest.json"
    if not manifest.is_file() or len(json.loads(manifest.read_text())["entries"]) != len(entries):
        print(f"building {len(entries)} panel files into {args.panel}", flush=True)
        voice_panel.build(args.panel, entries, 22)
    entries = json.loads(manifest.read_text())["entries"]
    model = stt_faster_whisper.create(resolve()).model
    unread_s = whisper_turn.UNREAD_S

    counts: dict[tuple, Counter] = defaultdict(Counter)
    times: dict[tuple, list[float]] = defaultdict(list)
    changed = []
    for e in entries:
        audio, _ = sf.read(str(args.panel / e["file"]), dtype="float32")
        turn = audio[max(0, int((e["speech_start_s"] - 0.3) * RATE)) : int((e["speech_end_s"] + 0.15) * RATE)]
        said = words(e["text"])
        texts = {}
        for design, limit in (("current", unread_s), ("before", float("inf"))):
            whisper_turn.UNREAD_S = limit
            t = time.perf_counter()
            found = whisper_turn.decode_turn_in(model, turn, prompt=None, beam_size=5, languages=["en"], last_word=True)
            key = (e["split"], e["kind"], design)
            times[key].append(time.perf_counter() - t)
            assert found is not None
            texts[design] = found.text
            got = words(found.text)
            c = counts[key]
            c["files"] += 1
            c["said"] += len(said)
            c["heard"] += sum(w in got for w in said)
            c["unread"] += (found.last_word_lead_s or 0.0) > unread_s
            if e["kind"] == "paused":
                second = words(e["text"][len(e["pause_after"]) :])
                c["second half heard"] += heard(second, got) >= 0.5
        if texts["current"] != texts["before"]:
            changed.append((e["split"], e["file"], e["text"], texts["before"], texts["current"]))
    whisper_turn.UNREAD_S = unread_s

    print("\n| split | kind | design | files | second half heard | left speech unread | words heard | decode mean / p95 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for (split, kind, design), c in sorted(counts.items()):
        t = times[(split, kind, design)]
        second = f"{c['second half heard']}/{c['files']}" if kind == "paused" else "-"
        print(
            f"| {split} | {kind} | {design} | {c['files']} | {second} | {c['unread']} | {c['heard'] / c['said']:.1%} |"
            f" {1000 * np.mean(t):.0f} / {1000 * np.percentile(t, 95):.0f} |"
        )
    print(f"\ntranscripts that differ ({len(changed)}): split, file, said, before, current")
    for row in changed:
        print("  ", row)


if __name__ == "__main__":
    main()
