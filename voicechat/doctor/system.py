"""Python, the operating system, cores, memory and the disk holding voicechat's data."""

from __future__ import annotations

import os
import platform
import shutil
import sys

from voicechat.doctor.report import FAIL, OK, WARN, Line

MIN_PYTHON = (3, 10)
LOW_MEMORY_GB = 2.0  # below this, the bundled models fit but little more
LOW_DISK_GB = 1.0


def memory_gb() -> float | None:
    """Physical memory in GB (Linux and macOS), or None when the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def check() -> list[Line]:
    from voicechat import __version__, paths

    lines: list[Line] = []
    py = sys.version_info
    version = f"{py.major}.{py.minor}.{py.micro}"
    detail = f"voicechat {__version__} on {platform.python_implementation()} {version} ({sys.executable})"
    if (py.major, py.minor) < MIN_PYTHON:
        lines.append(Line("system", "python", FAIL, detail, f"use Python {'.'.join(map(str, MIN_PYTHON))} or newer", needed=True))
    else:
        lines.append(Line("system", "python", OK, detail, data={"python": version, "executable": sys.executable}))
    cores = os.cpu_count() or 1
    mem = memory_gb()
    os_name = f"{platform.system()} {platform.release()} {platform.machine()}"
    detail = f"{os_name}, {cores} core{'s' if cores != 1 else ''}" + (f", {mem:.1f} GB memory" if mem is not None else "")
    data = {"os": platform.system(), "release": platform.release(), "machine": platform.machine(), "cores": cores, "memory_gb": mem}
    if mem is not None and mem < LOW_MEMORY_GB:
        lines.append(Line("system", "machine", WARN, detail, "little memory: keep to the bundled small models", data=data))
    else:
        lines.append(Line("system", "machine", OK, detail, data=data))
    data_dir = paths.data_dir()
    probe = data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free / 1e9
    except OSError as e:
        lines.append(Line("system", "disk", WARN, f"cannot read the free space at {probe} ({e.strerror})", "check the disk"))
        return lines
    detail = f"{free:.1f} GB free for voicechat's data ({data_dir})"
    if free < LOW_DISK_GB:
        lines.append(Line("system", "disk", WARN, detail, "free some space: the history and downloaded models live there"))
    else:
        lines.append(Line("system", "disk", OK, detail, data={"free_gb": round(free, 2), "data_dir": str(data_dir)}))
    return lines
