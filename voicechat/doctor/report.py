"""The doctor's lines, its verdict and its two renderings (one line per check, or JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from voicechat.errors import scrub

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)


@dataclass(frozen=True)
class Line:
    """One check: what was found (``detail``) and, unless it is ok, what to do (``advice``, one line).

    ``needed`` marks what `voicechat talk` cannot do without: a failure there makes doctor exit 1."""

    group: str
    name: str
    status: str
    detail: str
    advice: str = ""
    needed: bool = False
    data: dict[str, Any] | None = None  # figures for --json (sizes, rates, devices)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    def text(self) -> str:
        """``fail  sound   microphone: none found → connect one ...``: one line, secrets removed."""
        body = f"{self.name}: {self.detail}" if self.detail else self.name
        if self.advice and self.status != OK:
            body += f" → {self.advice}"
        return scrub(f"{self.status:<4}  {self.group:<8} {_one_line(body)}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "group": self.group,
            "name": self.name,
            "status": self.status,
            "detail": scrub(_one_line(self.detail)),
            "advice": scrub(_one_line(self.advice)),
            "needed_by_talk": self.needed,
        }
        if self.data:
            out["data"] = json.loads(scrub(json.dumps(self.data, default=str)))
        return out


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def exit_code(lines: Sequence[Line]) -> int:
    """1 when something `talk` needs failed; 0 otherwise (warnings and skipped checks included)."""
    return 1 if any(line.status == FAIL and line.needed for line in lines) else 0


def counts(lines: Sequence[Line]) -> dict[str, int]:
    return {s: sum(1 for line in lines if line.status == s) for s in STATUSES}


def verdict(lines: Sequence[Line]) -> str:
    """The last line: whether talk can run, and how many things want attention."""
    c = counts(lines)
    blocking = [line for line in lines if line.status == FAIL and line.needed]
    tally = f"{c[OK]} ok, {c[WARN]} warning{'s' if c[WARN] != 1 else ''}, {c[FAIL]} failed"
    if blocking:
        names = ", ".join(f"{line.group} {line.name}" for line in blocking)
        return f"not ready for talk ({names} failed): {tally}"
    if c[FAIL] or c[WARN]:
        return f"talk can run; some things want attention: {tally}"
    return f"talk can run: {tally}"


def render_text(lines: Sequence[Line]) -> str:
    return "\n".join([line.text() for line in lines] + [verdict(lines)])


def render_json(lines: Sequence[Line]) -> str:
    return json.dumps(
        {
            "checks": [line.to_dict() for line in lines],
            "counts": counts(lines),
            "talk_ready": exit_code(lines) == 0,
            "exit_code": exit_code(lines),
            "verdict": scrub(verdict(lines)),
        },
        ensure_ascii=False,
    )
