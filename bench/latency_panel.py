"""bench/latency.py on the voice panel: which voices speak the questions, the designs compared, and the tables per voice.

Voices are bench/voice_panel.py's (``joe`` is Piper's joe as bundled, the panel's first Piper voice); a voice is
named by its panel id or by a part of it found in one id only (``en-us+m3``). A voice's split (``tune`` or
``heldout``) is the panel's: held-out voices are reported in a block of their own.

Designs are settings over the configured ones, given to the real ``voicechat talk`` as environment variables:
``current`` (as built), ``no_draft`` (no reply written in the pause the silence may end), ``draft_slow`` / ``no_draft_slow``
(a draft written in the slow wait for a thought in progress too, or not), ``before22`` (issue 22's end-of-turn change undone as far as config reaches: no last-word
probability rule, 700 ms for unclear endings) and ``baseline`` (a 600 ms silence rule, then whole-utterance
transcription).

Per voice and design: voice to voice heard from outside (end of each question in the microphone recording to
the first reply sample in the speaker recording), paused questions kept as one turn (no turn delivered while the
question was still being said) and heard whole (one turn holding at least half the words of each side of the pause:
a question kept as one turn but misheard is not heard whole), end of speech to end of turn on
the finished (unpaused) questions from talk's own turn_stats (``endpoint``: the end of speech as talk's listener
heard it, to the turn judged complete), the WER of the finished questions' transcripts, and turns made from noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import voice_panel
from common import med, p95

from tests.helpers import wer

RATE = 16000
JOE = "piper:joe:l1.0:n0.667:w0.8"
DESIGNS: dict[str, dict[str, str]] = {
    "current": {},
    "before22": {"VOICECHAT_TURN_LAST_WORD_MIN": "0", "VOICECHAT_TURN_END_MS": "700"},
    "judged_at_pause": {"VOICECHAT_TURN_AUDIO_MODEL_MS": "150"},
    "no_draft": {"VOICECHAT_TURN_DRAFT_REPLY": "false"},
    "draft_slow": {"VOICECHAT_TURN_DRAFT_MAX_MS": "1600"},
    "no_draft_slow": {"VOICECHAT_TURN_DRAFT_MAX_MS": "850"},
    "baseline": {
        "VOICECHAT_TURN_DETECTOR": "silence",
        "VOICECHAT_TURN_INCREMENTAL": "false",
        "VOICECHAT_TURN_BEAM_SIZE": "5",
        "VOICECHAT_TURN_SILERO_FILTER": "true",
    },
}
DESIGN_NAMES = {
    "current": "current (talk as built)",
    "before22": "before22 (turn.last_word_min=0, turn.end_ms=700)",
    "judged_at_pause": "judged_at_pause (turn.audio_model_ms=150: the audio turn model at the pause, beside Whisper)",
    "no_draft": "no_draft (turn.draft_reply=false: the reply begins when the turn ends)",
    "draft_slow": "draft_slow (turn.draft_max_ms=1600: a thought in progress drafted too)",
    "no_draft_slow": "no_draft_slow (turn.draft_max_ms=850: no draft in the wait after a thought in progress; the default before)",
    "baseline": "baseline (600 ms silence rule, then whole-utterance transcription)",
}


def resolve_voices(spec: str) -> list[voice_panel.Voice]:
    panel = voice_panel.voices()
    out = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        name = JOE if name == "joe" else name
        found = [v for v in panel if v.id == name] or [v for v in panel if name in v.id]
        if len(found) != 1:
            raise SystemExit(f"--voices: {name!r} names {len(found)} panel voices; give a voice id from bench/voice_panel.py")
        out.append(found[0])
    return out


def resolve_designs(spec: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in DESIGNS]
    if bad or not names:
        raise SystemExit(f"--designs: unknown {', '.join(bad) or '(none)'}; choose among {', '.join(DESIGNS)}")
    return names


class Speaker:
    """Speech in a panel voice, 16 kHz, without the synthesizer's leading and trailing silence."""

    def __init__(self) -> None:
        self._piper: voice_panel.Piper | None = None

    def __call__(self, voice: voice_panel.Voice, text: str) -> np.ndarray:
        if voice.engine == "piper":
            if self._piper is None:
                self._piper = voice_panel.Piper()
            audio = self._piper(text, voice.params)
        else:
            audio = voice_panel.espeak(text, voice.params)
        return voice_panel.trim(audio, keep_s=0.05)


def _words(text: str) -> list[str]:
    import re

    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def assign(events: list[dict], items: list[dict], starts: list[float]) -> tuple[list[list[int]], dict[str, int]]:
    """Each user turn goes to a question by time and words: it arrived while that question or the one before
    was being played or answered (``_t`` and ``starts``: seconds into the conversation), and its words match that
    question best (WER against the whole question, or either part of a paused one, at most 0.6). A turn that
    matches neither is noise, counted for the voice of the question it arrived after. Returns the indices of
    the user events per question and the noise turns per voice."""
    users = [k for k, e in enumerate(events) if e["type"] == "user"]
    got: list[list[int]] = [[] for _ in items]
    noise: dict[str, int] = {}
    for k in users:
        t = events[k].get("_t", 0.0)
        now = max([j for j, s in enumerate(starts) if s <= t], default=0)
        best, pick = 9.0, now
        for j in {now, max(0, now - 1)}:
            i = items[j]
            w = _words(i["text"])
            parts = [w] + ([w[: i["split"]], w[i["split"] :]] if i["paused"] else [])
            score = min(wer(" ".join(p), events[k]["text"]) for p in parts)
            if score < best:
                best, pick = score, j
        if best <= 0.6:
            got[pick].append(k)
        else:
            noise[items[now]["voice"]] = noise.get(items[now]["voice"], 0) + 1
    return got, noise


def cut(start: float, item: dict, events: list[dict]) -> bool:
    """A question was cut: a turn was delivered while it was still being said (``start``: where its speech begins,
    on the events' clock). Whatever the words were heard as, that is the user cut off mid-sentence."""
    return any(e["type"] == "user" and start + 0.1 < e.get("_t", -1.0) < start + item["speech_s"] - 0.05 for e in events)


def whole(item: dict, said: list[str]) -> bool:
    """A paused question is kept whole when exactly one turn went to it and that turn holds words from both sides."""
    if len(said) != 1:
        return False
    w, heard = _words(item["text"]), _words(said[0])
    return all(sum(x in heard for x in part) >= 0.5 * len(part) for part in (w[: item["split"]], w[item["split"] :]))


def per_voice(result: dict, items: list[dict], mic_ends: list[float], reply_starts: list[float]) -> dict[str, dict]:
    """Figures per voice for one run. ``mic_ends``: each item's end of speech on the microphone recording's clock;
    ``reply_starts``: first samples of replies on the same clock."""
    events = result["events"]
    got, noise = assign(events, items, result["starts"])
    stats_of: dict[int, dict] = {}
    last_user = None
    for k, e in enumerate(events):
        if e["type"] == "user":
            last_user = k
        elif e["type"] == "turn_stats" and last_user is not None and last_user not in stats_of:
            stats_of[last_user] = e["latency"]
    out: dict[str, dict] = {}
    for n, item in enumerate(items):
        r = out.setdefault(
            item["voice"],
            {
                "v2v": [],
                "early": 0,
                "kept": 0,
                "one": 0,
                "paused": 0,
                "eot": [],
                "refs": [],
                "hyps": [],
                "noise": noise.get(item["voice"], 0),
            },
        )
        end, begin = mic_ends[n], mic_ends[n] - item["speech_s"]
        if any(begin < s <= end for s in reply_starts):
            r["early"] += 1  # a reply began before the question ended: the question was cut
        else:
            after = [s for s in reply_starts if s > end]
            if after and after[0] - end < 8.0:
                r["v2v"].append(after[0] - end)
        said = [events[k]["text"] for k in got[n]]
        if item["paused"]:
            r["paused"] += 1
            r["kept"] += whole(item, said)
            r["one"] += not cut(result["starts"][n], item, events)
        else:
            r["refs"].append(item["text"])
            r["hyps"].append(" ".join(said))
            if len(got[n]) == 1 and stats_of.get(got[n][0], {}).get("endpoint") is not None:
                r["eot"].append(stats_of[got[n][0]]["endpoint"])
    return out


def pool(rows: list[dict]) -> dict:
    return {
        "v2v": [x for r in rows for x in r["v2v"]],
        "early": sum(r["early"] for r in rows),
        "kept": sum(r["kept"] for r in rows),
        "one": sum(r["one"] for r in rows),
        "paused": sum(r["paused"] for r in rows),
        "eot": [x for r in rows for x in r["eot"]],
        "refs": [x for r in rows for x in r["refs"]],
        "hyps": [x for r in rows for x in r["hyps"]],
        "noise": sum(r["noise"] for r in rows),
    }


def _q(values: list[float], f) -> str:
    return f"{f(values):.2f}" if values else "-"


def row(name: str, r: dict) -> str:
    w = 100 * wer(" ".join(r["refs"]), " ".join(r["hyps"])) if r["refs"] else float("nan")
    return (
        f"| {name} | {_q(r['v2v'], med)} | {_q(r['v2v'], p95)} | {len(r['v2v'])} | {r['one']}/{r['paused']} | {r['kept']}/{r['paused']} | {r['early']} |"
        f" {_q(r['eot'], med)} | {_q(r['eot'], p95)} | {len(r['eot'])} | {w:.1f} | {r['noise']} |"
    )


HEAD = (
    "| design | v2v p50 s | v2v p95 s | n | paused kept as one turn | paused heard whole | replies before the question ended | EoT p50 s | EoT p95 s | n | WER % | turns from noise |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def tables(by_design: dict[str, list[dict[str, dict]]], voices: list[voice_panel.Voice], items: list[dict]) -> None:
    """One table per voice (tune voices, then held-out ones), then the pooled rows per split."""
    print(
        "\nv2v: voice to voice heard outside (end of question in the mic recording -> first reply sample in the speaker"
        " recording). EoT: end of speech -> end of turn on the finished (unpaused) questions, from talk's turn_stats"
        " (`endpoint`). WER: finished questions' transcripts. Goals: v2v p50 <= 0.75 s, p95 <= 1.2 s; paused kept as one"
        " turn >= 19/20; EoT p50 <= 0.35 s, p95 <= 0.8 s."
    )
    for split, title in (("tune", "tune voices"), ("heldout", "held-out voices (never tuned on)")):
        group = [v for v in voices if v.split == split]
        if not group:
            continue
        print(f"\n### {title}")
        for v in group:
            mine = [i for i in items if i["voice"] == v.id]
            pauses = sorted(i["pause_s"] for i in mine if i["paused"])
            span = f"pauses {pauses[0]:.2f}-{pauses[-1]:.2f} s" if pauses else "no pauses"
            print(f"\n{v.id} ({split}; {sum(not i['paused'] for i in mine)} finished, {len(pauses)} paused questions, {span})\n")
            print(HEAD)
            for d, runs in by_design.items():
                print(row(d, pool([r[v.id] for r in runs if v.id in r])))
    print("\n### all voices of a split, pooled\n")
    print(HEAD.replace("| design |", "| split, design |", 1))
    for split in ("tune", "heldout"):
        ids = {v.id for v in voices if v.split == split}
        if not ids:
            continue
        for d, runs in by_design.items():
            print(row(f"all {split} voices, {d}", pool([r[x] for r in runs for x in ids if x in r])))
