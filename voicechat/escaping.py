"""Text made inert for the files voicechat writes: spreadsheet cells, Markdown, subtitles.

A conversation or a transcript is text from anyone (the user, a model, a remote engine). Written
into a CSV, a Markdown file or a subtitle file as it is, some of it becomes live in the program
that opens the file: a formula in a spreadsheet, HTML or a ``javascript:`` link in a Markdown
renderer, a tag or a forged cue in a subtitle player. Each function here keeps the text readable
as written and takes away only what would run.
"""

from __future__ import annotations

import re

# What a spreadsheet reads as the start of a formula (OWASP's list, and the full-width and small
# forms some spreadsheets also accept), after any leading whitespace.
_FORMULA = re.compile(r"^\s*[=+\-@\t\r\n\uff1d\uff0b\uff0d\uff20\ufe62\ufe63\ufe66]")


def spreadsheet_cell(value: object) -> object:
    """A CSV/TSV cell that no spreadsheet runs as a formula: text that starts like one gets a
    leading single quote (OWASP's advice); numbers and other values pass as they are."""
    if isinstance(value, str) and _FORMULA.match(value):
        return "'" + value
    return value


_MD_PUNCT = re.compile(r"([\\`*_\[\]|~])")
_MD_LINE_START = re.compile(r"^(\s*)(#|\+|-|=|\d+(?=[.)]))", re.MULTILINE)


def markdown_text(text: str) -> str:
    """Text that any Markdown renderer shows as written: no HTML, no links or images, no emphasis.

    HTML's three characters become entities (which every renderer shows as the characters);
    Markdown's punctuation is backslash-escaped, as is what would start a heading or a list.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_PUNCT.sub(r"\\\1", text)
    return _MD_LINE_START.sub(lambda m: m.group(1) + (m.group(2) + "\\" if m.group(2)[0].isdigit() else "\\" + m.group(2)), text)


def markdown_code(text: str) -> str:
    """An inline code span holding text (on one line) that no backtick inside can end early."""
    text = " ".join(text.split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    if not longest:
        return f"`{text}`"
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"  # the spaces keep a backtick at either end apart from the fence


def vtt_text(text: str) -> str:
    """Cue text for WebVTT: ``&``, ``<`` and ``>`` as the spec's entities (so no tag and no ``-->``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def srt_text(text: str) -> str:
    """Cue text for SubRip, which has no escapes: a tag-like ``<`` (players honour ``<font>``, ``<b>``...)
    and an arrow (a forged timing line) are written with look-alike characters."""
    text = re.sub(r"<(?=[A-Za-z/!?])", "\u2039", text)  # ‹ single angle quotation mark
    text = re.sub(r"\{(?=\\)", "\uff5b", text)  # { before \ is an ASS override tag in many players
    return text.replace("-->", "\u2192")


def cue_lines(text: str) -> str:
    """Cue text with no empty line (an empty line ends a cue, and what follows would be read as new cues)."""
    return "\n".join(line for line in text.replace("\r", "\n").split("\n") if line.strip())


def terminal_text(value: object) -> str:
    """Text for the terminal with its control characters shown, not obeyed (an escape sequence in a
    turn could retitle the window, hide lines or forge a link). Give it to rich as a ``Text``, so that
    a ``[bold]`` or ``[/]`` in it is shown, not taken as markup."""
    import unicodedata

    return "".join(ch if ch in "\n\t" or unicodedata.category(ch) != "Cc" else f"\\x{ord(ch):02x}" for ch in str(value))
