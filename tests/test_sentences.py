"""The sentence chunker that feeds text-to-speech."""

from __future__ import annotations

import pytest

from voicechat.sentences import Chunker, chunks, clean

pytestmark = pytest.mark.fast


def test_abbreviations_numbers_quotes_stay_whole():
    text = 'Dr. Smith paid $3.50 at 5 p.m. on Jan. 3rd. "Is that all?" she asked. It was 1.5 km away!'
    assert list(chunks(text, first_chunk_words=0)) == [
        "Dr. Smith paid $3.50 at 5 p.m. on Jan. 3rd.",
        '"Is that all?" she asked.',
        "It was 1.5 km away!",
    ]


def test_first_chunk_is_short_at_a_clause():
    text = "Well, thinking about it carefully, the answer is forty two. That is final."
    out = list(chunks(text, first_chunk_words=6))
    assert out[0] == "Well, thinking about it carefully,"
    assert " ".join(out) == text


def test_streaming_deltas_give_the_same_chunks_as_whole_text():
    text = "Sure. The capital of France is Paris, a city of about two million people. It sits on the Seine! Anything else?"
    whole = list(chunks(text))
    for size in (1, 3, 7, 20):
        assert list(chunks(iter(text[i : i + size] for i in range(0, len(text), size)))) == whole


def test_chunk_released_before_text_ends():
    c = Chunker(first_chunk_words=0)
    assert list(c.feed("The first sentence is complete. The sec")) == ["The first sentence is complete."]
    assert list(c.feed("ond one")) == []
    assert list(c.flush()) == ["The second one"]


def test_run_on_text_is_bounded():
    c = Chunker(first_chunk_words=0, max_chars=100)
    out = list(c.feed("word " * 1000))
    assert all(len(x) <= 100 for x in out) and len(c.buffer) <= 100


def test_clean_drops_control_chars_and_markup():
    assert clean("a\x00b\x07c **bold** `code` # head").split() == ["a", "b", "c", "bold", "code", "head"]
    assert list(chunks("😀 🎉 !!!")) == []
