"""Real small file systems for the tests: a tmpfs that fills up, a home that is read-only.

Mounting needs root (CI runs as root); where it is refused the test is skipped, saying why.
Each mount is undone in a ``finally``, lazily if something still holds it open.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(done.stderr.strip() or f"mount {' '.join(args)} failed")


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at path (made if missing), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    except OSError as e:
        pytest.skip(f"cannot mount a tmpfs here ({e}); this test needs root and mount rights")
    try:
        yield path
    finally:
        _umount(path)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write a file in directory until its disk is full: not one more byte fits."""
    filler = directory / name
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    return filler


def read_only(path: Path) -> None:
    """Turn the tmpfs mounted at path read-only (for real: the kernel refuses every write, even root's)."""
    _mount("-o", "remount,ro", str(path))


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
