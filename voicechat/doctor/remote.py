"""Remote engines: each OpenAI-compatible server the config uses answers ``GET /models``, and accepts
the key. The key is sent, never shown."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from voicechat.doctor.report import FAIL, OK, SKIP, WARN, Line

if TYPE_CHECKING:
    from voicechat.config import Config

TIMEOUT_S = 5.0
OPENAI_URL = "https://api.openai.com/v1"


def servers(cfg: Config) -> dict[tuple[str, str | None], list[tuple[str, str | None]]]:
    """(base URL, key) -> the (kind, model) pairs that use it, for each kind whose engine is openai."""
    out: dict[tuple[str, str | None], list[tuple[str, str | None]]] = {}
    for kind in ("stt", "llm", "tts"):
        section = getattr(cfg, kind)
        if section.engine != "openai":
            continue
        base = (section.base_url or cfg.openai.base_url or OPENAI_URL).rstrip("/")
        key = section.api_key or cfg.openai.api_key
        out.setdefault((base, key), []).append((kind, section.model))
    return out


def check(cfg: Config) -> list[Line]:
    found = servers(cfg)
    if not found:
        return [Line("remote", "servers", SKIP, "no engine uses a server (stt, llm and tts engines are local)")]
    return [probe(base, key, users) for (base, key), users in found.items()]


def probe(base: str, key: str | None, users: list[tuple[str, str | None]], timeout: float = TIMEOUT_S) -> Line:
    from voicechat.errors import register_secret

    register_secret(key)
    kinds = "+".join(kind for kind, _ in users)
    name = f"{kinds} server"
    if not key and "api.openai.com" in base:
        return Line("remote", name, FAIL, f"{base}: no API key", "set OPENAI_API_KEY (or openai.api_key)", needed=True)
    request = urllib.request.Request(f"{base}/models", headers={"Accept": "application/json"})
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(1 << 20)
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            what = "refused the API key" if key else "wants an API key"
            return Line(
                "remote",
                name,
                FAIL,
                f"{base} {what} ({e.code})",
                f"check the key ({kinds}.api_key, openai.api_key or OPENAI_API_KEY)",
                needed=True,
            )
        if e.code == 404:
            return Line("remote", name, WARN, f"{base} answers, but has no /models (404)", "check that the base URL ends in /v1")
        return Line("remote", name, FAIL, f"{base} answered {e.code} to /models", "check the server's log", needed=True)
    except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return Line("remote", name, FAIL, f"cannot reach {base} ({reason})", "is the server running, and the base URL right?", needed=True)
    ids = _model_ids(body)
    missing = [m for _, m in users if m and ids is not None and m not in ids]
    detail = f"{base} answers; key {'accepted' if key else 'not needed'}; {len(ids) if ids is not None else '?'} models"
    data: dict[str, Any] = {"base_url": base, "models": len(ids) if ids is not None else None}
    if missing:
        return Line("remote", name, WARN, f"{detail}; it does not list {', '.join(missing)}", "check the model name", data=data)
    return Line("remote", name, OK, detail, data=data)


def _model_ids(body: bytes) -> set[str] | None:
    try:
        data = json.loads(body)
        return {str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)}
    except (ValueError, AttributeError):
        return None
