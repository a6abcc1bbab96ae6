"""Turn transcription with the real bundled Whisper: the short encoder window, its fall-backs, silence."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import bench_module, speak, wer
from voicechat.config import resolve
from voicechat.engines import whisper_turn


@pytest.fixture(scope="module")
def stt():
    from voicechat.engines import registry

    engine = registry.create("stt", resolve())
    yield engine
    engine.close()


def pad(audio: np.ndarray, before: float = 0.3, after: float = 0.15) -> np.ndarray:
    return np.concatenate([np.zeros(int(16000 * before), np.float32), audio, np.zeros(int(16000 * after), np.float32)])


def test_a_short_turn_decodes_on_a_short_window_as_well_as_on_the_full_one(stt):
    q = "How many legs does a spider have?"
    audio = pad(speak(q))
    short = whisper_turn.decode_turn(stt.model, audio, prompt=None, beam_size=5, language=None)
    assert short is not None, "a two-second turn takes the short path"
    text, no_speech, _ = short
    assert wer(q, text) <= 0.15 and no_speech < 0.5
    full = " ".join(s.text for s in stt.model.transcribe(audio, beam_size=5, without_timestamps=True)[0])
    assert wer(full, text) <= 0.15
    assert wer(q, stt.transcribe_turn(audio, beam_size=5)) <= 0.15


def test_a_turn_cut_close_after_its_last_word_keeps_that_word(stt):
    """The listener keeps 150 ms after the last voiced frame; Whisper must still hear the last word whole
    (with log-mel zeros right after the speech it said "what is the capital of friends" now and then)."""
    from voicechat.voice.vad import Segmenter

    cfg = resolve()
    heard = []
    for _ in range(8):  # piper speaks it a little differently each time
        audio = np.concatenate([speak("What is the capital of France?"), np.zeros(8000, np.float32)])
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        seg = Segmenter(cfg.listen, pause_ms=cfg.turn.pause_ms)
        for i in range(0, len(pcm) - len(pcm) % seg.frame_bytes, seg.frame_bytes):
            seg.push(pcm[i : i + seg.frame_bytes])
        heard.append(stt.transcribe_turn(seg.audio(), beam_size=cfg.turn.beam_size, language="en"))
    # before the fix 5 takes in 25 lost it; after it 25 in 25 kept it, and a later run lost it once in 8: allow one
    assert sum("france" in t.lower() for t in heard) >= 7, heard


def test_the_prompt_carries_the_words_said_before(stt):
    text = stt.transcribe_turn(pad(speak("four people tonight.")), prompt="I would like to book a table for", beam_size=5)
    assert wer("four people tonight", text) <= 0.34


def test_a_looping_short_window_is_decoded_again_on_the_full_one(stt, monkeypatch):
    monkeypatch.setattr(whisper_turn, "MIN_WINDOW", 100)  # far too short: the decoder repeats itself
    monkeypatch.setattr(whisper_turn, "MARGIN", 0)
    text, _, _ = whisper_turn.decode_turn(stt.model, pad(speak("Hi.")), prompt=None, beam_size=1, language=None)
    assert not whisper_turn._REPEAT.search(text), text
    assert len(text.split()) <= 3


@pytest.mark.fast
@pytest.mark.parametrize(
    "text,repeats",
    [
        ("Hold on. What is 2 plus 2? Hold on. What is 2 plus 2?", True),  # the whole turn twice (the echo rig)
        ("Remind me to water the plants tomorrow morning. Remind me to water the plants tomorrow morning.", True),
        ("Stop. Stop.", True),
        ("Hi, how are you today? Hi, how are you today? Hi", True),  # (a phrase three times)
        ("Stop. What is the capital of Italy?", False),
        ("No, no, I said ten.", False),
        ("What is it? What is it made of?", False),
        ("Play some quiet music in the living room.", False),
    ],
)
def test_a_decoder_that_starts_over_is_told_from_words_said_once(text, repeats):
    """The short window's decoder may say the whole turn again; then the full window decodes it (once)."""
    assert whisper_turn.looped(text) is repeats


def test_a_sentence_the_short_window_stops_reading_at_its_pause_is_read_whole(stt, monkeypatch):
    """A voice-panel sentence (held-out voice) with a 0.9 s pause after "to": on the cut window the decoder stopped
    at the pause, "I need to go to", and the turn's second half was never read; the full window reads it."""
    voice_panel = bench_module("voice_panel")
    entry = next(e for e in voice_panel.plan(22) if e["file"] == "espeak_en-gb-x-gbcwmd_f3_s130_p65__clean__pause-to0.wav")
    audio, at = voice_panel.Builder(22).render(entry)
    turn = audio[int(16000 * (at["speech_start_s"] - 0.3)) : int(16000 * (at["speech_end_s"] + 0.15))]  # as the listener cuts it
    assert at["pause_end_s"] - at["pause_start_s"] >= 0.8

    limit = whisper_turn.UNREAD_S

    def read(unread_s: float) -> whisper_turn.TurnDecode:
        monkeypatch.setattr(whisper_turn, "UNREAD_S", unread_s)
        found = whisper_turn.decode_turn_in(stt.model, turn, prompt=None, beam_size=5, languages=["en"], last_word=True)
        assert found is not None
        return found

    whole = read(limit)
    assert wer("I need to go to the airport at five tomorrow", whole.text) <= 0.25, whole.text
    assert whole.last_word_lead_s is not None and whole.last_word_lead_s < whisper_turn.UNREAD_S
    cut = read(1e9)  # (the design before: the cut window's answer whatever it left unread)
    assert "airport" not in cut.text.lower() and cut.last_word_lead_s is not None and cut.last_word_lead_s > 2.0, cut

    # the same turn held on a push-to-talk key (one decode of the whole utterance) is read whole too
    from voicechat.voice.transcriber import Transcriber

    monkeypatch.setattr(whisper_turn, "UNREAD_S", limit)
    ptt = Transcriber(stt, resolve().turn, "en", incremental=False).transcribe_turn(turn)
    assert "airport" in ptt.text.lower(), ptt


def test_long_audio_and_unknown_languages_take_the_file_path(stt):
    long = np.zeros(16000 * 28, np.float32)
    assert whisper_turn.decode_turn(stt.model, long, prompt=None, beam_size=1, language=None) is None


def test_silence_and_noise_give_no_words(stt):
    rng = np.random.default_rng(0)
    assert stt.transcribe_turn(np.zeros(16000, np.float32)) == ""
    assert stt.transcribe_turn((rng.standard_normal(32000) * 0.01).astype(np.float32)) == ""


def test_a_long_prompt_does_not_cut_the_new_words(stt):
    said = (
        "We spent the whole morning walking along the old harbour, looking at the fishing boats and the gulls, "
        "and then we stopped for coffee in a small cafe near the lighthouse"
    )
    q = "and we walked along the beach until the sun went down."
    text = stt.transcribe_turn(pad(speak(q)), prompt=said, beam_size=5)
    assert wer(q, text) <= 0.2, text


@pytest.fixture(scope="module")
def llm():
    from voicechat.engines import registry

    engine = registry.create("llm", resolve(overrides={"llm.temperature": 0.0, "llm.max_tokens": 8}))
    yield engine
    engine.close()


def test_the_bundled_chat_model_tells_a_cut_phrase_from_a_finished_question(llm):
    from voicechat.engines.base import Message, TextDelta

    system = Message("system", resolve().llm.system_prompt)

    def read(text: str) -> float:
        return llm.end_of_turn_probability([system, Message("user", text)])

    cut = [read(t) for t in ("I would like to book a table.", "Could you remind me to", "Tell me about the history of the")]
    done = [read(t) for t in ("What is the capital of France?", "How many legs does a spider have?")]
    assert max(cut) < 0.02 < 0.04 < min(done), (cut, done)
    # the reading leaves the prompt in the cache, and the reply still comes out whole
    assert any(isinstance(e, TextDelta) for e in llm.stream([system, Message("user", "What is the capital of France?")]))


def test_a_busy_model_gives_no_reading(llm):
    from voicechat.engines.base import Message

    stream = llm.stream([Message("user", "Count to twenty.")])
    next(stream)  # the model is answering
    try:
        assert llm.end_of_turn_probability([Message("user", "What is the capital of France?")]) is None
    finally:
        stream.close()
    assert llm.end_of_turn_probability([Message("user", "What is the capital of France?")]) is not None
