"""voicechat's model folder: what is installed, where, and how a model gets in or out whole.

Layout: ``<models dir>/<kind>/<safe name>/`` holds a model's files side by side and
``voicechat-model.json`` (its name, source and each file's size and sha256). A model folder appears
only by a rename once every file is there and verified (``install``), so a folder with a manifest
is complete; anything else (``.staging/``, ``.trash/``) is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicechat.errors import VoicechatError, file_error

MANIFEST = "voicechat-model.json"


def models_dir(configured: str | None = None) -> Path:
    """models.dir, or ``models/`` in voicechat's data dir."""
    from voicechat import paths

    return Path(configured).expanduser() if configured else paths.data_dir() / "models"


def safe_name(name: str) -> str:
    """A folder name for a model name (hf:owner/repo:file has characters a folder name should not)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-.") or "model"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file (what the Hub gives for files not stored with LFS)."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main_file(kind: str, folder: Path, files: list[str]) -> Path:
    """What an engine is given: the folder (Whisper), the .onnx (Piper) or the .gguf (llama.cpp)."""
    if kind == "stt":
        return folder
    suffix = ".gguf" if kind == "llm" else ".onnx"
    for name in files:
        if name.endswith(suffix):
            return folder / name
    raise VoicechatError(f"{folder}: no {suffix} file in this model folder; remove it with `voicechat models rm` and pull it again")


@dataclass
class Installed:
    name: str
    kind: str
    folder: Path
    manifest: dict[str, Any]

    @property
    def path(self) -> Path:
        return main_file(self.kind, self.folder, list(self.manifest.get("files", {})))

    @property
    def size(self) -> int:
        return sum(int(f.get("size", 0)) for f in self.manifest.get("files", {}).values())


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder(self, kind: str, name: str) -> Path:
        return self.root / kind / safe_name(name)

    def get(self, name: str, kind: str | None = None) -> Installed | None:
        """The installed model called name; only whole ones (a manifest, every file at its size)."""
        for k in (kind,) if kind else ("stt", "llm", "tts"):
            folder = self.folder(k, name)
            found = self._read(folder)
            if found is not None and found.name == name:
                return found
        return None

    def all(self, kind: str | None = None) -> list[Installed]:
        found = []
        for k in (kind,) if kind else ("stt", "llm", "tts"):
            try:
                children = sorted((self.root / k).iterdir())
            except OSError:
                continue
            for folder in children:
                item = self._read(folder)
                if item is not None:
                    found.append(item)
        return found

    def _read(self, folder: Path) -> Installed | None:
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            return None
        for rel, meta in manifest["files"].items():
            try:
                if (folder / rel).stat().st_size != int(meta.get("size", -1)):
                    return None
            except (OSError, ValueError, AttributeError):
                return None
        return Installed(str(manifest.get("name")), str(manifest.get("kind")), folder, manifest)

    def staging(self, kind: str, name: str) -> Path:
        """The folder a model is assembled in before it is installed (kept across runs, so a download resumes)."""
        path = self.root / ".staging" / f"{kind}-{safe_name(name)}"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise file_error(path, e, "create") from None
        return path

    def install(self, staged: Path, kind: str, name: str, manifest: dict[str, Any]) -> Installed:
        """Write the manifest into the staged folder, then rename it into place (replacing an older copy)."""
        manifest = {"name": name, "kind": kind, "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **manifest}
        target = self.folder(kind, name)
        try:
            with open(staged / MANIFEST, "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                self.discard(target)
            os.replace(staged, target)
        except OSError as e:
            with contextlib.suppress(OSError):
                (staged / MANIFEST).unlink()
            raise file_error(target, e, "install the model in") from None
        found = self._read(target)
        if found is None:
            raise VoicechatError(f"{target}: the model did not install whole; run the command again")
        return found

    def discard(self, folder: Path) -> None:
        """Move a folder out of the way at once (a rename), then delete it."""
        trash = self.root / ".trash" / f"{folder.name}-{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def remove(self, name: str) -> Installed:
        found = self.get(name)
        if found is None:
            raise VoicechatError(f"model '{name}' is not installed; see what is with `voicechat models list --installed`")
        try:
            self.discard(found.folder)
        except OSError as e:
            raise file_error(found.folder, e, "remove") from None
        return found


def free_bytes(path: Path) -> int:
    here = Path(path)
    while not here.exists() and here != here.parent:
        here = here.parent
    return shutil.disk_usage(here).free


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}".replace(".0 ", " ")
        size /= 1000
    return f"{size:.1f} GB"
