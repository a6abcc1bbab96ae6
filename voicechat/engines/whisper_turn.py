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

On the cut window the decoder now and then stops at a pause in the middle of a sentence and leaves the rest of
the speech unread ("I need to go to ... the airport at five tomorrow." came out as "I need to go to"): a whole
turn, but the model is asked only its first half. Where the last word it read starts more than ``UNREAD_S``
before the end of the audio (known when the last word is asked for, at a pause), the turn is decoded again on
the full window, which read that sentence whole.

At a pause, Whisper hears speech cut mid-sentence and often completes it with a word it guesses ("a table
for" becomes "a table phone."); the guess is a word it is unsure of. Asked with ``last_word``, a decode also
reads Whisper's probability of the transcript's last word and where it starts (one more decoder pass over the
tokens it chose), so the end-of-turn policy can tell a heard last word from a guessed one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

FULL = 3000  # mel frames in Whisper's 30 s window (10 ms each)
MIN_WINDOW = 800
MARGIN = 500
SILENCE = 50  # frames of real silence after the speech; the rest of the window is zeros
# the last word starts this long before the audio ends: the decoder stopped at a pause in the middle and left the
# rest unread (on the voice panel's paused sentences the last word of a whole transcript started at most 1.0 s
# before the end; the three past 1.2 s were two misheard turns and one whose second half was never read)
UNREAD_S = 1.2
_PUNCTUATION = set(".?!,;:\u2026\u3002\uff1f\uff01")
_REPEAT = re.compile(r"(\b.{2,40}?\b)(?:\W*\1){2,}|(\b[^.?!]{1,40}[.?!])\s*\2", re.IGNORECASE)
# the whole text said again, however long (a window too short for the speech can make the decoder start over:
# "Hold on. What is 2 plus 2? Hold on. What is 2 plus 2?" came out of a turn on the echo rig)
_SAID_TWICE = re.compile(r"^\W*(\w.*?[.?!])(?:\s*\1)+\W*$", re.IGNORECASE | re.DOTALL)


def looped(text: str) -> bool:
    """The decoder repeated itself: a phrase three times, a short sentence twice in a row, or the whole text."""
    return bool(_REPEAT.search(text) or _SAID_TWICE.match(text))


@dataclass(frozen=True)
class TurnDecode:
    text: str
    no_speech_prob: float
    avg_logprob: float
    language: str | None = None  # the language it was decoded in
    language_prob: float = 0.0  # identified: its probability among the candidates; given: 1
    last_word_prob: float | None = None  # (asked for) Whisper's probability of its last word (its least sure token)
    last_word_lead_s: float | None = None  # (asked for) from where that word starts to the end of the audio


def decode_turn(
    model: WhisperModel, audio: np.ndarray, *, prompt: str | None, beam_size: int, language: str | None
) -> tuple[str, float, float] | None:
    """(text, no_speech_prob, avg_logprob) of a short turn, or None when this path does not apply
    (audio longer than one window, or a multilingual model with no language set)."""
    if model.model.is_multilingual and not language:
        return None
    found = decode_turn_in(model, audio, prompt=prompt, beam_size=beam_size, languages=[language or "en"])
    return None if found is None else (found.text, found.no_speech_prob, found.avg_logprob)


def decode_turn_in(
    model: WhisperModel,
    audio: np.ndarray,
    *,
    prompt: str | None,
    beam_size: int,
    languages: Sequence[str],
    last_word: bool = False,
) -> TurnDecode | None:
    """A short turn decoded in one of ``languages``: the only one given, else the most probable among them
    (among all the model's when empty) by Whisper's language identification on the same encoder output the
    decoding then uses, so identifying costs one decoder step. ``last_word``: also how sure Whisper is of the
    last word and where it starts (one more decoder pass). None when the audio is longer than a window."""
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    multilingual = model.model.is_multilingual
    hop = model.feature_extractor.hop_length
    frames = len(audio) // hop
    if frames > FULL - MARGIN:
        return None
    features = model.feature_extractor(audio, padding=SILENCE * hop + hop)[:, : frames + SILENCE]
    language: str | None = languages[0] if len(languages) == 1 or not multilingual else None
    language_prob = 1.0
    result = None
    unread: TurnDecode | None = None  # a decode on the cut window that stopped short of the speech
    for window in (min(FULL, max(MIN_WINDOW, frames + MARGIN)), FULL):
        encoded = model.model.encode(ctranslate2.StorageView.from_array(_window(features, window)), to_cpu=False)
        if language is None:
            language, language_prob = identify(model, encoded, languages)
        tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe", language=language if multilingual else "en")
        previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
        prompt_tokens = model.get_prompt(tokenizer, previous, without_timestamps=True)
        max_new = min(200, 24 + frames // 8)  # speech runs to ~6 tokens a second; leave room
        max_length = min(448, len(prompt_tokens) + max_new)  # CTranslate2 counts the prompt in the limit
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
        repeats = len(tokens) >= max_length - len(prompt_tokens) - 1 or looped(text)
        if not repeats or window == FULL:
            score = float(result.scores[0]) if result.scores else 0.0
            word_prob, lead = None, None
            if last_word:
                word_prob, start = last_word_of(model, encoded, tokenizer, prompt_tokens, tokens, min(window, frames + SILENCE))
                lead = None if start is None or looped(text) else len(audio) / model.feature_extractor.sampling_rate - start
            found = TurnDecode(
                text, float(result.no_speech_prob), score, language if multilingual else "en", language_prob, word_prob, lead
            )
            if window < FULL and lead is not None and lead > UNREAD_S:
                unread = found  # it stopped at a pause: the full window reads on ("... to" + "the airport at five")
                continue
            if unread is not None and (lead is None or unread.last_word_lead_s is None or lead >= unread.last_word_lead_s):
                return unread  # (the full window read no further)
            return found
    return None  # unreachable: the full window always returns


def last_word_of(
    model: WhisperModel, encoded: Any, tokenizer: Any, prompt_tokens: list[int], tokens: list[int], frames: int
) -> tuple[float | None, float | None]:
    """The least probability among the tokens of the last word of ``tokens`` (its final punctuation left out), and
    where that word starts (seconds into the audio), by one forced decoder pass over them (Whisper's alignment
    heads); (None, None) when there is no word."""
    words = [k for k, t in enumerate(tokens) if tokenizer.decode([t]).strip(" ") and not set(tokenizer.decode([t]).strip()) <= _PUNCTUATION]
    if not words:
        return None, None
    last = words[-1]
    first = last
    while first > 0 and not tokenizer.decode([tokens[first]]).startswith(" ") and first - 1 in words:
        first -= 1  # (a word is its tokens back to the one that starts with a space)
    start = prompt_tokens[: prompt_tokens.index(tokenizer.sot)] + list(tokenizer.sot_sequence) if tokenizer.sot in prompt_tokens else []
    result = model.model.align(encoded, start or list(tokenizer.sot_sequence), [tokens], frames)[0]
    probs = list(result.text_token_probs)
    prob = float(min(probs[first : last + 1])) if len(probs) > last else None
    text_at = np.array([pair[0] for pair in result.alignments])
    time_at = np.array([pair[1] for pair in result.alignments])
    starts = time_at[np.pad(np.diff(text_at), (1, 0), constant_values=1).astype(bool)] / 50  # (encoder frames: 20 ms)
    return prob, (float(starts[first]) if len(starts) > first else None)


def _window(features: np.ndarray, window: int) -> np.ndarray:
    x = np.zeros((1, features.shape[0], window), dtype=np.float32)
    n = min(window, features.shape[-1])
    x[0, :, :n] = features[:, :n]
    return x


def encode(model: WhisperModel, audio: np.ndarray) -> Any:
    """The encoder output of a short turn on the cut window decode_turn_in uses first (for the bench)."""
    import ctranslate2

    hop = model.feature_extractor.hop_length
    frames = min(len(audio) // hop, FULL - MARGIN)
    features = model.feature_extractor(audio, padding=SILENCE * hop + hop)[:, : frames + SILENCE]
    window = _window(features, min(FULL, max(MIN_WINDOW, frames + MARGIN)))
    return model.model.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)


def probabilities(model: WhisperModel, encoded: Any) -> dict[str, float]:
    """Whisper's probability of each language it knows, from an encoder output (one decoder step)."""
    return {token[2:-2]: float(p) for token, p in model.model.detect_language(encoded)[0]}


def identify(model: WhisperModel, encoded: Any, languages: Sequence[str]) -> tuple[str, float]:
    """The most probable of ``languages`` (of all when empty), and its probability among them."""
    from voicechat.stt_languages import pick

    return pick(probabilities(model, encoded), languages)
