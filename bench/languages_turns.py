"""Benchmark: are sentences with a pause in the middle kept whole in German and French as often as in English?

For each language, a conversation of questions spoken by espeak-ng, each with 0.3-1.0 s of silence put in
after a conjunction or a preposition ("a table for | four people", "einen Tisch für | vier Personen",
"une table pour | quatre personnes"), is played into the real `voicechat talk --input`
process (``--fast``: at each pause talk waits for the transcript, so the decisions do not depend on the
machine's load) with the multilingual Whisper and ``listen.languages en,de,fr``. A paused question is kept whole
when exactly one user turn went to it and that turn holds words from both sides of the pause (the panel
method of bench/latency.py). The cut is placed where espeak-ng ends the words before the pause when it
speaks them alone, moved to the quietest 20 ms nearby.

    python bench/languages_turns.py [--languages en,de,fr] [--rounds 1] [--detector meaning] [--voices de=mb-de6,...]

``--voices`` speaks a language with another espeak-ng voice: MBROLA's (``mb-us1``, ``mb-de6``, ``mb-fr1``: Debian's
mbrola-* packages) are far more intelligible to Whisper base than espeak-ng's own German and French, whose
transcripts often match neither half of a question.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import wer, write_wav
from voicechat import languages, models

RATE = 16000
VOICE = {"en": "en-us", "de": "de", "fr": "fr-fr"}
# (question, words before the pause): each pause follows a conjunction or a preposition
PAUSED = {
    "en": [
        ("I would like to book a table for four people tonight.", 7),
        ("Can you tell me the weather in Paris tomorrow?", 6),
        ("Please give me a recipe with chicken and rice.", 6),
        ("I want to go to the cinema and then eat a pizza.", 7),
        ("Remind me to call my mother because it is her birthday.", 6),
        ("What is the difference between a frog and a toad?", 5),
    ],
    "de": [
        ("Ich möchte einen Tisch für vier Personen reservieren.", 5),
        ("Wie wird das Wetter in Berlin morgen?", 5),
        ("Gib mir bitte ein Rezept mit Reis und Hähnchen.", 6),
        ("Ich gehe heute ins Kino und danach essen wir Pizza.", 6),
        ("Erinnere mich an meine Mutter, weil sie heute Geburtstag hat.", 6),
        ("Was ist der Unterschied zwischen einem Frosch und einer Kröte?", 5),
    ],
    "fr": [
        ("Je voudrais réserver une table pour quatre personnes ce soir.", 6),
        ("Quel temps fera-t-il à Paris demain ?", 4),
        ("Donne-moi une recette avec du poulet et du riz.", 4),
        ("Je vais au cinéma et ensuite nous mangeons une pizza.", 5),
        ("Rappelle-moi d'appeler ma mère parce que c'est son anniversaire.", 6),
        ("Quelle est la différence entre une grenouille et un crapaud ?", 5),
    ],
}
ENV = {
    "VOICECHAT_LLM_TEMPERATURE": "0",
    "VOICECHAT_LLM_MAX_TOKENS": "8",
    "VOICECHAT_MEMORY_MAX_CONTEXT_TOKENS": "96",
    "VOICECHAT_TTS_ENGINE": "espeak",
    "VOICECHAT_TTS_VOICE": "en-us",
}


def espeak(text: str, voice: str) -> np.ndarray:
    import soundfile as sf
    import soxr

    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True, timeout=60).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, RATE).astype(np.float32)


def voiced_end(audio: np.ndarray) -> int:
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return int(loud[-1]) if loud.size else len(audio)


def paused(text: str, split: int, pause_s: float, voice: str) -> np.ndarray:
    whole = espeak(text, voice)
    guess = min(len(whole) - 1, voiced_end(espeak(" ".join(text.split()[:split]), voice)))
    hop, reach = RATE // 50, int(RATE * 0.08)
    starts = range(max(0, guess - reach), min(len(whole) - hop, guess + reach), RATE // 200)
    cut = min(starts, key=lambda i: float(np.mean(whole[i : i + hop] ** 2))) + hop // 2
    return np.concatenate([whole[:cut], np.zeros(int(RATE * pause_s), np.float32), whole[cut:]])


def build(language: str) -> tuple[np.ndarray, list[dict]]:
    items, parts = [], [np.zeros(RATE, np.float32)]
    questions = PAUSED[language]
    for i, (text, split) in enumerate(questions):
        pause = round(0.3 + 0.7 * i / max(1, len(questions) - 1), 2)
        parts += [paused(text, split, pause, VOICE[language]), np.zeros(int(RATE * 10.0), np.float32)]
        items.append({"text": text, "split": split, "pause_s": pause})
    return np.concatenate(parts), items


def kept_whole(users: list[str], items: list[dict]) -> tuple[int, int, list[list[str]]]:
    """Each user turn goes to the question (or half of one) it matches best; a question is kept whole when one
    turn went to it holding words from both halves. Returns (kept whole, turns that match nothing, assignment)."""
    assigned: list[list[str]] = [[] for _ in items]
    stray = 0
    for u in users:
        scores = []
        for k, item in enumerate(items):
            w = item["text"].split()
            halves = [w, w[: item["split"]], w[item["split"] :]]
            scores.append((min(wer(" ".join(h), u) for h in halves), k))
        best, k = min(scores)
        if best <= 0.7:
            assigned[k].append(u)
        else:
            stray += 1
    kept = 0
    for k, item in enumerate(items):
        w = languages.words(item["text"])
        first, second = w[: item["split"]], w[item["split"] :]
        said = languages.words(assigned[k][0]) if len(assigned[k]) == 1 else []
        kept += bool(said) and all(sum(x in said for x in half) >= 0.4 * len(half) for half in (first, second))
    return kept, stray, assigned


def run_talk(audio: np.ndarray, declared: str, detector: str, workdir: Path) -> list[dict]:
    conv = write_wav(workdir / "conv.wav", audio)
    env = {**os.environ, **ENV, "VOICECHAT_STT_MODEL": models.multilingual_whisper() or "", "VOICECHAT_LISTEN_LANGUAGES": declared}
    env["VOICECHAT_TURN_DETECTOR"] = detector
    env["XDG_DATA_HOME"] = str(workdir / "data")  # (the history of the run stays out of the user's)
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "voicechat"),
            "talk",
            "--input",
            str(conv),
            "--fast",
            "--output",
            str(workdir / "out.wav"),
            "--no-log",
            "--json",
        ],
        capture_output=True,
        env=env,
        timeout=1800,
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr.decode()[-500:])
    return [json.loads(line) for line in out.stdout.decode().splitlines() if line.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--languages", default="en,de,fr")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--detector", default="meaning", choices=("meaning", "silence"))
    ap.add_argument("--voices", default="", help="LANG=VOICE,...: speak a language with this espeak-ng voice (de=mb-de6)")
    args = ap.parse_args()
    for item in filter(None, args.voices.split(",")):
        language, _, voice = item.partition("=")
        if language not in VOICE or not voice:
            raise SystemExit(f"--voices: {item!r} is not LANG=VOICE with LANG one of {', '.join(VOICE)}")
        VOICE[language] = voice
    if models.multilingual_whisper() is None:
        raise SystemExit('the multilingual Whisper is not installed: pip install "voicechat[multilingual]"')
    for language in args.languages.split(","):
        audio, items = build(language)
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                events = run_talk(audio, args.languages, args.detector, Path(tmp))
            users = [e["text"] for e in events if e["type"] == "user"]
            langs = [e.get("language") for e in events if e["type"] == "user"]
            kept, stray, assigned = kept_whole(users, items)
            print(
                f"{language} round {r + 1} ({args.detector}): paused questions kept whole {kept}/{len(items)}, "
                f"{len(users)} turns, {stray} matching nothing; turn languages {langs}"
            )
            for item, got in zip(items, assigned, strict=True):
                print(f"    {item['pause_s']:.2f} s after word {item['split']}: {got}")


if __name__ == "__main__":
    main()
