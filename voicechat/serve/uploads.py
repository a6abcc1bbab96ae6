"""Where uploads wait for the decoder: a private directory per server process, swept at the next start.

The decoder reads files by path, so an upload has to be a named file while it is transcribed. A server
killed with SIGKILL cannot delete it; instead each process keeps its uploads in a directory of its own
inside ``<tmp>/voicechat-uploads-<uid>`` and holds a lock on it while it lives. Every server sweeps, at
start, the directories whose lock nobody holds any more (their process is gone, however it died).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: an open lock file cannot be deleted, which says the same thing
    fcntl = None  # type: ignore[assignment]  # (typeshed has no optional module: the name is None here)

LOCK = ".lock"
NEW = ".new-"  # a directory being made (not yet locked); one left by a crash is empty but for its lock
STALE_NEW_S = 3600.0


def base_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"voicechat-uploads-{uid}"


class Uploads:
    """``new()`` -> (fd, path) of a fresh upload file in this process's directory; ``close()`` removes it all."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base or base_dir()
        self.base.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(self.base)
        if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            # someone else's directory (or a symlink) at our name: keep to a private one of our own
            self.base = Path(tempfile.mkdtemp(prefix="voicechat-uploads-"))
        self.swept = sweep(self.base)
        # locked before it gets a name the sweep looks at: a server starting beside us never sees it unlocked
        making = Path(tempfile.mkdtemp(prefix=NEW, dir=self.base))
        self._lock: IO[bytes] | None = open(making / LOCK, "wb")
        if fcntl is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.dir = self.base / f"{os.getpid()}-{making.name[len(NEW) :]}"
        os.rename(making, self.dir)

    def new(self) -> tuple[int, str]:
        return tempfile.mkstemp(prefix="upload-", dir=self.dir)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        shutil.rmtree(self.dir, ignore_errors=True)


def sweep(base: Path) -> int:
    """Remove the upload directories of processes that are gone; how many were removed."""
    removed = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name.startswith(NEW):
            try:
                if time.time() - entry.stat(follow_symlinks=False).st_mtime < STALE_NEW_S:
                    continue
            except OSError:
                continue
        elif _alive(Path(entry.path)):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
    return removed


def _alive(directory: Path) -> bool:
    """True while the process that made the directory holds its lock."""
    lock = directory / LOCK
    if fcntl is None:
        try:
            os.remove(lock)  # fails while its owner has it open
        except FileNotFoundError:
            pass
        except OSError:
            return True
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False  # killed between making the directory and locking it
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
