"""Plan output files before any work starts: one distinct name per input, a usable directory;
and write to standard output with a failure said as one line (a full disk behind `> file`).

`transcribe a/speech.wav b/speech.wav -o out` must not write the second transcript over
the first. Inputs whose names collide get a numbered suffix (speech, speech-2, ...),
in the order given, and the user is told which is which.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from voicechat.atomic import check_writable_dir

__all__ = ["check_writable_dir", "emit", "plan_stems", "stdout_failed"]


def emit(text: str) -> None:
    """Write text to stdout and flush it; an OS error (`> file` on a full disk, /dev/full) is one line
    naming standard output, and what could not be written is dropped (not retried, noisily, at exit)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as e:
        raise stdout_failed(e) from None


def stdout_failed(e: OSError) -> BaseException:
    """What to raise when stdout cannot be written: a reader that went away (`| head`) ends quietly;
    anything else is one line naming standard output. Its unwritten rest is dropped."""
    from voicechat.errors import file_error

    _drop_stdout()
    if isinstance(e, BrokenPipeError):
        return SystemExit(1)
    return file_error("standard output", e)


def _drop_stdout() -> None:
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def plan_stems(files: list[str], *, stdin_name: str = "stdin") -> tuple[list[str], list[str]]:
    """A distinct output stem for each input (compared without case, for case-insensitive
    file systems), and notes naming the inputs that had to be renamed."""
    wanted = [stdin_name if name == "-" else (Path(name).stem or "output") for name in files]
    taken = {w.casefold() for w in wanted}
    seen: set[str] = set()
    stems, notes = [], []
    for name, stem in zip(files, wanted, strict=True):
        if stem.casefold() not in seen:
            seen.add(stem.casefold())
            stems.append(stem)
            continue
        n = 2
        while f"{stem}-{n}".casefold() in taken or f"{stem}-{n}".casefold() in seen:
            n += 1
        new = f"{stem}-{n}"
        seen.add(new.casefold())
        stems.append(new)
        notes.append(f"{name}: another input is also named '{stem}'; its output is named '{new}'")
    return stems, notes
