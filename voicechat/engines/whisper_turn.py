"""Decode one short live turn with faster-whisper's model on an encoder window cut to the audio.

faster-whisper pads every input to Whisper's 30 s window, so the encoder costs the same for a
two-second question as for thirty seconds of speech, and on a CPU the encoder is most of the
cost of a short turn. CTranslate2's Whisper encoder accepts a shorter window; the decoder then
attends only to that. With the window at least ``MIN_WINDOW`` frames and ``MARGIN`` frames past
the speech, transcripts of short turns matched the full window on our test utterances, at a
fraction of the time. Zeros in the log-mel features are not silence: with nothing but zeros right
after the speech, Whisper now and then dropped a turn's last word ("what is the capital of friends",
"what is the capital"), so half a second of real silence follows the speech; a whole window of real
silence made the decoder repeat itself after a prompt. Shorter windows can make the decoder loop on
very short audio ("Hi. Hi. Hi."): a repetition, or a transcript that runs to the token limit, is
decoded again on the full window.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

FULL = 3000  # mel frames in Whisper's 30 s window (10 ms each)
MIN_WINDOW = 800
MARGIN = 500
SILENCE = 50  # frames of real silence after the speech; the rest of the window is zeros
_REPEAT = re.compile(r"(\b.{2,40}?\b)(?:\W*\1){2,}|(\b[^.?!]{1,40}[.?!])\s*\2", re.IGNORECASE)


def decode_turn(
    model: WhisperModel, audio: np.ndarray, *, prompt: str | None, beam_size: int, language: str | None
) -> tuple[str, float, float] | None:
    """(text, no_speech_prob, avg_logprob) of a short turn, or None when this path does not apply
    (audio longer than one window, or a multilingual model with no language set)."""
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    multilingual = model.model.is_multilingual
    if multilingual and not language:
        return None
    hop = model.feature_extractor.hop_length
    frames = len(audio) // hop
    if frames > FULL - MARGIN:
        return None
    features = model.feature_extractor(audio, padding=SILENCE * hop + hop)[:, : frames + SILENCE]
    tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe", language=language or "en")
    previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
    prompt_tokens = model.get_prompt(tokenizer, previous, without_timestamps=True)
    max_new = min(200, 24 + frames // 8)  # speech runs to ~6 tokens a second; leave room
    max_length = min(448, len(prompt_tokens) + max_new)  # CTranslate2 counts the prompt in the limit
    for window in (min(FULL, max(MIN_WINDOW, frames + MARGIN)), FULL):
        x = np.zeros((1, features.shape[0], window), dtype=np.float32)
        n = min(window, features.shape[-1])
        x[0, :, :n] = features[:, :n]
        encoded = model.model.encode(ctranslate2.StorageView.from_array(x), to_cpu=False)
        result = model.model.generate(
            encoded,
            [prompt_tokens],
            beam_size=beam_size,
            max_length=max_length,
            suppress_blank=True,
            suppress_tokens=[-1],
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        looped = len(tokens) >= max_length - len(prompt_tokens) - 1 or bool(_REPEAT.search(text))
        if not looped or window == FULL:
            return text, float(result.no_speech_prob), float(result.scores[0]) if result.scores else 0.0
    return None  # unreachable: the full window always returns
