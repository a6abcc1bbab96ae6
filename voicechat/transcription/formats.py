"""Transcript output formats: txt, srt, vtt, json, tsv (subtitle cues: voicechat.transcription.subtitles).

The spoken text is made inert for each format (voicechat.escaping): no tags or forged cues in
subtitles, no formulas in the TSV a spreadsheet opens. txt and json hold it exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from voicechat import escaping
from voicechat.engines.base import Segment
from voicechat.transcription.subtitles import SubtitleOptions, split_sentences, timed_texts

FORMATS = ("txt", "srt", "vtt", "json", "tsv")


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_txt(segments: Sequence[Segment], **_: object) -> str:
    return "".join(s.text.strip() + "\n" for s in segments)


def to_srt(segments: Sequence[Segment], *, subtitles: SubtitleOptions | None = None, **_: object) -> str:
    blocks = []
    for i, (start, end, text) in enumerate(timed_texts(segments, subtitles or SubtitleOptions(), escaping.srt_text), 1):
        blocks.append(f"{i}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment], *, subtitles: SubtitleOptions | None = None, **_: object) -> str:
    lines = ["WEBVTT", ""]
    for start, end, text in timed_texts(segments, subtitles or SubtitleOptions(), escaping.vtt_text):
        lines += [f"{_clock(start, '.')} --> {_clock(end, '.')}", text, ""]
    return "\n".join(lines)


def to_tsv(segments: Sequence[Segment], **_: object) -> str:
    """One row per sentence (segments are cut at sentence ends, as in subtitles)."""
    rows = ["start\tend\ttext"]
    for s in split_sentences(segments):
        text = s.text.strip().replace("\t", " ").replace("\n", " ")
        rows.append(f"{int(round(s.start * 1000))}\t{int(round(s.end * 1000))}\t{escaping.spreadsheet_cell(text)}")
    return "\n".join(rows) + "\n"


def to_json(
    segments: Sequence[Segment], *, source: str = "", language: str | None = None, duration: float = 0.0, model: str = "", **_: object
) -> str:
    doc = {
        "file": source,
        "language": language,
        "duration": round(duration, 3),
        "model": model,
        "text": " ".join(s.text.strip() for s in segments).strip(),
        "segments": [s.to_dict() for s in segments],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


WRITERS: dict[str, Callable[..., str]] = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "json": to_json, "tsv": to_tsv}


def parse_formats(value: str) -> list[str]:
    from voicechat.errors import VoicechatError

    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not names:
        raise VoicechatError("--format is empty; use txt, srt, vtt, json, tsv or all")
    out: list[str] = []
    for n in names:
        if n == "all":
            out.extend(f for f in FORMATS if f not in out)
        elif n in FORMATS:
            if n not in out:
                out.append(n)
        else:
            raise VoicechatError(f"unknown format '{n}'; use txt, srt, vtt, json, tsv or all")
    return out
