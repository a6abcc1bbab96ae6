"""Write files atomically: a temporary file beside the target, then a rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from voicechat.errors import VoicechatError, disk_full, file_error


def check_writable_dir(directory: Path) -> None:
    """Fail now, naming the directory, if files cannot be created in it.

    The permission bits are not enough (root passes them; /proc, a read-only mount or a
    full disk do not take files): a probe file is created and removed.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise VoicechatError(f"{directory}: not a directory; choose another output directory")
    if not directory.exists():
        raise VoicechatError(f"{directory}: directory does not exist; create it or choose another")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise VoicechatError(f"{directory}: directory is not writable; choose another or fix its permissions")
    try:
        fd, probe = tempfile.mkstemp(prefix=".voicechat-probe-", dir=directory)
    except OSError as e:
        if disk_full(e):
            raise file_error(directory, e, "create files in") from None
        raise VoicechatError(f"{directory}: cannot create files in this directory ({e.strerror}); choose another") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_output_file(target: Path) -> None:
    """Fail now if target cannot become a file: a directory in the way, or an unusable directory."""
    target = Path(target)
    if target.is_dir():
        raise VoicechatError(f"{target}: is a directory; give a file name to write")
    if target.exists() and not target.is_file():
        # a rename would replace the device, pipe or socket itself (as root, even /dev/full)
        raise VoicechatError(f"{target}: not a regular file (a device, pipe or socket); give a file name to write")
    check_writable_dir(target.parent if str(target.parent) else Path("."))


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto target on success.

    Any OS error while the file is made (a full disk, a quota, an I/O error, a file system
    turned read-only) removes the temporary file, leaves target as it was, and is raised as
    one line that names target."""
    target = Path(target)
    check_output_file(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part" + target.suffix, dir=target.parent)
    except OSError as e:
        raise file_error(target, e) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise file_error(target, e) from None
        raise


def write_text_atomic(target: Path, text: str) -> None:
    """Write text to target, whole or not at all: flushed to the disk before the rename, so a full
    disk is found while the old file is still in place."""
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
