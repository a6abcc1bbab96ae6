"""Benchmark: how soon `voicechat talk` answers, heard from outside the process.

A spoken conversation (questions, some with a pause in the middle of the sentence, plus a noise burst, a cough
and silence) is played in real time into a private PulseAudio microphone while the real `voicechat talk` process
runs; the speaker sink is recorded. Each sound is played once talk listens again (without barge-in talk does not
hear a question said over its reply) and at least --gap seconds after the last one ended. Voice to voice is
measured outside the process: the end of each question in the microphone recording to the first reply sample in
the speaker recording (both recorded on the same clock). The questions are spoken by voices of the panel
(bench/voice_panel.py; default Piper's joe, the voice the turn rules were tuned on); a paused question is the whole
sentence spoken at once, with silence put in at a word boundary. The same questions, engines and prompts run
through each design (bench/latency_panel.py), one talk run per voice and design, the designs in turn:

  current   talk as built (turns judged by meaning, transcription while the user speaks);
  before22  before issue 22's end-of-turn change, as far as config reaches: turn.last_word_min=0, turn.end_ms=700;
  baseline  a fixed 600 ms end rule, then whole-utterance transcription with the file settings (beam 5, Silero
            filter) -- turn.detector=silence, turn.incremental=false, turn.beam_size=5, turn.silero_filter=true;
  judged_at_pause  turn.audio_model_ms=150: the audio turn model hears each pause at the pause, beside Whisper;
  no_draft  turn.draft_reply=false: the reply begins when the turn ends (current writes it, and synthesizes its first
            words, while the silence that may end the turn is waited out);
  before    (--before DIR) talk on the code of another checkout, e.g. the commit before a change;
  and (c) a naive pipeline in this process: transcribe, whole reply, synthesize all, play.

It prints, per design, voice to voice p50/p95 (external) and the stage shares from talk's own turn_stats; then
one table per voice (held-out voices in a block of their own) and pooled rows per split: voice to voice, paused
questions kept as one turn and heard whole, end of speech to end of turn on the finished questions (turn_stats), the WER of their
transcripts and turns made from noise; and the peak RSS of `voicechat talk`. Talk's events and the recordings
stay in the folder it names.

    python bench/latency.py [--plain 8] [--paused 10] [--gap 3] [--rounds 1]
    python bench/latency.py --voices joe,en-us+m1,en-gb+m2,en-us+m3,piper:joe:l1.25 --designs current,before22,baseline \\
        --plain 5 --paused 5 --pauses 0.4-0.8 --gap 2.5 --max-tokens 16 --skip-naive
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

import latency_panel
from common import BIN, med, p95
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
RATE = 16000


def paused_speech(audio: np.ndarray, split: int, pause_s: float, whisper) -> np.ndarray:
    """The whole sentence spoken at once (natural prosody), with silence put in after word `split`."""
    segments, _ = whisper.transcribe(audio, word_timestamps=True, beam_size=5)
    words = [w for s in segments for w in s.words]
    guess = int(RATE * (words[split - 1].end + words[split].start) / 2) if len(words) > split else int(RATE * words[-1].end)
    # Whisper's word times are rough: cut at the quietest 20 ms within 60 ms of the boundary
    hop, reach = RATE // 50, int(RATE * 0.06)
    starts = range(max(0, guess - reach), min(len(audio) - hop, guess + reach), RATE // 200)
    cut = min(starts, key=lambda i: float(np.mean(audio[i : i + hop] ** 2))) + hop // 2
    return np.concatenate([audio[:cut], np.zeros(int(RATE * pause_s), np.float32), audio[cut:]])


def build(
    plain: int, paused: int, voices: list | None = None, pauses: tuple[float, float] = (0.4, 0.7)
) -> tuple[list[dict], list[tuple[str, int | np.ndarray]]]:
    """The conversation: per voice, its questions in a shuffled order (voice k takes the lists from k * n on, so
    the voices share some questions and not others), one noise (a noise burst, a cough, silence in turn; all
    three with one voice) after its third question. Returns the questions (each with its voice, split and where
    its speech lies in its audio) and the order they are played in: ("question", index) or ("noise", audio)."""
    from faster_whisper import WhisperModel

    from voicechat import models

    whisper = WhisperModel(models.whisper_model(), device="cpu", compute_type="int8")
    say = latency_panel.Speaker()
    voices = voices or latency_panel.resolve_voices("joe")
    rng = np.random.default_rng(7)
    noises = [
        (rng.standard_normal(RATE * 2) * 0.01).astype(np.float32),  # a noise burst
        (rng.standard_normal(2400) * 0.4).astype(np.float32),  # a cough
        np.zeros(RATE * 3, np.float32),  # silence
    ]
    items: list[dict] = []
    order: list[tuple[str, int | np.ndarray]] = []
    for k, voice in enumerate(voices):
        mine: list[dict] = []
        for j in range(plain):
            q = PLAIN[(k * plain + j) % len(PLAIN)]
            mine.append({"text": q, "audio": say(voice, q), "paused": False})
        for j in range(paused):
            q, split = PAUSED[(k * paused + j) % len(PAUSED)]
            pause = pauses[0] + (pauses[1] - pauses[0]) * j / max(1, paused - 1)
            audio = paused_speech(say(voice, q), split, pause, whisper)
            mine.append({"text": q, "audio": audio, "paused": True, "pause_s": round(pause, 2), "split": split})
        mine = [mine[i] for i in rng.permutation(len(mine))]
        for j, item in enumerate(mine):
            runs = loud_runs(item["audio"], RATE, floor_db=-36.0)
            lead, end = (runs[0][0], runs[-1][1]) if runs else (0.0, len(item["audio"]) / RATE)
            item.update(voice=voice.id, group=voice.split, lead_s=lead, speech_s=end - lead)
            order.append(("question", len(items)))
            items.append(item)
            if j == 2 or (len(voices) == 1 and j in (6, 10)):
                order.append(("noise", noises[k % 3] if len(voices) > 1 else noises[(j - 2) // 4]))
    return items, order


def by_voice(items: list[dict], order: list, voice: str) -> tuple[list[dict], list]:
    """One voice's part of the conversation: its questions and what is played, in order."""
    index = {k: n for n, k in enumerate(k for k, i in enumerate(items) if i["voice"] == voice)}
    part, last = [], None
    for kind, what in order:
        if kind == "question":
            last = items[what]["voice"]
            if last == voice:
                part.append((kind, index[what]))
        elif last == voice:
            part.append((kind, what))
    return [i for i in items if i["voice"] == voice], part


def joined(items: list[dict], order: list, gap: float) -> np.ndarray:
    """The conversation as one recording, ``gap`` seconds of silence after each sound (for talk --input)."""
    parts = [np.zeros(RATE, np.float32)]
    for kind, what in order:
        audio = items[what]["audio"] if kind == "question" else what
        parts += [audio, np.zeros(int(RATE * gap), np.float32)]
    return np.concatenate(parts)


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


def run_talk(items: list[dict], order: list, gap: float, env_extra: dict, workdir: Path) -> dict:
    """The real `voicechat talk` on a private PulseAudio card: events, and mic/speaker recordings on one clock.

    Each sound is played into the microphone once talk listens again (its reply to the last one has ended:
    without barge-in, talk does not hear a question said over its reply) and at least ``gap`` seconds after the
    last sound ended. Each recording starts at its own moment; a click played into both sinks at once (through
    a combined sink) before talk starts gives the offset between them."""
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
        t0 = time.monotonic()
        state = {"state": "", "since": t0}
        changed = threading.Condition()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                e = json.loads(line)
                now = time.monotonic()
                e["_t"] = now - t0  # seconds into the conversation, on receipt
                with changed:
                    events.append(e)
                    if e["type"] == "status":
                        state.update(state=e["state"], since=now)
                    changed.notify_all()

        def listening_for(seconds: float, timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            with changed:
                while time.monotonic() < deadline:
                    if state["state"] == "listening" and time.monotonic() - state["since"] >= seconds:
                        return True
                    changed.wait(0.05)
            return False

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if not listening_for(0.0, 120):
            proc.kill()
            assert proc.stderr is not None
            raise SystemExit(f"talk did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(1.0)
        with changed:
            old, t0 = t0, time.monotonic()  # (the reader reads t0 from here on)
            for e in events:
                e["_t"] -= t0 - old  # startup events: before the conversation
        starts: list[float] = [0.0] * len(items)
        last_end = time.monotonic() - gap
        for kind, what in order:
            time.sleep(max(0.0, last_end + gap - time.monotonic()))
            listening_for(0.5, 60.0)  # (a turn that never ends: go on after a minute)
            audio = items[what]["audio"] if kind == "question" else what
            began = time.monotonic()
            card.feed_mic(audio).wait()
            last_end = began + len(audio) / RATE
            if kind == "question":
                starts[what] = began - t0 + items[what]["lead_s"]
        time.sleep(max(0.0, last_end + 1.0 - time.monotonic()))
        listening_for(0.5, 30.0)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:  # (its figures are in already: keep them)
            print(f"    talk did not exit within 60 s of Ctrl-C ({workdir.name}): killed", flush=True)
            proc.kill()
            proc.wait(10)
        reader.join(5)
        mic, speaker, offset = rec.stop()
    (workdir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return {"events": events, "mic": mic, "speaker": speaker, "offset": offset, "starts": starts}


def analyse(result: dict, items: list[dict]) -> dict:
    """One run's figures: per voice (latency_panel.per_voice) and pooled over its voices."""
    events = result["events"]
    stats = [e["latency"] for e in events if e["type"] == "turn_stats"]
    starts = result["starts"]
    heard = loud_runs(result["mic"], RATE, floor_db=-36.0, min_len_s=0.5)  # questions, not the noise or the cough
    # the conversation's clock -> the mic recording's: the offset that lines the questions up with what was recorded
    first = heard[0][0] - starts[0] if heard else 0.0
    near = [a - s - first for s in starts for a, _ in heard if abs(a - s - first) < 0.3]
    shift = first + (med(near) if near else 0.0)
    ends = []
    for s, item in zip(starts, items, strict=True):
        guess = s + shift + item["speech_s"]
        found = [b for _, b in heard if abs(b - guess) < 0.3]
        ends.append(min(found, key=lambda b: abs(b - guess)) if found else guess)
    replies = [a - result["offset"] for a, _ in loud_runs(result["speaker"], 48000, min_gap_s=0.5)]
    voices = latency_panel.per_voice(result, items, ends, replies)
    total = latency_panel.pool(list(voices.values()))
    share = {
        k: med([s[k] for s in stats if k in s] or [float("nan")])
        for k in ("endpoint", "stt", "transcript", "first_token", "first_chunk", "first_audio")
    }
    if os.environ.get("BENCH_DEBUG"):
        print(
            "    questions:",
            [(i["voice"], i["text"]) for i in items],
            "\n    turns:",
            [(round(e["_t"], 1), e["text"]) for e in events if e["type"] == "user"],
            "\n    ends:",
            [round(e, 2) for e in ends],
            f"(mic runs matched {len(near)}/{len(items)})",
            "\n    reply starts:",
            [round(x, 2) for x in replies],
            flush=True,
        )
    return {
        "voices": voices,
        "turns": sum(e["type"] == "user" for e in events),
        "noise": total["noise"],
        "early": total["early"],
        "v2v": total["v2v"],
        "share": share,
        "wer": wer(" ".join(total["refs"]), " ".join(total["hyps"])),
        "paused_whole": total["kept"],
        "paused_one": total["one"],
        "paused": total["paused"],
        "internal_v2v": [s["voice_to_voice"] for s in stats if "voice_to_voice" in s],
        "offset": result["offset"],
    }


def naive(items: list[dict]) -> list[float]:
    """Transcribe the whole utterance, wait for the whole reply, synthesize all of it: end of speech -> audio ready."""
    from voicechat import sentences
    from voicechat.config import resolve
    from voicechat.engines import registry
    from voicechat.engines.base import Message, TextDelta

    cfg = resolve(
        overrides={"llm.temperature": 0.0, "llm.max_tokens": int(LLM_ENV["VOICECHAT_LLM_MAX_TOKENS"]), "llm.system_prompt": SYSTEM}
    )
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
        f"    voice to voice, heard (mic end of speech -> first speaker sample): p50 {med(v) if v else float('nan'):.2f} s"
        f"  p95 {p95(v) if v else float('nan'):.2f} s  (n={len(v)}; clock offset between the recordings {offsets} ms)"
    )
    print(
        f"    talk's own turn_stats, p50: end of turn {s['endpoint']:.2f} s after end of speech; transcript {s['transcript']:.2f} s"
        f" after end of speech ({s['stt']:.2f} s after end of turn); first token {s['first_token']:.2f} s; first chunk"
        f" {s['first_chunk']:.2f} s and first audio {s['first_audio']:.2f} s after end of turn;"
        f" voice to voice {med(iv) if iv else float('nan'):.2f} s"
    )
    for i, r in enumerate(runs):
        print(
            f"    run {i + 1} ({', '.join(r['voices'])}): {r['turns']} turns; paused questions kept as one turn {r['paused_one']}/{r['paused']}, heard whole {r['paused_whole']}/{r['paused']};"
            f" replies that began before the question ended {r['early']}; turns from noise/cough/silence {r['noise']};"
            f" transcript WER on the questions without a pause {100 * r['wer']:.1f} %"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plain", type=int, default=8, help="questions without a pause, per voice")
    ap.add_argument("--paused", type=int, default=10, help="questions with a mid-sentence pause, per voice")
    ap.add_argument(
        "--gap", type=float, default=3.0, help="at least this many seconds from the end of a sound to the next (and talk listens again)"
    )
    ap.add_argument("--max-tokens", type=int, default=32, help="the reply's length in tokens (shorter replies: a shorter run)")
    ap.add_argument("--pauses", default="0.4-0.7", help="the pauses' range in seconds, spread over a voice's paused questions")
    ap.add_argument(
        "--voices", default="joe", help="panel voices that speak (bench/voice_panel.py ids or a unique part of one; joe: Piper's joe)"
    )
    ap.add_argument("--designs", default="current,baseline", help=f"the designs run, in turn: {', '.join(latency_panel.DESIGNS)}")
    ap.add_argument("--rounds", type=int, default=1, help="the designs alternate this many times")
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout of an earlier commit (git worktree add DIR COMMIT): design 'before' runs talk on its code",
    )
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    args = ap.parse_args()
    voices = latency_panel.resolve_voices(args.voices)
    if args.before is not None:
        if not (args.before / "voicechat" / "__init__.py").is_file():
            raise SystemExit(f"--before {args.before}: no voicechat package there; make one with: git worktree add DIR COMMIT")
        latency_panel.DESIGNS["before"] = {"PYTHONPATH": str(args.before.resolve())}
        latency_panel.DESIGN_NAMES["before"] = f"before (talk on the code in {args.before})"
    designs = latency_panel.resolve_designs(args.designs)
    try:
        lo, hi = (float(x) for x in args.pauses.split("-"))
    except ValueError:
        raise SystemExit(f"--pauses: {args.pauses!r} is not a range like 0.4-0.8") from None
    tmp = Path(tempfile.mkdtemp(prefix="vc-latency-"))
    print(f"talk's events and the recordings: {tmp}")
    items, order = build(args.plain, args.paused, voices, (lo, hi))
    conv = joined(items, order, args.gap)
    LLM_ENV["VOICECHAT_LLM_MAX_TOKENS"] = str(args.max_tokens)
    (tmp / "items.json").write_text(json.dumps([{k: v for k, v in i.items() if k != "audio"} for i in items], indent=1))
    print(
        f"conversation: {len(voices)} voice(s), {len(items)} questions ({sum(i['paused'] for i in items)} with a mid-sentence"
        f" pause of {lo:.2f}-{hi:.2f} s), noise between them; {len(conv) / RATE:.0f} s of sound and gaps, played in real time"
        f" per design ({', '.join(designs)}), each sound once talk listens again; {args.rounds} round(s); replies of at most"
        f" {args.max_tokens} tokens",
        flush=True,
    )
    runs: dict[str, list[dict]] = {d: [] for d in designs}
    for r in range(args.rounds):
        for v in voices:  # one talk run per voice and design, the designs in turn: load that drifts hits all alike
            mine, part = by_voice(items, order, v.id)
            for d in designs:
                work = tmp / f"{d}{r}-{v.id.replace(':', '_').replace('+', '_')}"
                runs[d].append(analyse(run_talk(mine, part, args.gap, latency_panel.DESIGNS[d], work), mine))
                print(f"  ran {d} on {v.id} (round {r + 1}) at {time.strftime('%H:%M:%S')}", flush=True)
    for d in designs:
        show(latency_panel.DESIGN_NAMES[d], runs[d])
    latency_panel.tables({d: [r["voices"] for r in runs[d]] for d in designs}, voices, items)
    v = {d: [x for r in runs[d] for x in r["v2v"]] for d in designs}
    if "current" in v and "baseline" in v and v["current"] and v["baseline"]:
        print(f"\n  ratio current/baseline voice to voice p50 {med(v['current']) / med(v['baseline']):.2f}   (goal <= 0.6)")
    if not args.skip_naive and v.get("current"):
        n = naive(items)
        print(
            f"  (c) naive sequential, in process: end of speech -> whole reply synthesized p50 {med(n):.2f} s  p95 {p95(n):.2f} s;"
            f"  ratio current/naive {med(v['current']) / med(n):.2f}"
        )
    if not args.skip_rss:
        print(f"  peak RSS of `voicechat talk` (default engines, 40 s of conversation): {peak_rss(tmp, conv):.0f} MB   (goal <= 800)")


if __name__ == "__main__":
    main()
