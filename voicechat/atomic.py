"""Write files atomically: a temporary file beside the target, then a rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from voicechat.errors import VoicechatError


def check_writable_dir(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise VoicechatError(f"{directory}: not a directory; choose another output directory")
    if not directory.exists():
        raise VoicechatError(f"{directory}: directory does not exist; create it or choose another")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise VoicechatError(f"{directory}: directory is not writable; choose another or fix its permissions")


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto target on success."""
    target = Path(target)
    check_writable_dir(target.parent if str(target.parent) else Path("."))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part" + target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
