"""Move models to a machine with no network: `models export NAME... -o FILE` and `models import PATH`.

An export is an uncompressed tar (model weights do not compress): ``voicechat-models.json`` first,
then each model's folder as installed (``<kind>/<folder>/...`` with its manifest). Import takes such
an archive, a model folder (a Whisper CTranslate2 folder, or a folder with one .gguf or one voice),
a Piper ``.onnx`` (its ``.onnx.json`` beside it) or a ``.gguf``. Every file is copied into staging,
checked against the manifest's sha256 where there is one, and the model installed by a rename.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

from voicechat.atomic import atomic_path
from voicechat.catalogue import entries
from voicechat.catalogue.store import MANIFEST, Installed, Store, free_bytes, human, safe_name, sha256_file
from voicechat.errors import VoicechatError, file_error

INDEX = "voicechat-models.json"
FORMAT = 1
MARGIN = 16 << 20  # room kept free beyond an archive's unpacked bytes


def plain_name(name: object) -> bool:
    """A file name a manifest may list: a name alone, never a path (nothing outside the model's folder)."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..", MANIFEST)
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and len(name) <= 255
    )


def _listed(where: Path, folder: Path, meta: dict[str, Any]) -> list[Path]:
    """The files a manifest lists, in its folder; a name that is a path is refused (a hostile manifest)."""
    files = meta.get("files", {})
    if not isinstance(files, dict):
        raise VoicechatError(f"{where}: its model manifest has no file list; export the model again")
    for f in files:
        if not plain_name(f):
            raise VoicechatError(f"{where}: its manifest lists '{str(f)[:80]}', a path outside the model's folder; refusing to import it")
    return [folder / f for f in files]


def export(store: Store, names: list[str], target: Path) -> list[Installed]:
    models = []
    for name in names:
        found = store.get(name)
        if found is None:
            raise VoicechatError(
                f"model '{name}' is not installed; only pulled or imported models can be exported (see `voicechat models list --installed`)"
            )
        models.append(found)
    index = {"format": FORMAT, "models": [{"name": m.name, "kind": m.kind, "folder": f"{m.kind}/{m.folder.name}"} for m in models]}
    with atomic_path(Path(target)) as tmp:
        with tarfile.open(tmp, "w") as tar:
            data = json.dumps(index, indent=1).encode()
            info = tarfile.TarInfo(INDEX)
            info.size = len(data)
            import io

            tar.addfile(info, io.BytesIO(data))
            for m in models:
                for path in sorted(m.folder.iterdir()):
                    tar.add(path, arcname=f"{m.kind}/{m.folder.name}/{path.name}", recursive=False)
    return models


def import_path(store: Store, source: Path, name: str | None = None) -> list[Installed]:
    source = Path(source).expanduser()
    if not source.exists():
        raise VoicechatError(
            f"{source}: no such file or folder; give an archive made by `voicechat models export`, a model folder, a .gguf or a .onnx"
        )
    if source.is_file() and tarfile.is_tarfile(source):
        return _import_archive(store, source)
    if source.is_dir():
        return [_import_folder(store, source, name)]
    if source.suffix == ".gguf":
        return [_import_files(store, "llm", name or _gguf_name(source), [source])]
    if source.suffix == ".onnx":
        config = source.with_name(source.name + ".json")
        if not config.is_file():
            raise VoicechatError(f"{source}: a Piper voice needs its {config.name} beside it; put it there and import again")
        return [_import_files(store, "tts", name or source.stem, [source, config])]
    raise VoicechatError(f"{source}: not a model voicechat can import; give an export archive, a model folder, a .gguf or a Piper .onnx")


def _gguf_name(path: Path) -> str:
    for entry in entries.CHAT:
        if path.name in entry.files:
            return entry.name
    return path.stem.lower()


def _folder_name(path: Path) -> str:
    name = path.name
    for prefix in ("faster-whisper-", "faster-"):
        if name.startswith(prefix) and entries.find(name[len(prefix) :], "stt"):
            return name[len(prefix) :]
    return name


def _import_folder(store: Store, folder: Path, name: str | None) -> Installed:
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
            kind, stored = str(meta["kind"]), str(meta["name"])
        except (OSError, ValueError, KeyError, TypeError):
            raise VoicechatError(f"{manifest}: not a voicechat model manifest; remove it or import the files alone") from None
        return _import_files(store, kind, name or stored, _listed(folder, folder, meta), meta)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    names = {p.name for p in files}
    if {"model.bin", "config.json"} <= names:
        return _import_files(store, "stt", name or _folder_name(folder), files)
    ggufs = [p for p in files if p.suffix == ".gguf"]
    if len(ggufs) == 1:
        return _import_files(store, "llm", name or _gguf_name(ggufs[0]), ggufs)
    onnx = [p for p in files if p.suffix == ".onnx" and (p.name + ".json") in names]
    if len(onnx) == 1:
        return _import_files(store, "tts", name or onnx[0].stem, [onnx[0], onnx[0].with_name(onnx[0].name + ".json")])
    raise VoicechatError(
        f"{folder}: not a model folder (a Whisper CTranslate2 folder has model.bin and config.json; a chat model one .gguf; "
        "a voice one .onnx with its .onnx.json)"
    )


def _import_files(store: Store, kind: str, name: str, files: list[Path], meta: dict[str, Any] | None = None) -> Installed:
    if kind not in entries.KINDS:
        raise VoicechatError(f"model '{name}' has an unknown kind '{kind}'; the archive was not made by this voicechat")
    staged = store.staging(kind, name)
    from voicechat.catalogue.pull import only_one

    with only_one(name, staged):
        return _stage(store, kind, name, files, meta, staged)


def _stage(store: Store, kind: str, name: str, files: list[Path], meta: dict[str, Any] | None, staged: Path) -> Installed:
    expected = (meta or {}).get("files", {})
    for old in staged.iterdir():
        if old.is_file():
            old.unlink()
    recorded: dict[str, dict[str, Any]] = {}
    for path in files:
        if not path.is_file():
            raise VoicechatError(f"{path}: listed in the model's manifest but missing; the copy is incomplete")
        target = staged / path.name
        try:
            shutil.copyfile(path, target)
        except OSError as e:
            shutil.rmtree(staged, ignore_errors=True)
            raise file_error(target, e) from None
        digest = sha256_file(target)
        listed = expected.get(path.name) if isinstance(expected, dict) else None
        want = listed.get("sha256") if isinstance(listed, dict) else None
        if want and want != digest:
            shutil.rmtree(staged, ignore_errors=True)
            raise VoicechatError(f"{path}: does not match the sha256 in its manifest (corrupted copy); nothing was installed")
        recorded[path.name] = {"size": target.stat().st_size, "sha256": digest}
    extra = {k: v for k, v in (meta or {}).items() if k in ("repo", "revision", "endpoint")}
    return store.install(staged, kind, name, {"source": "import", **extra, "files": recorded})


def _import_archive(store: Store, archive: Path) -> list[Installed]:
    work = store.root / ".staging" / f"archive-{safe_name(archive.name)}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                parts = Path(member.name).parts
                plain = member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and not member.issparse()  # no links, devices, sparse
                if not (plain and len(parts) in (1, 3) and ".." not in parts and not Path(member.name).is_absolute()):
                    raise VoicechatError(f"{archive}: holds '{member.name[:80]}', which an export never does; refusing to import it")
            need, free = sum(m.size for m in members), free_bytes(work)
            if need + MARGIN > free:
                raise VoicechatError(
                    f"{archive}: unpacks to {human(need)} and only {human(free)} is free on the disk holding {store.root}; "
                    "free some space, or set models.dir to a folder on a larger disk"
                )
            tar.extractall(work, filter="data")
        index_path = work / INDEX
        if not index_path.is_file():
            raise VoicechatError(f"{archive}: a tar without {INDEX}; import archives made by `voicechat models export`")
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            listed = [(str(m["name"]), str(m["kind"]), str(m["folder"])) for m in index["models"]]
        except (ValueError, KeyError, TypeError):
            raise VoicechatError(f"{archive}: its {INDEX} cannot be read; export it again") from None
        done = []
        for name, kind, folder in listed:
            src = work / folder
            if Path(folder).parts != (kind, Path(folder).name) or not plain_name(Path(folder).name):
                raise VoicechatError(
                    f"{archive}: model '{name[:80]}' is listed in '{folder[:80]}', outside the archive; refusing to import it"
                )
            try:
                meta = json.loads((src / MANIFEST).read_text(encoding="utf-8")) if (src / MANIFEST).is_file() else None
            except ValueError:
                meta = None
            if not isinstance(meta, dict):
                raise VoicechatError(f"{archive}: model '{name[:80]}' has no readable manifest; export it again")
            done.append(_import_files(store, kind, name, _listed(archive, src, meta), meta))
        return done
    except OSError as e:
        raise file_error(work, e, "unpack the archive into") from None
    except tarfile.TarError as e:
        raise VoicechatError(f"{archive}: a broken archive ({e}); copy it again") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
