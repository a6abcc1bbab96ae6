"""`voicechat models pull`: download a catalogue model from the Hugging Face Hub, whole or not at all.

1. The Hub's metadata for the repo at one commit (``GET {endpoint}/api/models/{repo}/revision/{rev}``
   with blobs): which files, their sizes and checksums (sha256 for LFS files, the git object id for
   the others).
2. Room on the disk for what is still to come, checked before the first byte.
3. Each file into ``.staging/`` as ``FILE.part`` through huggingface_hub's ``http_get`` (which resumes
   with a Range request when the connection drops); a ``.part`` left by an interrupted run is
   resumed the same way. The commit is pinned, so the pieces belong to one version.
4. Each file checked against its checksum; a mismatch deletes it and installs nothing.
5. The staged folder renamed into the models folder (store.install).

Environment: HF_ENDPOINT (another Hub or a mirror), HF_TOKEN (sent, never shown), HF_HUB_OFFLINE
(refuses at once, saying to use ``models import``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from voicechat.catalogue.entries import Entry
from voicechat.catalogue.store import MANIFEST, Installed, Store, git_blob_sha1, human, sha256_file
from voicechat.errors import VoicechatError, disk_full, file_error, register_secret

DEFAULT_ENDPOINT = "https://huggingface.co"
MARGIN = 16 << 20  # room kept free beyond the model's own bytes
REQUIRED = {"stt": ("model.bin", "config.json"), "llm": (".gguf",), "tts": (".onnx", ".onnx.json")}


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def _token() -> str | None:
    token = os.environ.get("HF_TOKEN") or None
    if token is None:
        with contextlib.suppress(Exception):
            from huggingface_hub import get_token

            token = get_token()
    register_secret(token)  # never in an error message
    return token


def _hub_error(entry: Entry, e: Exception) -> VoicechatError:
    from huggingface_hub import errors as hf

    where = endpoint()
    if isinstance(e, hf.RevisionNotFoundError):
        return VoicechatError(f"{entry.name}: revision '{entry.revision}' of {entry.repo} not found on {where}; check the name")
    if isinstance(e, (hf.RepositoryNotFoundError, hf.GatedRepoError)):
        return VoicechatError(
            f"{entry.name}: {entry.repo} not found on {where}, or it needs a token (set HF_TOKEN) or accepting its licence on the Hub"
        )
    if isinstance(e, hf.EntryNotFoundError):
        return VoicechatError(f"{entry.name}: a file is missing from {entry.repo} on {where}; the catalogue may be out of date")
    if isinstance(e, hf.OfflineModeIsEnabled):
        return offline_error(entry.name)
    if isinstance(e, hf.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", "?")
        return VoicechatError(
            f"{entry.name}: the Hub at {where} answered HTTP {status}; run the same command again later (it resumes where it stopped)"
        )
    return VoicechatError(
        f"{entry.name}: cannot reach the Hub at {where} ({type(e).__name__}); check the network or HF_ENDPOINT, then run the same "
        "command again (it resumes), or bring the model with `voicechat models import`"
    )


def offline_error(name: str) -> VoicechatError:
    return VoicechatError(
        f"cannot download {name}: HF_HUB_OFFLINE is set; unset it, or export the model on a machine with network "
        f"(`voicechat models export {name} -o FILE`) and `voicechat models import FILE` here"
    )


def plan(entry: Entry, info: Any) -> list[dict[str, Any]]:
    """The repo files the entry needs: [{file, size, sha256 | blob}], checked for the ones the engine requires."""
    chosen: list[dict[str, Any]] = []
    for sibling in info.siblings or []:
        name = sibling.rfilename
        if not _repo_path(name):
            raise VoicechatError(
                f"{entry.name}: the Hub at {endpoint()} lists a file named '{str(name)[:80]}', which no repository holds; "
                "check HF_ENDPOINT (nothing was downloaded)"
            )
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in entry.files):
            item: dict[str, Any] = {"file": name, "size": sibling.size}
            if sibling.lfs is not None:
                item["sha256"] = sibling.lfs.sha256
                item["size"] = sibling.lfs.size
            elif sibling.blob_id:
                item["blob"] = sibling.blob_id
            chosen.append(item)
    names = [posixpath.basename(c["file"]) for c in chosen]
    for need in REQUIRED[entry.kind]:
        if not any(n == need or (need.startswith(".") and n.endswith(need)) for n in names):
            raise VoicechatError(
                f"{entry.name}: {entry.repo} has no {need} file where voicechat expects one; it is not a model this engine loads"
            )
    if len(set(names)) != len(names):
        raise VoicechatError(f"{entry.name}: two files of {entry.repo} share a name; name one file with hf:{entry.repo}:FILE")
    if entry.kind == "llm" and sum(n.endswith(".gguf") for n in names) > 1:
        shown = ", ".join(n for n in names if n.endswith(".gguf"))[:200]
        raise VoicechatError(f"{entry.name}: {entry.repo} holds several GGUF files ({shown}); name one with hf:{entry.repo}:FILE")
    for item in chosen:
        size = item["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise VoicechatError(f"{entry.name}: the Hub gave no usable size for {item['file']}; cannot check the download")
    return chosen


def _repo_path(name: object) -> bool:
    """A file name a repository can hold: relative, no empty, '.' or '..' part, not our manifest's name."""
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name or len(name) > 1000:
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts) and parts[-1] != MANIFEST


class _Overrun(Exception):
    """The server sent more bytes than the Hub's metadata gives for the file."""


class _Capped:
    """The .part file as http_get writes it, refusing to grow past the file's size (an endless or lying body)."""

    def __init__(self, f: Any, size: int) -> None:
        self.f, self.size = f, size

    def write(self, data: bytes) -> int:
        if self.f.tell() + len(data) > self.size:
            raise _Overrun
        return int(self.f.write(data))

    def __getattr__(self, name: str) -> Any:  # seek, tell, truncate, flush
        return getattr(self.f, name)


def verify(path: Path, item: dict[str, Any]) -> bool:
    if item.get("sha256"):
        return sha256_file(path) == item["sha256"]
    if item.get("blob"):
        return git_blob_sha1(path) == item["blob"]
    return True


def pull(entry: Entry, store: Store, *, force: bool = False, progress: Callable[[str, int, int], Any] | None = None) -> Installed:
    """Download entry into the store (see the module docstring); the installed model."""
    if entry.bundled:
        raise VoicechatError(f"{entry.name} is bundled with voicechat (package {entry.bundled}); nothing to pull")
    if not entry.repo:
        raise VoicechatError(f"{entry.name} comes with {entry.engine_name}, not from the Hub; nothing to pull")
    have = store.get(entry.name, entry.kind)
    if have is not None and not force:
        return have
    if offline():
        raise offline_error(entry.name)
    from huggingface_hub import HfApi

    token = _token()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its retry warnings are not for users; errors are ours
    try:
        info = HfApi(endpoint=endpoint(), token=token or False).model_info(entry.repo, revision=entry.revision, files_metadata=True)
    except VoicechatError:
        raise
    except Exception as e:
        raise _hub_error(entry, e) from None
    files = plan(entry, info)
    staged = store.staging(entry.kind, entry.name)
    with only_one(entry.name, staged):
        _check_room(entry, files, staged)
        for item in files:
            _fetch(entry, info.sha or entry.revision, item, staged, token, progress)
        return _install(entry, store, info, files, staged)


def _install(entry: Entry, store: Store, info: Any, files: list[dict[str, Any]], staged: Path) -> Installed:
    manifest = {
        "source": "pull",
        "repo": entry.repo,
        "revision": info.sha or entry.revision,
        "endpoint": endpoint(),
        "files": {
            posixpath.basename(i["file"]): {
                "size": i["size"],
                "sha256": i.get("sha256") or sha256_file(staged / posixpath.basename(i["file"])),
            }
            for i in files
        },
    }
    for leftover in staged.iterdir():
        if leftover.name not in manifest["files"] and leftover.is_file():
            leftover.unlink()
    return store.install(staged, entry.kind, entry.name, manifest)


@contextlib.contextmanager
def only_one(name: str, staged: Path) -> Iterator[None]:
    """One pull or import of a model at a time: a second pull would append to the same partial files, an import
    delete them."""
    import hashlib

    import filelock

    locks = staged.parent / ".locks"
    locks.mkdir(exist_ok=True)
    lock = filelock.FileLock(str(locks / hashlib.sha1(staged.name.encode()).hexdigest()[:16]), timeout=0)
    try:
        with lock:
            yield
    except filelock.Timeout:
        raise VoicechatError(f"{name}: another `voicechat models pull` or `import` of it is running now; wait for it to finish") from None


def _check_room(entry: Entry, files: list[dict[str, Any]], staged: Path) -> None:
    from voicechat.catalogue.store import free_bytes

    need = 0
    for item in files:
        base = posixpath.basename(item["file"])
        if (staged / base).is_file():
            continue
        part = staged / (base + ".part")
        need += item["size"] - (part.stat().st_size if part.is_file() else 0)
    free = free_bytes(staged)
    if need + MARGIN > free:
        with contextlib.suppress(OSError):
            staged.rmdir()  # only when empty: a partial download stays to be resumed
        raise VoicechatError(
            f"{entry.name} needs {human(need)} more on the disk holding {staged.parent.parent} and only {human(free)} is free; "
            "free some space, or set models.dir to a folder on a larger disk"
        )


def _fetch(
    entry: Entry, revision: str, item: dict[str, Any], staged: Path, token: str | None, progress: Callable[[str, int, int], Any] | None
) -> None:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    base = posixpath.basename(item["file"])
    done = staged / base
    if done.is_file() and done.stat().st_size == item["size"] and verify(done, item):
        return
    part = staged / (base + ".part")
    size = item["size"]
    if part.is_file() and part.stat().st_size > size:
        part.unlink()
    url = hf_hub_url(entry.repo, item["file"], revision=revision, endpoint=endpoint())
    headers = build_hf_headers(token=token or False, library_name="voicechat")
    try:
        with open(part, "ab") as f:
            start = f.tell()
            with _bar(progress, base, size, start) as bar:
                http_get(
                    url,
                    cast(BinaryIO, _Capped(f, size)),
                    resume_size=start,
                    headers=headers,
                    expected_size=size,
                    displayed_filename=base,
                    tqdm_class=bar,
                )
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if disk_full(e) or getattr(e, "errno", None) is not None:
            raise file_error(part, e) from None
        raise VoicechatError(
            f"{entry.name}: the download of {base} stopped ({_short(e)}); run the same command again to resume it"
        ) from None
    except _Overrun:
        part.unlink()
        raise VoicechatError(
            f"{entry.name}: the server sent more of {base} than the Hub's {human(size)}; it was deleted and nothing was installed; "
            "check HF_ENDPOINT, then run the command again"
        ) from None
    except VoicechatError:
        raise
    except Exception as e:
        raise _hub_error(entry, e) from None
    if not verify(part, item):
        part.unlink()
        with contextlib.suppress(OSError):
            os.rmdir(staged)
        raise VoicechatError(
            f"{entry.name}: {base} does not match the Hub's checksum (corrupted in transit or changed on the server); "
            "it was deleted and nothing was installed; run the command again"
        )
    os.replace(part, done)


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:120]


@contextlib.contextmanager
def _bar(progress: Callable[[str, int, int], Any] | None, name: str, total: int, start: int) -> Iterator[Any]:
    """A tqdm stand-in class for http_get that reports bytes to ``progress(name, done, total)``."""

    class Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.n = start

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, n: float = 1) -> None:
            self.n += int(n)
            if progress is not None:
                progress(name, self.n, total)

        def close(self) -> None:
            return None

    yield Bar
