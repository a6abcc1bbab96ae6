"""Benchmark: how soon `voicechat talk` answers, heard from outside the process.

One spoken conversation (questions by piper, some with a 400-700 ms pause in the middle of
the sentence, plus a noise burst, a cough and silence) is played in real time into a private
PulseAudio microphone while the real `voicechat talk` process runs; the speaker sink is
recorded. Voice to voice is measured outside the process: the end of each question in the
microphone recording to the first reply sample in the speaker recording (both recorded on the
same clock). The same conversation, engines and prompts run through:

  (a) talk as built (turns judged by meaning, transcription while the user speaks);
  (b) the previous design, kept as config: a fixed 600 ms end rule, then whole-utterance
      transcription with the file settings (beam 5, Silero filter) -- turn.detector=silence,
      turn.incremental=false, turn.beam_size=5, turn.silero_filter=true;
  (c) a naive pipeline in this process: transcribe, whole reply, synthesize all, play.

It prints voice to voice p50/p95 (external), the stage shares from talk's own turn_stats,
the word error rate of the transcripts against the script, how many paused questions stayed
one turn, turns made from noise, and the peak RSS of `voicechat talk`.

    python bench/latency.py [--plain 8] [--paused 10] [--gap 12] [--rounds 1]
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

from common import BIN, med, p95, speech
from recording import Recordings

from tests.helpers import wer
from tests.soundcard import PulseCard

PLAIN = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What colour is the sky?",
    "Name a fruit that is yellow.",
    "What is two plus two?",
    "Where do penguins live?",
    "What do bees make?",
    "How many days are in a week?",
    "What is the largest ocean?",
    "Which planet is closest to the sun?",
]
# (sentence, number of words before the pause): people pause mid-clause, to think of the next word
PAUSED = [
    ("I would like to book a table for four people tonight.", 7),
    ("Can you tell me the weather in Paris tomorrow?", 6),
    ("What is the capital of Spain?", 3),
    ("How far is it from London to Edinburgh by train?", 6),
    ("Could you remind me to call my mother this evening?", 4),
    ("I was wondering if you could tell me a joke.", 6),
    ("What is the difference between a frog and a toad?", 6),
    ("Please give me a recipe with chicken and rice.", 6),
    ("Tell me about the history of the Roman empire.", 6),
    ("Set a timer for ten minutes.", 3),
]
SYSTEM = "You are a friendly voice assistant. Answer in English, in two short plain sentences."
LLM_ENV = {
    "VOICECHAT_LLM_TEMPERATURE": "0",
    "VOICECHAT_LLM_MAX_TOKENS": "32",
    "VOICECHAT_LLM_SYSTEM_PROMPT": SYSTEM,
    # every turn sends [system, question] in every pipeline: the budget leaves no room for earlier rounds
    "VOICECHAT_MEMORY_MAX_CONTEXT_TOKENS": "64",
}
BASELINE_ENV = {
    "VOICECHAT_TURN_DETECTOR": "silence",
    "VOICECHAT_TURN_INCREMENTAL": "false",
    "VOICECHAT_TURN_BEAM_SIZE": "5",
    "VOICECHAT_TURN_SILERO_FILTER": "true",
}
RATE = 16000


def paused_speech(text: str, split: int, pause_s: float, whisper) -> np.ndarray:
    """The whole sentence spoken at once (natural prosody), with silence put in after word `split`."""
    audio = speech(text)
    segments, _ = whisper.transcribe(audio, word_timestamps=True, beam_size=5)
    words = [w for s in segments for w in s.words]
    guess = int(RATE * (words[split - 1].end + words[split].start) / 2) if len(words) > split else int(RATE * words[-1].end)
    # Whisper's word times are rough: cut at the quietest 20 ms within 60 ms of the boundary
    hop, reach = RATE // 50, int(RATE * 0.06)
    starts = range(max(0, guess - reach), min(len(audio) - hop, guess + reach), RATE // 200)
    cut = min(starts, key=lambda i: float(np.mean(audio[i : i + hop] ** 2))) + hop // 2
    return np.concatenate([audio[:cut], np.zeros(int(RATE * pause_s), np.float32), audio[cut:]])


def build(plain: int, paused: int, gap: float) -> tuple[np.ndarray, list[dict]]:
    from faster_whisper import WhisperModel

    from voicechat import models

    whisper = WhisperModel(models.whisper_model(), device="cpu", compute_type="int8")
    rng = np.random.default_rng(7)
    items: list[dict] = []
    for q in PLAIN[:plain]:
        items.append({"text": q, "audio": speech(q), "paused": False})
    for i, (q, split) in enumerate(PAUSED[:paused]):
        pause = 0.4 + 0.3 * i / max(1, paused - 1)
        items.append(
            {"text": q, "audio": paused_speech(q, split, pause, whisper), "paused": True, "pause_s": round(pause, 2), "split": split}
        )
    order = rng.permutation(len(items))
    items = [items[i] for i in order]
    parts = [np.zeros(int(RATE * 1.0), np.float32)]
    noise = [
        ("noise", (rng.standard_normal(RATE * 2) * 0.01).astype(np.float32)),
        ("cough", np.concatenate([(rng.standard_normal(2400) * 0.4).astype(np.float32)])),
        ("silence", np.zeros(RATE * 3, np.float32)),
    ]
    for i, item in enumerate(items):
        parts += [item["audio"], np.zeros(int(RATE * gap), np.float32)]
        if i in (2, 6, 10) and noise:
            name, sound = noise.pop(0)
            parts += [sound, np.zeros(int(RATE * 3), np.float32)]
    return np.concatenate(parts), items


def loud_runs(
    audio: np.ndarray, rate: int, floor_db: float = -45.0, min_gap_s: float = 1.2, min_len_s: float = 0.0
) -> list[tuple[float, float]]:
    """(start, end) seconds of sound, joining runs separated by less than min_gap_s of quiet."""
    hop = rate // 100
    n = len(audio) // hop
    if n == 0:
        return []
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = 20 * np.log10(rms) > floor_db
    runs: list[list[float]] = []
    for i in np.flatnonzero(loud):
        t = i / 100
        if runs and t - runs[-1][1] < min_gap_s:
            runs[-1][1] = t + 0.01
        else:
            runs.append([t, t + 0.01])
    return [(a, b) for a, b in runs if b - a >= min_len_s]


def run_talk(conv: np.ndarray, env_extra: dict, workdir: Path) -> dict:
    """The real `voicechat talk` on a private PulseAudio card: events, and mic/speaker recordings on one clock.

    Each recording starts at its own moment; a click played into both sinks at once (through a
    combined sink) before talk starts gives the offset between them."""
    with PulseCard(workdir) as card:
        env = {
            **os.environ,
            **card.env,
            **LLM_ENV,
            **env_extra,
            "VOICECHAT_DATA_DIR": str(workdir / "data"),
            "VOICECHAT_CONFIG_DIR": str(workdir / "cfg"),
        }
        rec = Recordings(env, workdir, RATE)
        proc = subprocess.Popen(
            [str(BIN / "voicechat"), "talk", "--json", "--no-log"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        events: list[dict] = []
        listening = threading.Event()

        def read() -> None:
            for line in proc.stdout:
                e = json.loads(line)
                events.append(e)
                if e == {"type": "status", "state": "listening"}:
                    listening.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if not listening.wait(120):
            proc.kill()
            raise SystemExit(f"talk did not start: {proc.stderr.read().decode()[-2000:]}")
        card.feed_mic(conv).wait()
        time.sleep(3.0)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(5)
        mic, speaker, offset = rec.stop()
    return {"events": events, "mic": mic, "speaker": speaker, "offset": offset}


def words(text: str) -> list[str]:
    import re

    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def paused_counts(users: list[str], items: list[dict]) -> tuple[int, int, int, list[list[str]]]:
    """Each user turn goes to the question it matches best (lowest WER against the whole question, or
    against either part of a paused one); a paused question is kept whole when exactly one turn went to
    it and that turn holds words from both sides of the pause. Turns matching no question are noise."""
    assigned: list[list[str]] = [[] for _ in items]
    noise = 0
    for u in users:
        scores = []
        for k, i in enumerate(items):
            w = words(i["text"])
            parts = [w] + ([w[: i["split"]], w[i["split"] :]] if i["paused"] else [])
            scores.append((min(wer(" ".join(p), u) for p in parts), k))
        best, k = min(scores)
        if best <= 0.6:
            assigned[k].append(u)
        else:
            noise += 1
    kept = split = 0
    for k, i in enumerate(items):
        if not i["paused"]:
            continue
        w = words(i["text"])
        first, second = w[: i["split"]], w[i["split"] :]
        got = assigned[k]
        said = words(got[0]) if len(got) == 1 else []
        whole = bool(said) and all(sum(x in said for x in part) >= 0.5 * len(part) for part in (first, second))
        kept += whole
        split += len(got) > 1 or (len(got) == 1 and not whole)
    return kept, split, noise, assigned


def analyse(result: dict, items: list[dict]) -> dict:
    events = result["events"]
    users = [e["text"] for e in events if e["type"] == "user"]
    stats = [e["latency"] for e in events if e["type"] == "turn_stats"]
    ends = [b for _, b in loud_runs(result["mic"], RATE, floor_db=-36.0, min_len_s=0.5)]  # questions, not the noise or the cough
    starts = [a - result["offset"] for a, _ in loud_runs(result["speaker"], 48000, min_gap_s=0.5)]
    v2v, early = [], 0
    for end in ends:
        if any(end - 1.0 < s <= end for s in starts):
            early += 1  # a reply began before the question ended: the question was cut
            continue
        after = [s for s in starts if s > end]
        if after and after[0] - end < 8.0:
            v2v.append(after[0] - end)
    kept, split, noise, assigned = paused_counts(users, items)
    pairs = [(i["text"], " ".join(assigned[k])) for k, i in enumerate(items) if not i["paused"]]
    ref = " ".join(r for r, _ in pairs)
    hyp = " ".join(h for _, h in pairs)
    share = {
        k: med([s[k] for s in stats if k in s] or [float("nan")])
        for k in ("endpoint", "stt", "transcript", "first_token", "first_chunk", "first_audio")
    }
    if os.environ.get("BENCH_DEBUG"):
        print(
            "    questions:",
            [i["text"] for i in items],
            "\n    turns:",
            users,
            "\n    ends:",
            [round(e, 2) for e in ends],
            "\n    reply starts:",
            [round(x, 2) for x in starts],
            flush=True,
        )
    return {
        "turns": len(users),
        "noise": noise,
        "split": split,
        "early": early,
        "v2v": v2v,
        "share": share,
        "wer": wer(ref, hyp),
        "paused_whole": kept,
        "paused": sum(i["paused"] for i in items),
        "internal_v2v": [s["voice_to_voice"] for s in stats if "voice_to_voice" in s],
        "offset": result["offset"],
    }


def naive(items: list[dict]) -> list[float]:
    """Transcribe the whole utterance, wait for the whole reply, synthesize all of it: end of speech -> audio ready."""
    from voicechat import sentences
    from voicechat.config import resolve
    from voicechat.engines import registry
    from voicechat.engines.base import Message, TextDelta

    cfg = resolve(overrides={"llm.temperature": 0.0, "llm.max_tokens": 32, "llm.system_prompt": SYSTEM})
    stt, llm, tts = (registry.create(k, cfg, concurrent=True) for k in ("stt", "llm", "tts"))
    out = []
    for i, item in enumerate(items):
        audio = np.concatenate([item["audio"], np.zeros(int(RATE * 0.15), np.float32)])
        other = items[(i + 1) % len(items)]["text"]
        for _ in llm.stream([Message("system", SYSTEM), Message("user", other)]):  # the cache holds another question
            pass
        t = time.perf_counter()
        text = " ".join(s.text for s in stt.transcribe(audio))
        reply = "".join(e.text for e in llm.stream([Message("system", SYSTEM), Message("user", text)]) if isinstance(e, TextDelta))
        _ = [c for ch in sentences.chunks(reply) for c in tts.synthesize(ch)]
        out.append(0.6 + time.perf_counter() - t)  # + the 600 ms end rule
    for e in (stt, llm, tts):
        e.close()
    return out


def peak_rss(tmp: Path, conv: np.ndarray) -> float:
    import soundfile as sf

    short = tmp / "short.wav"
    sf.write(str(short), conv[: RATE * 40], RATE)
    env = {
        **os.environ,
        **LLM_ENV,
        "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf",
        "VOICECHAT_DATA_DIR": str(tmp / "rss"),
        "VOICECHAT_CONFIG_DIR": str(tmp / "rss-cfg"),
    }
    wrapper = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, str(BIN / "voicechat"), "talk", "--input", str(short), "--output", str(tmp / "r.wav"), "--no-log"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return int(out.stdout.strip()) / 1024


def show(name: str, runs: list[dict]) -> None:
    v = [x for r in runs for x in r["v2v"]]
    iv = [x for r in runs for x in r["internal_v2v"]]
    s = {k: med([r["share"][k] for r in runs]) for k in runs[0]["share"]}
    offsets = ", ".join(f"{r['offset'] * 1000:.0f}" for r in runs)
    print(f"  {name}")
    print(
        f"    voice to voice, heard (mic end of speech -> first speaker sample): p50 {med(v):.2f} s  p95 {p95(v):.2f} s"
        f"  (n={len(v)}; clock offset between the recordings {offsets} ms)"
    )
    print(
        f"    talk's own turn_stats, p50: end of turn {s['endpoint']:.2f} s after end of speech; transcript {s['transcript']:.2f} s"
        f" after end of speech ({s['stt']:.2f} s after end of turn); first token {s['first_token']:.2f} s; first chunk"
        f" {s['first_chunk']:.2f} s and first audio {s['first_audio']:.2f} s after end of turn; voice to voice {med(iv):.2f} s"
    )
    for i, r in enumerate(runs):
        print(
            f"    run {i + 1}: {r['turns']} turns; paused questions kept whole {r['paused_whole']}/{r['paused']}, cut {r['split']};"
            f" replies that began before the question ended {r['early']}; turns from noise/cough/silence {r['noise']};"
            f" transcript WER on the questions without a pause {100 * r['wer']:.1f} %"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plain", type=int, default=8)
    ap.add_argument("--paused", type=int, default=10)
    ap.add_argument("--gap", type=float, default=12.0)
    ap.add_argument("--rounds", type=int, default=1, help="(a) and (b) alternate this many times")
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vc-latency-"))
    conv, items = build(args.plain, args.paused, args.gap)
    print(
        f"conversation: {len(items)} questions ({sum(i['paused'] for i in items)} with a mid-sentence pause of 0.40-0.70 s),"
        f" a noise burst, a cough and silence; {len(conv) / RATE:.0f} s played in real time per pipeline"
    )
    a, b = [], []
    for r in range(args.rounds):
        a.append(analyse(run_talk(conv, {}, tmp / f"a{r}"), items))
        b.append(analyse(run_talk(conv, BASELINE_ENV, tmp / f"b{r}"), items))
    show("(a) talk as built", a)
    show("(b) previous design (600 ms end rule, then whole-utterance transcription)", b)
    va, vb = [x for r in a for x in r["v2v"]], [x for r in b for x in r["v2v"]]
    print(f"  ratio (a)/(b) voice to voice p50 {med(va) / med(vb):.2f}   (goal <= 0.6)")
    if not args.skip_naive:
        n = naive(items)
        print(
            f"  (c) naive sequential, in process: end of speech -> whole reply synthesized p50 {med(n):.2f} s  p95 {p95(n):.2f} s;"
            f"  ratio (a)/(c) {med(va) / med(n):.2f}"
        )
    print(f"  peak RSS of `voicechat talk` (default engines, 40 s of conversation): {peak_rss(tmp, conv):.0f} MB   (goal <= 800)")


if __name__ == "__main__":
    main()
