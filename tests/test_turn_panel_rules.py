"""End of turn on voice-panel audio (bench/voice_panel.py): a sentence paused mid-way is one turn, a finished one
ends, and room noise after the speech does not keep the turn open. The pure rules are fast-tier tests; the panel
audio goes through the real listener, Whisper, the audio turn model and the chat model's reading in process."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import bench_module
from voicechat.config import resolve
from voicechat.voice import vad

# --- the room's noise floor (pure) ---------------------------------------------------------------------------


@pytest.mark.fast
def test_a_quiet_room_lets_every_level_count_as_speech():
    room = vad.NoiseFloor(30)
    for level in [-120.0] * 20 + [-30.0] * 20 + [-60.0] * 5:
        smooth = room.push(level)
        assert room.loud_enough(smooth)
    assert not room.noisy


@pytest.mark.fast
def test_a_steady_sound_from_the_start_is_left_to_the_voice_detector():
    room = vad.NoiseFloor(30)
    assert all(room.loud_enough(room.push(-25.0)) for _ in range(300))
    assert not room.noisy


@pytest.mark.fast
def test_in_a_noisy_room_speech_must_stand_above_the_floor():
    rng = np.random.default_rng(0)
    room = vad.NoiseFloor(30)
    noise = lambda: -40.0 + rng.normal(0, 1.5)  # noqa: E731 - a fan or a crowd: a level that wanders a little
    for _ in range(15):  # the room before anyone speaks
        room.push(noise())
    speech = [room.loud_enough(room.push(-22.0 + rng.normal(0, 3))) for _ in range(60)]
    assert room.noisy
    after = [room.loud_enough(room.push(noise())) for _ in range(60)]
    assert sum(speech[10:]) == len(speech) - 10, "speech well above the room counts (once the level has risen)"
    assert not any(after[15:]), "the room alone does not (once the level has settled)"


class Scripted(vad.Segmenter):
    """A segmenter whose frames are voiced as a script says (webrtcvad is not asked)."""

    def __init__(self, script: list[bool], noisy: bool) -> None:
        super().__init__(resolve().listen, pause_ms=150)
        self.script, self.noisy_room = iter(script), noisy

    def is_voiced(self, frame: bytes) -> bool:
        self.room.floor, self.room.loud = (-40.0, -20.0) if self.noisy_room else (-120.0, -20.0)
        return next(self.script)


def silence_after(script: list[bool], noisy: bool) -> int:
    seg = Scripted(script, noisy)
    frame = bytes(seg.frame_bytes)
    for _ in script:
        seg.push(frame)
    assert seg.active
    return seg.silence_run


@pytest.mark.fast
def test_in_a_noisy_room_a_blip_does_not_end_a_silence_but_speech_does():
    speech, quiet = [True] * 20, [False] * 10
    blip = [True] * (vad.BLIP_FRAMES - 1)
    assert silence_after(speech + quiet + blip + quiet, noisy=True) == 10 + len(blip) + 10
    assert silence_after(speech + quiet + [True] * vad.BLIP_FRAMES + quiet, noisy=True) == 10
    # a quiet room: any voiced frame is speech, as before
    assert silence_after(speech + quiet + blip + quiet, noisy=False) == 10


# --- a last word Whisper guessed (pure) --------------------------------------------------------------------------


@pytest.mark.fast
def test_finished_words_whose_last_word_whisper_guessed_are_unclear():
    from voicechat.voice.endpoint import Hypothesis, MeaningPolicy

    cfg = resolve().turn
    policy = MeaningPolicy(cfg, audio_model=True)
    sure, unsure = cfg.last_word_min + 0.5, cfg.last_word_min / 2
    # "a table for" cut at a pause, heard as "a table phone.": the audio model agrees it sounds finished
    assert policy.silence_to_end(Hypothesis("I would like to book a table phone.", 0.9, word_prob=sure)) == cfg.fast_end_ms
    assert policy.silence_to_end(Hypothesis("I would like to book a table phone.", 0.9, word_prob=unsure)) == cfg.end_ms
    # a lone word is not judged on it (Whisper is often unsure of a short answer), nor is an engine that cannot tell
    assert policy.silence_to_end(Hypothesis("Ten.", 0.9, word_prob=unsure)) == cfg.fast_end_ms
    assert policy.silence_to_end(Hypothesis("What time is it?", 0.9)) == cfg.fast_end_ms
    # words already unclear or incomplete keep their wait
    assert policy.silence_to_end(Hypothesis("Send a message to", 0.9, word_prob=unsure)) == cfg.slow_end_ms
    assert cfg.end_ms > 800, "unclear words wait out a pause of 0.8 s"


# --- panel audio through the real listening half ----------------------------------------------------------------


VOICE = {"voice": "en-us+m1", "speed": 175, "pitch": 50}  # a tune voice of the panel


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    """A few panel files (espeak-ng, as bench/voice_panel.py makes them) and the engines of `talk --fast`."""
    import soundfile as sf

    vp, tp = bench_module("voice_panel"), bench_module("turn_panel")
    folder = tmp_path_factory.mktemp("panel")
    rng = np.random.default_rng(22)
    lead, tail = np.zeros(int(16000 * vp.LEAD_S), np.float32), np.zeros(int(16000 * vp.TAIL_S), np.float32)

    def entry(name: str, kind: str, first: str, second: str | None = None, pause_s: float = 0.0, noise_db: float | None = None) -> dict:
        a = vp.trim(vp.espeak(first, VOICE))
        speech = a if second is None else vp.join(a, vp.trim(vp.espeak(second, VOICE)), pause_s)
        audio = np.concatenate([lead, speech, tail])
        if noise_db is not None:
            audio = vp.add_noise(audio, vp.pink(len(audio), rng), noise_db)
        sf.write(str(folder / f"{name}.wav"), audio, 16000, subtype="PCM_16")
        at = vp.LEAD_S + len(a) / 16000
        return {
            "file": f"{name}.wav",
            "kind": kind,
            "speech_end_s": vp.LEAD_S + len(speech) / 16000,
            "duration_s": len(audio) / 16000,
            "pause_start_s": at if second else None,
            "pause_end_s": at + pause_s if second else None,
        }

    files = {
        "paused": entry("paused", "paused", "I would like to book a table for", "four people tonight at eight.", 0.6),
        "finished": entry("finished", "finished", "What is the capital of France?"),
        "noisy": entry("noisy", "finished", "Turn off the kitchen lights.", noise_db=10.0),
    }
    cfg = resolve()
    engines = tp.load_engines(cfg)
    try:
        yield {name: tp.run_stream(cfg, engines, [e], folder)[0] for name, e in files.items()}, tp
    finally:
        engines[0].close()
        engines[1].llm.close()


def test_a_sentence_paused_after_for_is_one_turn(panel):
    results, tp = panel
    r = results["paused"]
    assert len(r["turns"]) == 1, [t["text"] for t in r["turns"]]
    assert tp.judge(r)["ok"], r["turns"]


def test_a_finished_question_ends_its_turn(panel):
    results, tp = panel
    assert tp.judge(results["finished"])["ok"], results["finished"]["turns"]


def test_room_noise_after_the_speech_does_not_keep_the_turn_open(panel):
    results, tp = panel
    r = results["noisy"]
    assert tp.judge(r)["ok"], r["turns"] or "no turn: the noise kept it open"
