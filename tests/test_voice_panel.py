"""The development voice panel's rules (bench/voice_panel.py): held-out voices, where pauses go, the same panel every build."""

from __future__ import annotations

import importlib.util
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def vp():
    path = Path(__file__).resolve().parent.parent / "bench" / "voice_panel.py"
    spec = importlib.util.spec_from_file_location("voice_panel", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["voice_panel"] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("voice_panel", None)


def tone(text: str) -> np.ndarray:
    """A stand-in for a synthesizer: a tone as long as the text (no espeak-ng, no Piper)."""
    n = 800 * len(text.split())
    return (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / 16000)).astype(np.float32)


def test_a_third_of_the_voices_is_held_out_whole_in_every_family(vp):
    entries = vp.plan()
    split_of: dict[str, set[str]] = defaultdict(set)
    family_splits: dict[str, set[str]] = defaultdict(set)
    for e in entries:
        split_of[e["voice"]].add(e["split"])
        family_splits[e["family"]].add(e["split"])
    assert all(len(s) == 1 for s in split_of.values()), "a voice's files are all in one split"
    held = [v for v, s in split_of.items() if s == {"heldout"}]
    assert len(held) * 3 == len(split_of)
    assert all(s == {"tune", "heldout"} for s in family_splits.values())
    # every utterance is in both splits: the split is by voice, not by utterance
    by_utt = defaultdict(set)
    for e in entries:
        by_utt[e["utterance"]].add(e["split"])
    assert all(s == {"tune", "heldout"} for s in by_utt.values())


def test_a_small_panel_keeps_each_voices_split_and_spans_the_kinds(vp):
    full = {e["voice"]: e["split"] for e in vp.plan()}
    small = vp.plan(22, 6, 9, 2)
    assert {e["voice"]: e["split"] for e in small}.items() <= full.items()
    assert {e["split"] for e in small} == {"tune", "heldout"}
    assert {e["kind"] for e in small} == {"finished", "short", "paused"}
    assert len({e["pause_place"] for e in vp.plan(22, 3, 18, 1) if e["kind"] == "paused"}) == 6


def test_pauses_follow_their_word_and_last_0_3_to_1_s(vp):
    entries = vp.plan()
    places = {"for": "for", "the": "the", "and": "and", "to": "to", "um": "um"}
    pause_of: dict[tuple[str, str], set[float]] = defaultdict(set)
    for e in entries:
        if e["kind"] != "paused":
            assert e["pause_s"] is None
            continue
        assert e["text"].startswith(e["pause_after"] + " ")
        last = e["pause_after"].split()[-1]
        if e["pause_place"] == "comma":
            assert last.endswith(",")
        else:
            assert last == places[e["pause_place"]]
        assert e["pause_word_index"] == len(e["pause_after"].split())
        assert 0.3 <= e["pause_s"] <= 1.0
        pause_of[(e["voice"], e["utterance"])].add(e["pause_s"])
    assert all(len(p) == 1 for p in pause_of.values()), "every variant of a voice pauses as long"
    assert len({p for ps in pause_of.values() for p in ps}) >= 10, "the lengths spread over the range"


def test_the_same_seed_gives_the_same_panel(vp):
    assert vp.plan(22) == vp.plan(22)
    assert [e["pause_s"] for e in vp.plan(22)] != [e["pause_s"] for e in vp.plan(23)]


def test_the_pause_is_silence_where_the_manifest_says_and_effects_are_seeded(vp, monkeypatch):
    monkeypatch.setattr(vp.Builder, "say", lambda self, entry, text: tone(text))
    entries = [e for e in vp.plan(22, 3, 9, 4) if e["kind"] == "paused"]
    for variant in ("clean", "tempo0.85", "pitch+3"):
        e = next(x for x in entries if x["variant"] == "clean")
        e = {**e, "variant": variant}
        audio, at = vp.Builder(22).render(e)
        a, b = (round(at[k] * 16000) for k in ("pause_start_s", "pause_end_s"))
        assert abs((b - a) / 16000 - e["pause_s"]) < 1e-3
        assert np.max(np.abs(audio[a + 10 : b - 10])) < 1e-3, variant
        assert np.max(np.abs(audio[a - 400 : a])) > 0.05 and np.max(np.abs(audio[b : b + 400])) > 0.05
    for variant in ("reverb0.8", "pink10", "babble15", "phone"):
        e = {**entries[0], "variant": variant}
        first, again = vp.Builder(22).render(e)[0], vp.Builder(22).render(e)[0]
        assert np.array_equal(first, again), variant
        assert not np.array_equal(first, vp.Builder(23).render(e)[0]) or variant == "phone"


def test_noise_fills_the_pause_with_room_tone_at_the_asked_snr(vp, monkeypatch):
    monkeypatch.setattr(vp.Builder, "say", lambda self, entry, text: tone(text))
    e = {**next(x for x in vp.plan(22, 3, 9, 1) if x["kind"] == "paused"), "variant": "pink20"}
    audio, at = vp.Builder(22).render(e)
    clean, _ = vp.Builder(22).render({**e, "variant": "clean"})
    a, b = (round(at[k] * 16000) for k in ("pause_start_s", "pause_end_s"))
    assert np.std(audio[a + 100 : b - 100]) > 1e-3, "room tone, not digital silence"
    noise = audio - clean
    speech = clean[np.abs(clean) > 0.01]
    snr = 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))
    assert abs(snr - 20) < 1.0
