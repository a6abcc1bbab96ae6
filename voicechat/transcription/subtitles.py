"""Subtitle cues people can read: sentence ends respected, lines wrapped, words highlighted.

The options match the whisper command line's: ``max_line_width`` (characters per
line), ``max_line_count`` (lines per cue), ``max_words_per_line`` and
``highlight_words`` (each word underlined while it is spoken). A cue never runs
past a sentence end where the model wrote one, nor across a pause longer than
``PAUSE_SECONDS``. Segments with word times are cut at word boundaries; without
them, times are shared out by characters.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from voicechat.engines.base import Segment, Word

PAUSE_SECONDS = 3.0
_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*$")
_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "etc.", "e.g.", "i.e.", "no.", "mt."}
_TEXT_SPLIT = re.compile(r"(?<=[.!?\u2026])[\"'\u201d\u2019)\]]*\s+")


@dataclass(frozen=True)
class SubtitleOptions:
    max_line_width: int | None = None
    max_line_count: int | None = None
    max_words_per_line: int | None = None
    highlight_words: bool = False

    @property
    def needs_words(self) -> bool:
        return bool(self.max_line_width or self.max_words_per_line or self.highlight_words)


@dataclass
class Cue:
    start: float
    end: float
    lines: list[list[Word]] = field(default_factory=list)  # words per line, when known
    text_lines: list[str] = field(default_factory=list)  # used when there are no words

    def text(self, highlight: int | None = None, escape: Callable[[str], str] = str) -> str:
        """The cue's lines; ``escape`` makes the words inert for the file format (our own <u> tags stay)."""
        if not self.lines:
            return "\n".join(escape(line) for line in self.text_lines)
        out, k = [], 0
        for line in self.lines:
            parts = []
            for w in line:
                word = escape(w.text.strip())
                parts.append(f"<u>{word}</u>" if k == highlight else word)
                k += 1
            out.append(" ".join(parts))
        return "\n".join(out)

    @property
    def words(self) -> list[Word]:
        return [w for line in self.lines for w in line]


def ends_sentence(word: str) -> bool:
    w = word.strip()
    if not _END.search(w) or w.lower() in _ABBREVIATIONS:
        return False
    return not re.fullmatch(r"[A-Z]\.", w)  # an initial, as in "J. Smith"


def split_sentences(segments: Iterable[Segment]) -> list[Segment]:
    """Cut segments after each sentence end inside them (never inside a word)."""
    out: list[Segment] = []
    for seg in segments:
        if seg.words:
            group: list[Word] = []
            for i, w in enumerate(seg.words):
                group.append(w)
                if (ends_sentence(w.text) and i < len(seg.words) - 1) or i == len(seg.words) - 1:
                    out.append(_from_words(seg, group))
                    group = []
        else:
            out.extend(_split_text(seg))
    return out


def _from_words(seg: Segment, words: list[Word]) -> Segment:
    text = "".join(w.text for w in words).strip()
    return Segment(words[0].start, words[-1].end, text, tuple(words), seg.no_speech_prob, seg.avg_logprob)


def _split_text(seg: Segment) -> list[Segment]:
    pieces = [p.strip() for p in _TEXT_SPLIT.split(seg.text.strip()) if p.strip()]
    if len(pieces) <= 1:
        return [seg]
    total = sum(len(p) for p in pieces)
    out, t = [], seg.start
    for p in pieces:
        end = t + (seg.end - seg.start) * len(p) / total
        out.append(Segment(t, end, p, (), seg.no_speech_prob, seg.avg_logprob))
        t = end
    return out


def cues(segments: Sequence[Segment], opts: SubtitleOptions) -> list[Cue]:
    """The cues of a subtitle file for these segments."""
    out: list[Cue] = []
    for seg in split_sentences(segments):
        if seg.words:
            out.extend(_word_cues(seg.words, opts))
        else:
            out.extend(_text_cues(seg, opts))
    return out


def _word_cues(words: Sequence[Word], opts: SubtitleOptions) -> list[Cue]:
    out: list[Cue] = []
    lines: list[list[Word]] = [[]]
    width = 0

    def flush() -> None:
        nonlocal lines, width
        filled = [line for line in lines if line]
        if filled:
            out.append(Cue(filled[0][0].start, filled[-1][-1].end, filled))
        lines, width = [[]], 0

    for w in words:
        word = w.text.strip()
        line = lines[-1]
        if line and w.start - line[-1].end > PAUSE_SECONDS:
            flush()
            line = lines[-1]
        if line:
            too_wide = opts.max_line_width is not None and width + 1 + len(word) > opts.max_line_width
            too_many = opts.max_words_per_line is not None and len(line) >= opts.max_words_per_line
            if too_wide or too_many:
                if opts.max_line_count is not None and len(lines) >= opts.max_line_count:
                    flush()
                else:
                    lines.append([])
                    width = 0
                line = lines[-1]
        width += len(word) + (1 if line else 0)
        line.append(w)
    flush()
    return out


def _text_cues(seg: Segment, opts: SubtitleOptions) -> list[Cue]:
    text = seg.text.strip()
    if opts.max_line_width:
        lines = textwrap.wrap(text, opts.max_line_width, break_long_words=False) or [text]
    elif opts.max_words_per_line:
        words = text.split()
        n = opts.max_words_per_line
        lines = [" ".join(words[i : i + n]) for i in range(0, len(words), n)] or [text]
    else:
        lines = [text]
    per = opts.max_line_count or len(lines)
    groups = [lines[i : i + per] for i in range(0, len(lines), per)]
    total = sum(len(" ".join(g)) for g in groups) or 1
    out, t = [], seg.start
    for g in groups:
        end = t + (seg.end - seg.start) * len(" ".join(g)) / total
        out.append(Cue(t, end, text_lines=g))
        t = end
    return out


def timed_texts(segments: Sequence[Segment], opts: SubtitleOptions, escape: Callable[[str], str] = str) -> list[tuple[float, float, str]]:
    """(start, end, text) for every cue; with highlight_words, one per word (and per gap between words).

    ``escape`` is applied to the spoken text (not to the <u> tags added here); a cue never holds an
    empty line, which would end it early and let the rest be read as cues of its own."""
    from voicechat.escaping import cue_lines

    out: list[tuple[float, float, str]] = []

    def add(start: float, end: float, text: str) -> None:
        out.append((start, end, cue_lines(text)))

    for cue in cues(segments, opts):
        words = cue.words
        if not (opts.highlight_words and words):
            add(cue.start, cue.end, cue.text(escape=escape))
            continue
        last = cue.start
        for k, w in enumerate(words):
            if w.start > last:
                add(last, w.start, cue.text(escape=escape))
            add(w.start, max(w.end, w.start), cue.text(highlight=k, escape=escape))
            last = max(w.end, w.start)
        if cue.end > last:
            add(last, cue.end, cue.text(escape=escape))
    return out
