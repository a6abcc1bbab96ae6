"""When a turn's language is decided among the declared ones, and which passes pay for a language step."""

from __future__ import annotations

import numpy as np
import pytest

from voicechat.stt_languages import TurnText

RATE = 16000


class SureSTT:
    """An engine whose passes identify from a script of (language, confidence), recording how it was asked."""

    incremental = True
    declared = ["en", "de"]

    def __init__(self, script: list[tuple[str, float]]) -> None:
        self.script, self.calls = list(script), []

    def transcribe_turn_in(self, audio, *, languages, prompt=None, beam_size=1, silero_filter=False, last_word=False) -> TurnText:
        if len(languages) == 1:  # a given language: decoded in it
            return TurnText(self.transcribe_turn(audio, language=languages[0]), languages[0], 1.0)
        self.calls.append(("identify", len(audio) / RATE))
        language, confidence = self.script.pop(0)
        return TurnText("words", language, confidence)

    def transcribe_turn(self, audio, *, prompt=None, beam_size=1, silero_filter=False, language=None) -> str:
        self.calls.append(("decode", len(audio) / RATE, language))
        return "words"


def _transcriber(stt):
    from voicechat.config import TurnConfig
    from voicechat.voice.transcriber import Transcriber, UtteranceText

    return Transcriber(stt, TurnConfig(), None, incremental=True), UtteranceText()  # type: ignore[arg-type]


def _speech(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


@pytest.mark.fast
def test_a_sure_pick_on_enough_speech_decides_and_later_passes_skip_the_language_step():
    stt = SureSTT([("de", 0.999), ("de", 0.995)])
    t, utt = _transcriber(stt)
    t._decode(utt, _speech(1.0), commit=True)  # sure, but on too little speech: a guess
    assert utt.language is None and utt.guess == "de"
    t._decode(utt, _speech(1.5), commit=True)  # sure on 1.5 s: decided
    assert utt.language == "de"
    t._decode(utt, _speech(2.0), commit=True)  # a pause after that decodes in it
    text, _ = t.final(utt, _speech(3.0))
    assert text == "words" and utt.language == "de"
    assert stt.calls == [("identify", 1.0), ("identify", 1.5), ("decode", 2.0, "de"), ("decode", 3.0, "de")]
    assert t.language_steps == 2


@pytest.mark.fast
def test_an_unsure_turn_picks_again_at_each_pause_and_at_the_end_but_not_in_partials_on_enough_speech():
    stt = SureSTT([("en", 0.4), ("de", 0.7), ("en", 0.8), ("de", 0.9)])
    t, utt = _transcriber(stt)
    t._decode(utt, _speech(0.5), commit=False)  # a partial on little speech picks (its guess is all there is)
    t._decode(utt, _speech(1.6), commit=False)  # and again: the last guess was made on under 1.5 s
    t._decode(utt, _speech(2.2), commit=False)  # a partial on a guess made on 1.6 s: decoded in it
    assert stt.calls[-1] == ("decode", 2.2, "de") and utt.language is None
    t._decode(utt, _speech(2.5), commit=True)  # a pause: the turn may end here, so it picks again
    assert utt.guess == "en" and utt.language is None
    text, _ = t.final(utt, _speech(3.0))  # the whole turn decides
    assert utt.language == "de"
    assert [c[0] for c in stt.calls] == ["identify", "identify", "decode", "identify", "identify"]
    assert t.language_steps == 4


@pytest.mark.fast
def test_a_given_language_never_pays_for_a_language_step():
    from voicechat.config import TurnConfig
    from voicechat.voice.transcriber import Transcriber, UtteranceText

    stt = SureSTT([])
    t = Transcriber(stt, TurnConfig(), None, incremental=True, languages=["fr"])  # type: ignore[arg-type]
    utt = UtteranceText()
    t._decode(utt, _speech(2.0), commit=True)
    t.final(utt, _speech(3.0))
    assert stt.calls == [("decode", 2.0, "fr"), ("decode", 3.0, "fr")] and t.language_steps == 0


@pytest.mark.fast
def test_partials_on_little_speech_decode_in_the_last_turns_language_without_a_step():
    from voicechat.voice.transcriber import UtteranceText

    stt = SureSTT([("de", 0.999), ("fr", 0.6)])
    t, first = _transcriber(stt)
    t.final(first, _speech(2.0))  # the first turn: decided German
    assert first.language == "de" and t.last_language == "de"
    nxt = UtteranceText()
    t._decode(nxt, _speech(1.0), commit=False)  # too little to pick on: the turn before's language, no step
    assert stt.calls[-1] == ("decode", 1.0, "de") and nxt.guess is None
    t.final(nxt, _speech(2.0))  # the whole turn still decides
    assert nxt.language == "fr" and t.last_language == "fr" and t.language_steps == 2
