"""Run the doctor's check groups side by side, each within its own time.

A group is a function returning lines. It runs in a thread of its own; the doctor waits for it until
its deadline, and a group past it is reported as one failed line (its thread is left to the end of the
process: doctor exits right after). Checks that may hang in C (the sound devices) run in a child process
that is killed at its deadline instead (see :mod:`voicechat.doctor.sound`)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from voicechat.doctor.report import FAIL, Line
from voicechat.errors import VoicechatError


@dataclass(frozen=True)
class Group:
    name: str  # the group's name in the report
    run: Callable[[], list[Line]]
    seconds: float  # the most it may take
    needed: bool = False  # a group that did not finish counts as broken for talk


def run_groups(groups: Sequence[Group], clock: Callable[[], float] = time.monotonic) -> list[Line]:
    """Every group's lines in the order given; a group that raised or overran gives one failed line."""
    boxes: list[queue.Queue[list[Line] | BaseException]] = []
    for group in groups:
        box: queue.Queue[list[Line] | BaseException] = queue.Queue(maxsize=1)
        boxes.append(box)
        threading.Thread(target=_run, args=(group, box), name=f"doctor-{group.name}", daemon=True).start()
    started = clock()
    out: list[Line] = []
    for group, box in zip(groups, boxes, strict=True):
        left = max(0.0, started + group.seconds - clock())
        try:
            got = box.get(timeout=left)
        except queue.Empty:
            out.append(
                Line(
                    group.name,
                    "check",
                    FAIL,
                    f"did not finish within {group.seconds:g} s",
                    "run `voicechat --debug doctor`, or the command that uses it, to see where it hangs",
                    needed=group.needed,
                )
            )
            continue
        if isinstance(got, BaseException):
            advice = "" if isinstance(got, VoicechatError) else "run `voicechat --debug doctor` for the traceback"
            out.append(Line(group.name, "check", FAIL, _message(got), advice, needed=group.needed))
        else:
            out.extend(got)
    return out


def _run(group: Group, box: queue.Queue[list[Line] | BaseException]) -> None:
    try:
        box.put(group.run())
    except BaseException as e:  # every failure of a check is a line in the report, never a traceback
        box.put(e)


def _message(e: BaseException) -> str:
    if isinstance(e, VoicechatError):
        return str(e)
    return f"the check failed: {type(e).__name__}: {str(e)[:200]}"
