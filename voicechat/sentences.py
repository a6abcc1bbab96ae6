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

_CLAUSE = re.compile(r"[,;:\u2014\u2013\u3001\uff0c](?=\s)|[\u3001\uff0c]|\s[-\u2013\u2014]\s")
_END = re.compile(r"[.!?\u2026]['\")\]\u00bb\u201c\u201d]*\s|[\u3002\uff01\uff1f]|\n")  # (CJK ends need no space)
_segmenters: dict[str, object] = {}


# Languages pysbd has no rules for, read by a close one's (abbreviations such as "Sr." and "Dr." alike).
_CLOSE = {"pt": "es", "ca": "es", "gl": "es", "uk": "ru", "be": "ru", "cs": "sk", "sv": "da", "no": "da", "nb": "da"}


def _split(text: str, language: str = "en") -> list[str]:
    seg = _segmenters.get(language)
    if seg is None:
        import pysbd

        try:
            seg = pysbd.Segmenter(language=language, clean=False, char_span=False)
        except ValueError:  # a language pysbd has no rules for
            seg = _segmenters.get("en") or pysbd.Segmenter(language="en", clean=False, char_span=False)
        _segmenters[language] = seg
    return [s for s in seg.segment(text) if s.strip()]  # type: ignore[attr-defined]


def splitter_language(language: str | None) -> str:
    """The sentence rules used for a language: its own where pysbd has them (de, fr, es, it, nl, ...), a close
    language's (pt: es), else English's."""
    from voicechat.languages import base

    b = base(language) or "en"
    return _CLOSE.get(b, b)


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
    def __init__(self, first_chunk_words: int = 6, max_chars: int = 400, language: str | None = None) -> None:
        """``language``: the text's (ISO 639-1; None: English): its sentence rules, and the words a short first
        chunk must not end on ("the", "für", "pour")."""
        from voicechat.languages import trailing_words

        self.first_words = max(0, first_chunk_words)
        self.max_chars = max_chars
        self.language = splitter_language(language)
        self.trailing = trailing_words(language or "en") or frozenset()
        self.buffer = ""
        self.emitted = 0

    def feed(self, delta: str) -> Iterator[str]:
        self.buffer += delta
        if self.emitted == 0 and self.first_words:
            first = self._first_clause()
            if first:
                yield from self._emit(first)
        if _END.search(self.buffer):
            sentences = _split(self.buffer, self.language)
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
            for s in _split(rest, self.language) or [rest]:
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
            n = self.first_words + 1
            while n < 2 * self.first_words and self._ends_open(parts[:n]):  # not "I booked a table for" + "two"
                n += 1
            head = " ".join(parts[:n])
            self.buffer = self.buffer[len(head) :]
            return head
        return None

    def _ends_open(self, parts: list[str]) -> bool:
        from voicechat.languages import words

        last = words(parts[-1]) if parts else []
        return bool(last) and last[-1] in self.trailing

    def _emit(self, text: str) -> Iterator[str]:
        text = text.strip()
        if text and re.search(r"\w", text):
            self.emitted += 1
            yield text


def chunks(text: str | Iterable[str], first_chunk_words: int = 6, language: str | None = None) -> Iterator[str]:
    """Speakable chunks of a whole text, or of an iterable of text deltas (in ``language``; None: English)."""
    c = Chunker(first_chunk_words, language=language)
    for delta in [text] if isinstance(text, str) else text:
        yield from c.feed(clean(delta))
    yield from c.flush()
