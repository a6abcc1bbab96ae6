"""A chat request's per-call options (temperature, top_p, max_tokens, stop, seed), checked as OpenAI checks them.

Out-of-range values get a 400 in OpenAI's error shape naming the field; what passes becomes the
:class:`~voicechat.engines.base.SamplingOptions` of that one call.
"""

from __future__ import annotations

from typing import Any

from voicechat.config import shown
from voicechat.engines.base import SamplingOptions
from voicechat.serve.errors import ApiError

MAX_STOP = 4  # stop strings in one request (OpenAI's limit)
SEED_BITS = 63  # a seed is a signed 64-bit integer


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ApiError(400, f"{name} {shown(value)} is not a number from {low:g} to {high:g}", param=name)
    return float(value)


def _count(body: dict[str, Any], name: str, cap: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= cap:
        raise ApiError(400, f"{name} {shown(value)} is not a whole number from 1 to {cap} (this server's serve.max_tokens)", param=name)
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise ApiError(400, f"stop {shown(value)} is not a string or a list of strings", param="stop")
    if len(items) > MAX_STOP:
        raise ApiError(400, f"stop holds {len(items)} strings; give up to {MAX_STOP}", param="stop")
    return tuple(s for s in items if s)


def _seed(body: dict[str, Any]) -> int | None:
    value = body.get("seed")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not -(1 << SEED_BITS) <= value < (1 << SEED_BITS):
        raise ApiError(400, f"seed {shown(value)} is not a whole number that fits 64 bits", param="seed")
    return value


def sampling_options(body: dict[str, Any], max_tokens_cap: int) -> SamplingOptions:
    """The request's options for this call; max_completion_tokens (the newer name) wins over max_tokens."""
    legacy = _count(body, "max_tokens", max_tokens_cap)
    newer = _count(body, "max_completion_tokens", max_tokens_cap)
    return SamplingOptions(
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        max_tokens=newer if newer is not None else legacy,
        stop=_stop(body),
        seed=_seed(body),
    )
