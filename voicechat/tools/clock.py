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
    {"type": "object", "properties": {"timezone": {"type": "string", "maxLength": 64,
                                                   "description": "IANA name such as Europe/Paris; leave out for local time"}},
     "additionalProperties": False},
)


def run(args: dict[str, Any]) -> str:
    zone = (args.get("timezone") or "").strip()
    if zone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if not ZONE.match(zone):
            raise ToolError(f"'{zone[:40]}' is not a time zone name; use an IANA name such as Europe/Paris")
        try:
            now = datetime.now(ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(f"unknown time zone '{zone}'; use an IANA name such as Europe/Paris") from None
    else:
        now = datetime.now().astimezone()
    offset = now.strftime("%z")
    return f"{now.strftime('%A %d %B %Y, %H:%M')} ({zone or now.tzname()}, UTC{offset[:3]}:{offset[3:]})"


def tool() -> Tool:
    return Tool(SPEC, run)
