"""Benchmark: `voicechat tokens` on a 10 MB text against raw tiktoken, as whole processes, alternated.

Both count o200k_base tokens of the same file (raw tiktoken reads the same offline
BPE file). Prints medians, throughput and the ratio. Goal: >= 0.9x tiktoken's throughput.

    python bench/tokens.py [--runs 5] [--mb 10]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import BIN, PARAGRAPH, alternate, ensure_out, med

RAW = (
    "import sys, tiktoken\n"
    "enc = tiktoken.get_encoding('o200k_base')\n"
    "print(len(enc.encode_ordinary(open(sys.argv[1], encoding='utf-8').read())))\n"
)


def make_text(path: Path, mb: int) -> None:
    rng = random.Random(0)
    readme = (ROOT / "README.md").read_text()
    code = "".join(p.read_text() for p in sorted((ROOT / "voicechat").rglob("*.py")))
    parts, size = [], 0
    while size < mb * 1_000_000:
        piece = rng.choice([PARAGRAPH, readme, code, "Ünïcödé façade — 東京 🎉\n"])
        parts.append(piece + "\n")
        size += len(piece.encode()) + 1
    path.write_text("".join(parts), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mb", type=int, default=10)
    args = ap.parse_args()
    out = ensure_out()
    text = out / f"tokens-{args.mb}mb.txt"
    if not text.exists():
        make_text(text, args.mb)
    from voicechat import tokens

    tokens.get_encoding("o200k_base")  # install the offline file and set TIKTOKEN_CACHE_DIR for the raw run
    raw = out / "raw_tiktoken.py"
    raw.write_text(RAW)
    cmds = {
        "voicechat tokens": [str(BIN / "voicechat"), "tokens", str(text), "--encoding", "o200k_base"],
        "raw tiktoken": [sys.executable, str(raw), str(text)],
    }
    a = subprocess.run(cmds["voicechat tokens"], capture_output=True, text=True, env=os.environ).stdout.strip()
    b = subprocess.run(cmds["raw tiktoken"], capture_output=True, text=True, env=os.environ).stdout.strip()
    assert a == b, (a, b)
    t = alternate(cmds, args.runs)
    mb = text.stat().st_size / 1e6
    vc, rt = med(t["voicechat tokens"]), med(t["raw tiktoken"])
    print(f"{mb:.1f} MB, {int(a):,} tokens (identical counts), {args.runs} alternated runs, whole processes, {os.cpu_count()} cores")
    print(f"  voicechat tokens  median {vc:6.2f} s   {mb / vc:6.1f} MB/s")
    print(f"  raw tiktoken      median {rt:6.2f} s   {mb / rt:6.1f} MB/s")
    print(f"  throughput ratio voicechat/tiktoken  {rt / vc:.2f}x   (goal >= 0.9)")


if __name__ == "__main__":
    main()
