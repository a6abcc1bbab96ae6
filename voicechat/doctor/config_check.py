"""The config: which files are read, and any problem in them (the config loader's own error, as is)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from voicechat.doctor.report import FAIL, OK, WARN, Line

# a key with a value (not null or empty), or a database URL with a password in it
SECRET = re.compile(r"""(?m)^\s*api_key:\s*(?!null\b|~|''|""|$|#)\S|postgres(?:ql)?://[^:/@\s]+:[^@\s]+@""")

if TYPE_CHECKING:
    from voicechat.config import Config


def load(config_file: str | None) -> tuple[Config, list[Line]]:
    """The effective config and its lines. A config with a problem gives a failed line and the defaults,
    so the other checks still run (and say so)."""
    from voicechat import paths
    from voicechat.config import Config, resolve
    from voicechat.errors import VoicechatError

    named = config_file or os.environ.get("VOICECHAT_CONFIG") or None
    files = [p for p in (paths.user_config_file(), Path(named).expanduser() if named else None) if p is not None and p.is_file()]
    try:
        cfg = resolve(named)
    except VoicechatError as e:
        line = Line(
            "config", "file", FAIL, str(e), "fix it, then run `voicechat config show`; the checks below use the defaults", needed=True
        )
        return Config(), [line]
    shown = ", ".join(str(p) for p in files) or "none (defaults and VOICECHAT_* variables)"
    lines = [Line("config", "file", OK, f"read {shown}", data={"files": [str(p) for p in files]})]
    for path in files:
        loose = _readable_by_others(path)
        if loose and _has_secret(path):
            lines.append(
                Line("config", "secrets", WARN, f"{path} holds an API key or password and others can read it", f"chmod 600 {path}")
            )
    return cfg, lines


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _has_secret(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[: 1 << 20]
    except OSError:
        return False
    return bool(SECRET.search(text))
