"""The current date and time, in the computer's time zone or a named one."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from voicechat.engines.base import ToolSpec
from voicechat.tools.base import Tool, ToolError

ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")

SPEC = ToolSpec(
    "datetime",
    "The current date, weekday and time, here or in a named time zone.",
    {
        "type": "object",
        "properties": {
            "timezone": {"type": "string", "maxLength": 64, "description": "IANA name such as Europe/Paris; leave out for local time"}
        },
        "additionalProperties": False,
    },
)


HOW = "name a zone as Area/City, such as Europe/Paris, America/New_York or Asia/Tokyo, or UTC"


def _unknown(zone: str) -> str:
    """What to say for a name that is no zone; for a region (America), a few of its zones. Never a path."""
    from zoneinfo import available_timezones

    try:
        inside = sorted(z for z in available_timezones() if z.lower().startswith(zone.lower() + "/"))
    except OSError:
        inside = []
    if inside:
        return f"'{zone}' is a region, not a time zone; name a zone in it, such as {', '.join(inside[:4])}"
    return f"unknown time zone '{zone}'; {HOW}"


def run(args: dict[str, Any]) -> str:
    zone = (args.get("timezone") or "").strip()
    if zone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if not ZONE.match(zone):
            raise ToolError(f"'{zone[:40]}' is not a time zone name; {HOW}")
        try:
            now = datetime.now(ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of zones (America), an unreadable file
            raise ToolError(_unknown(zone)) from None
    else:
        now = datetime.now().astimezone()
    offset = now.strftime("%z")
    return f"{now.strftime('%A %d %B %Y, %H:%M')} ({zone or now.tzname()}, UTC{offset[:3]}:{offset[3:]})"


def tool() -> Tool:
    return Tool(SPEC, run, worker=f"{__name__}:run")
