"""Benchmark: voicechat's end-of-turn decision on the voice panel (bench/voice_panel.py), offline, faster than real time.

Each panel file (its own lead-in and 2 s tail of silence or room tone) is played alone
into the listening half of a real :class:`voicechat.voice.session.VoiceSession` built as `talk --input FILE
--fast` builds it: the configured Whisper, the audio turn model, the chat model's reading of the words, the turn
policy and the listener, with a file source that does not pace itself. Only the answering half is left out: a
delivered turn is recorded, not answered, and the session never counts as answering. As with `talk --fast`, the
listener waits for each pause's transcript, so every decision is the one real time would make if transcription
took no time (real time adds the transcription's own latency where the transcript comes late).

Per file: the turns whose end of speech falls in it. A paused sentence is kept whole when exactly one turn went
to it and that turn's speech ended after the pause; a finished sentence or a short answer is ended when exactly one
turn went to it, and ended within the file (a turn that runs on through the room tone is not ended). The end-of-turn delay is from the end of the synthesized speech (the manifest) to the frame at
which the turn was delivered, in audio time. Reported per split (tune / heldout), per voice family, per variant
and per pause place. `VOICECHAT_*` settings apply (VOICECHAT_TURN_DETECTOR=silence: the previous design).

    python bench/turn_panel.py [--panel DIR] [--limit N] [--take paused:40,finished:20,short:12] [--save results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import voice_panel

from voicechat.voice.session import VoiceSession

RATE = 16000
# the designs a run can compare: settings over the configured ones
DESIGNS: dict[str, dict[str, Any]] = {
    "current": {},
    "silence": {"turn.detector": "silence"},
    "judged_at_pause": {"turn.audio_model_ms": 150},  # the audio turn model hears the utterance at the pause, beside Whisper
}
CHUNK = 1  # files per stream (one session each; the engines are shared): 1 keeps a noisy file's open turn out of the next


class PanelSession(VoiceSession):
    """The listening half of a voice session: delivered turns are recorded with the frame they were delivered at."""

    turns: list[dict]

    def _answering(self) -> bool:
        return False

    def _draft(self, item: Any) -> bool:
        return False  # (no responder here: every turn is delivered when its end is decided, never drafted before)

    def _deliver(self, item: Any) -> None:
        assert self.source is not None
        end_t = self.source.pos / 2 / RATE  # (the source's position: the frame the decision was made on)
        silence = (item.end_detected - item.speech_end) if item.speech_end is not None else 0.0
        last = None
        if item.utt is not None and item.utt.results:
            last = item.utt.results[max(item.utt.results)]
        self.turns.append(
            {
                "end_t": end_t,
                "speech_end_t": end_t - silence,
                "audio_s": len(item.audio) / RATE if item.audio is not None else 0.0,  # (pre-roll, speech, a short tail)
                "text": last.text if last is not None else None,
                "complete_prob": last.complete_prob if last is not None else None,
                "text_prob": last.text_prob if last is not None else None,
            }
        )


def load_engines(cfg: Any) -> tuple[Any, Any, Any]:
    from voicechat.conversation.chat import Conversation
    from voicechat.engines import registry
    from voicechat.engines.smart_turn import load_turn_model

    stt = registry.create("stt", cfg)
    llm = registry.create("llm", cfg)
    turn_model, why = load_turn_model(cfg.turn)
    if why:
        print(f"note: {why}")
    chat = Conversation(cfg, llm, kind="talk", log=False)
    return stt, chat, turn_model


def run_stream(cfg: Any, engines: tuple[Any, Any, Any], entries: list[dict], panel: Path) -> list[dict]:
    """Play these files as one stream; return per file the turns that went to it."""
    import soundfile as sf

    from voicechat.voice.sources import FileSource

    stt, chat, turn_model = engines
    parts, starts, t = [], [], 0.0
    for e in entries:
        audio, rate = sf.read(str(panel / e["file"]), dtype="float32")
        assert rate == RATE, e["file"]
        parts.append(audio)
        starts.append(t)
        t += len(audio) / RATE
    source = FileSource.from_array(np.concatenate(parts), cfg.listen.frame_ms, fast=True)
    session = PanelSession(cfg, conversation=chat, stt=stt, source=source, turn_model=turn_model)
    session.turns = []
    dropped: list[float] = []
    session.subscribe(lambda event: dropped.append(source.pos / 2 / RATE) if type(event).__name__ == "Dropped" else None)
    assert session.listener is not None and session.transcriber is not None
    session.transcriber.start()
    import threading

    stop = threading.Event()
    try:
        session.listener.run(stop)
    finally:
        session.transcriber.close()
    if session.errors:
        raise SystemExit(f"the session failed: {session.errors[0]}")
    bounds = starts[1:] + [t + 1e9]
    results = []
    for e, start, end in zip(entries, starts, bounds, strict=True):
        mine = [
            {
                **turn,
                "end_t": round(turn["end_t"] - start, 3),
                "speech_end_t": round(turn["speech_end_t"] - start, 3),
                "began_t": round(turn["speech_end_t"] - turn["audio_s"] - start, 3),  # its audio's start: pre-roll included
            }
            for turn in session.turns
            if start <= turn["speech_end_t"] < end
        ]
        results.append({**e, "turns": mine, "dropped": sum(start <= d < end for d in dropped)})
    return results


def judge(r: dict) -> dict:
    """Kept whole / ended, and the delay, of one file's result."""
    turns = r["turns"]
    out: dict[str, Any] = {"ok": False, "delay_ms": None}
    if any(t["began_t"] < -1.0 or t["end_t"] > r["duration_s"] for t in turns):  # (or it ended only in the silence after the file)
        return out  # a turn that began in the file before (its end was not found there): this file's speech is in it
    if r["kind"] == "paused":
        out["ok"] = len(turns) == 1 and turns[0]["speech_end_t"] > r["pause_end_s"]
    else:
        out["ok"] = len(turns) == 1
    if out["ok"]:
        out["delay_ms"] = round(1000 * (turns[0]["end_t"] - r["speech_end_s"]))
    return out


def pct(values: list[bool]) -> str:
    return f"{100 * sum(values) / len(values):5.1f}% ({sum(values)}/{len(values)})" if values else "-"


def quantile(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "-"


def table(results: list[dict], key: Any, title: str) -> None:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        groups[key(r)].append(r)
    print(f"\n{title}")
    head = (
        f"{'group':38} {'files':>5}  {'paused kept whole':>18}  {'finished ended':>18}  {'short ended':>18}  {'delay p50':>9} {'p95 ms':>6}"
    )
    print(head)
    print("-" * len(head))
    for name in sorted(groups):
        rs = groups[name]
        by = {k: [r["ok"] for r in rs if r["kind"] == k] for k in ("paused", "finished", "short")}
        delays = [r["delay_ms"] for r in rs if r["kind"] in ("finished", "short") and r["delay_ms"] is not None]
        print(
            f"{name[:38]:38} {len(rs):5}  {pct(by['paused']):>18}  {pct(by['finished']):>18}  {pct(by['short']):>18}  "
            f"{quantile(delays, 50):>9} {quantile(delays, 95):>6}"
        )


def pick(entries: list[dict], split: str | None, limit: int | None, take: dict[str, int] | None = None) -> list[dict]:
    """The files of a run: a split, and a fixed spread of N files over voices, variants and utterances.

    ``take`` (kind -> N): N files of that kind in EACH split, the same fixed spread, so both splits have
    enough paused sentences to mean something (``--limit`` alone gives each split and kind its share)."""
    entries = [e for e in entries if split is None or e["split"] == split]
    spread = sorted(entries, key=lambda e: zlib.crc32(e["file"].encode()))
    if take is not None:
        chosen: list[dict] = []
        for sp in ("tune", "heldout"):
            for kind, n in take.items():
                chosen += [e for e in spread if e["split"] == sp and e["kind"] == kind][:n]
        spread = sorted(chosen, key=lambda e: zlib.crc32(e["file"].encode()))
    return spread[:limit] if limit is not None else spread


def parse_take(text: str) -> dict[str, int]:
    """'paused:40,finished:20,short:12' -> {'paused': 40, ...}"""
    out = {}
    for part in text.split(","):
        kind, _, n = part.partition(":")
        if kind not in ("paused", "finished", "short") or not n.isdigit():
            raise SystemExit(f"--take {text!r}: write kind:N,... with kinds paused, finished, short")
        out[kind] = int(n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--panel", type=Path, default=None, help="the panel's folder (default: voice_panel's; built if missing)")
    ap.add_argument("--limit", type=int, default=None, help="only N files, a fixed spread over voices, variants and utterances")
    ap.add_argument("--take", type=parse_take, default=None, help="N files of each kind in each split, e.g. paused:40,finished:20,short:12")
    ap.add_argument(
        "--designs",
        default="current",
        help="comma-separated, each run on the same files: current (the config), silence (the previous design), judged_at_pause",
    )
    ap.add_argument("--split", choices=("tune", "heldout"), default=None, help="only this split")
    ap.add_argument("--save", type=Path, default=None, help="write every file's turns and verdict here (JSON)")
    args = ap.parse_args()
    panel = args.panel or voice_panel.default_out()
    if not (panel / "manifest.json").is_file():  # build the panel, or only the files this run takes
        print(f"no panel in {panel}: building it")
        voice_panel.build(panel, pick(voice_panel.plan(), args.split, args.limit, args.take), 22, log=None)
    manifest = json.loads((panel / "manifest.json").read_text())
    entries = pick(manifest["entries"], args.split, args.limit, args.take)
    from voicechat.config import resolve

    designs = args.designs.split(",")
    runs: dict[str, list[dict]] = {}
    started = time.perf_counter()
    for design in designs:
        if design not in DESIGNS:
            raise SystemExit(f"--designs {args.designs!r}: known designs are {', '.join(DESIGNS)}")
        cfg = resolve(overrides=DESIGNS[design])
        print(
            f"panel {panel}: {len(entries)} files; design {design}: turn.detector={cfg.turn.detector}, pause {cfg.turn.pause_ms} ms, "
            f"ends {cfg.turn.fast_end_ms}/{cfg.turn.end_ms}/{cfg.turn.slow_end_ms} ms, language_model={cfg.turn.language_model}",
            flush=True,
        )
        engines = load_engines(cfg)
        results = runs[design] = []
        try:
            for k in range(0, len(entries), CHUNK):
                results += run_stream(cfg, engines, entries[k : k + CHUNK], panel)
                if len(results) % 20 == 0 or len(results) == len(entries):
                    print(f"  {len(results)}/{len(entries)} files, {time.perf_counter() - started:.0f} s", flush=True)
                if args.save is not None:  # (what is done so far survives a run cut short)
                    args.save.write_text(json.dumps(runs))
        finally:
            engines[0].close()
            engines[1].llm.close()
    for design, results in runs.items():
        report(design, results, started)
    if len(runs) > 1:
        print("\nsame files, each design (paused kept whole: pauses up to 0.8 s, all; finished+short ended, delay p50/p95 ms)")
        for split in ("tune", "heldout"):
            for design, results in runs.items():
                rs = [r for r in results if r["split"] == split]
                paused = [r for r in rs if r["kind"] == "paused"]
                ended = [r for r in rs if r["kind"] != "paused"]
                delays = [r["delay_ms"] for r in ended if r["delay_ms"] is not None]
                print(
                    f"  {split:7} {design:10} paused <=0.8 s {pct([r['ok'] for r in paused if r['pause_s'] <= 0.8]):>16}  "
                    f"all {pct([r['ok'] for r in paused]):>16}  ended {pct([r['ok'] for r in ended]):>16}  "
                    f"delay {quantile(delays, 50)}/{quantile(delays, 95)}"
                )
    if args.save is not None:
        args.save.write_text(json.dumps(runs, indent=1))
        print(f"\nresults: {args.save}")


def report(design: str, results: list[dict], started: float) -> None:
    print(f"\n=== design {design} ===")
    for r in results:
        r.update(judge(r))
    audio_min = sum(r["duration_s"] for r in results) / 60
    print(f"{audio_min:.1f} min of audio per design; {time.perf_counter() - started:.0f} s in all")
    table(results, lambda r: r["split"], "per split")
    table(results, lambda r: f"{r['split']:7} {r['family']}", "per split and voice family")
    table(results, lambda r: f"{r['split']:7} {r['variant']}", "per split and variant")
    paused = [r for r in results if r["kind"] == "paused"]
    table(paused, lambda r: f"{r['split']:7} after {r['pause_place']}", "paused sentences per split and pause place")
    table(
        paused,
        lambda r: f"pause {'<=0.5' if r['pause_s'] <= 0.5 else '<=0.8' if r['pause_s'] <= 0.8 else '>0.8'} s",
        "paused by pause length",
    )
    fails = [r for r in results if not r["ok"]][:25]
    if fails:
        print("\nsome failures (file: turns' words at their end)")
        for r in fails:
            words = " | ".join(str(t["text"]) for t in r["turns"]) or f"no turn (dropped {r['dropped']})"
            print(f"  {r['kind']:8} {r['voice'][:34]:34} {r['variant']:10} {r['utterance']:12} pause {r['pause_s']}: {words}")


if __name__ == "__main__":
    main()
