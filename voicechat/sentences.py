"""Cut streaming text into speakable chunks: whole sentences, with a short first chunk.

A rule-based splitter (pysbd) finds sentence ends, so "Dr. Smith paid $3.50 at
5 p.m." stays one sentence and quotes stay with their sentence. Text arrives in
deltas (from a language model, or stdin in blocks); a chunk is released as soon
as a later sentence has begun, so the speaker never waits for the whole text.
The first chunk is cut at the first clause break after a few words, so the
first sound comes early. Memory stays bounded: a run-on text with no sentence
end is cut at a word boundary after ``max_chars``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_CLAUSE = re.compile(r"[,;:\u2014\u2013](?=\s)|\s[-\u2013\u2014]\s")
_segmenter = None


def _split(text: str) -> list[str]:
    global _segmenter
    if _segmenter is None:
        import pysbd

        _segmenter = pysbd.Segmenter(language="en", clean=False, char_span=False)
    return [s for s in _segmenter.segment(text) if s.strip()]


def warm_up() -> None:
    """Load the splitter's rules ahead of the first reply."""
    _split("Warm up. Done.")


def clean(text: str) -> str:
    """Drop control characters and markup-ish noise that a voice should not read out."""
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", text)
    text = re.sub(r"```.*?```", " ", text, flags=re.S)  # code blocks are not speech
    text = re.sub(r"[*_#`>|]+", " ", text)  # markdown emphasis, headings, tables
    return re.sub(r"[ \t]+", " ", text)


class Chunker:
    def __init__(self, first_chunk_words: int = 6, max_chars: int = 400) -> None:
        self.first_words = max(0, first_chunk_words)
        self.max_chars = max_chars
        self.buffer = ""
        self.emitted = 0

    def feed(self, delta: str) -> Iterator[str]:
        self.buffer += delta
        if self.emitted == 0 and self.first_words:
            first = self._first_clause()
            if first:
                yield from self._emit(first)
        if re.search(r"[.!?\u2026]['\")\]]*\s|\n", self.buffer):
            sentences = _split(self.buffer)
            if len(sentences) > 1:
                done = "".join(sentences[:-1])
                consumed = self._consumed(done)
                for s in sentences[:-1]:
                    yield from self._emit(s)
                self.buffer = self.buffer[consumed:]
        while len(self.buffer) > self.max_chars:
            cut = self.buffer.rfind(" ", 0, self.max_chars)
            cut = cut if cut > 0 else self.max_chars
            head, self.buffer = self.buffer[:cut], self.buffer[cut:]
            yield from self._emit(head)

    def flush(self) -> Iterator[str]:
        rest, self.buffer = self.buffer, ""
        if rest.strip():
            for s in _split(rest) or [rest]:
                yield from self._emit(s)

    def _consumed(self, done: str) -> int:
        """Length of the buffer prefix that the given sentences cover (pysbd keeps spacing)."""
        i = j = 0
        while i < len(done) and j < len(self.buffer):
            if done[i] == self.buffer[j]:
                i += 1
            j += 1
        return j

    def _first_clause(self) -> str | None:
        words = self.buffer.split()
        if len(words) < 3:
            return None
        m = _CLAUSE.search(self.buffer)
        while m:
            head = self.buffer[: m.end()]
            if len(head.split()) >= 3 and not re.search(r"[.!?]\s", head):
                self.buffer = self.buffer[m.end() :]
                return head
            m = _CLAUSE.search(self.buffer, m.end())
        if len(words) > 2 * self.first_words and not re.search(r"[.!?]\s", self.buffer):
            parts = self.buffer.split(" ")
            head = " ".join(parts[: self.first_words + 1])
            self.buffer = self.buffer[len(head) :]
            return head
        return None

    def _emit(self, text: str) -> Iterator[str]:
        text = text.strip()
        if text and re.search(r"\w", text):
            self.emitted += 1
            yield text


def chunks(text: str | Iterable[str], first_chunk_words: int = 6) -> Iterator[str]:
    """Speakable chunks of a whole text, or of an iterable of text deltas."""
    c = Chunker(first_chunk_words)
    for delta in [text] if isinstance(text, str) else text:
        yield from c.feed(clean(delta))
    yield from c.flush()
