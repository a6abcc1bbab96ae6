"""The Realtime API's beta interface, for clients that still speak it: pure translation to and from GA events.

A client asks for it with the header ``OpenAI-Beta: realtime=v1`` (the openai SDK's ``client.beta.realtime``)
or, from a browser, the subprotocol ``openai-beta.realtime-v1``. The session runs as any other; only the
names and shapes differ (types in the openai SDK's ``types/beta/realtime/``):

- server events: ``response.output_audio.*`` -> ``response.audio.*``, ``response.output_audio_transcript.*``
  -> ``response.audio_transcript.*``, ``response.output_text.*`` -> ``response.text.*``,
  ``conversation.item.added`` -> ``conversation.item.created`` (``conversation.item.done`` has no beta form:
  left out); content parts ``output_audio``/``output_text`` -> ``audio``/``text``; the session as
  ``modalities``, ``voice``, ``input_audio_format`` ``pcm16``/``g711_ulaw``/``g711_alaw``,
  ``input_audio_transcription``, ``turn_detection``; a response with ``modalities`` and ``voice``;
- client events: ``session.update`` and ``response.create`` in the beta shape are read as their GA form;
  the other client events have the same names and shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEADER = "realtime=v1"
SUBPROTOCOL = "openai-beta.realtime-v1"
RENAMED = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
DROPPED = {"conversation.item.done"}
FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
GA_FORMATS = {v: k for k, v in FORMATS.items()}


def wanted(headers: Mapping[str, str]) -> bool:
    """The client speaks the beta interface (its header, or a browser's subprotocol)."""
    if HEADER in (headers.get("openai-beta") or "").replace(" ", "").split(","):
        return True
    return SUBPROTOCOL in [p.strip() for p in (headers.get("sec-websocket-protocol") or "").split(",")]


# GA -> beta (server events) ------------------------------------------------------------------------
def to_beta(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A GA server event in the beta dialect; None for events the beta interface does not have."""
    kind = doc.get("type")
    if kind in DROPPED:
        return None
    out = dict(doc)
    out["type"] = RENAMED.get(str(kind), kind)
    if isinstance(out.get("item"), dict):
        out["item"] = item(out["item"])
    if isinstance(out.get("session"), dict) and out["session"].get("type") == "realtime":
        out["session"] = session(out["session"])
    if isinstance(out.get("response"), dict):
        out["response"] = response(out["response"])
    return out


def item(doc: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(doc.get("content"), list):
        return doc
    parts = []
    for part in doc["content"]:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("output_audio", "output_text"):
            part = {**part, "type": "audio" if kind == "output_audio" else "text"}
        parts.append(part)
    return {**doc, "content": parts}


def session(ga: dict[str, Any]) -> dict[str, Any]:
    audio = ga.get("audio") or {}
    inp, out = audio.get("input") or {}, audio.get("output") or {}
    modes = ga.get("output_modalities") or ["audio"]
    return {
        "id": ga.get("id"),
        "object": "realtime.session",
        "model": ga.get("model"),
        "modalities": ["text"] if modes == ["text"] else ["audio", "text"],
        "instructions": ga.get("instructions"),
        "voice": out.get("voice"),
        "speed": out.get("speed"),
        "input_audio_format": FORMATS.get(str((inp.get("format") or {}).get("type")), "pcm16"),
        "output_audio_format": FORMATS.get(str((out.get("format") or {}).get("type")), "pcm16"),
        "input_audio_transcription": inp.get("transcription"),
        "input_audio_noise_reduction": inp.get("noise_reduction"),
        "turn_detection": inp.get("turn_detection"),
        "tools": ga.get("tools", []),
        "tool_choice": _choice(ga.get("tool_choice", "auto")),
        "temperature": 0.8,
        "max_response_output_tokens": ga.get("max_output_tokens", "inf"),
    }


def _choice(value: Any) -> Any:
    return value["name"] if isinstance(value, dict) and "name" in value else value


def response(ga: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in ga.items() if k not in ("output_modalities", "audio")}
    modes = ga.get("output_modalities") or ["audio"]
    out["modalities"] = ["text"] if modes == ["text"] else ["audio", "text"]
    output_audio = (ga.get("audio") or {}).get("output") or {}
    out["voice"] = output_audio.get("voice")
    out["output_audio_format"] = FORMATS.get(str((output_audio.get("format") or {}).get("type")), "pcm16")
    out["output"] = [item(i) if isinstance(i, dict) else i for i in ga.get("output") or []]
    return out


# beta -> GA (client events) ------------------------------------------------------------------------
def _modalities(value: Any) -> Any:
    """beta modalities -> GA output_modalities: audio (which carries its transcript) or text alone."""
    if isinstance(value, list) and set(value) <= {"audio", "text"} and value:
        return ["audio"] if "audio" in value else ["text"]
    return value  # (refused, by name, as the GA field)


def _format(value: Any) -> Any:
    return {"type": GA_FORMATS[value]} if value in GA_FORMATS else {"type": str(value)}


def session_from_beta(beta: Any) -> Any:
    """A beta session.update's ``session`` as the GA one (fields the beta session lacks stay absent)."""
    if not isinstance(beta, dict):
        return beta
    ga: dict[str, Any] = {"type": "realtime"}
    for key in ("instructions", "tools", "tool_choice"):
        if key in beta:
            ga[key] = beta[key]
    if "modalities" in beta:
        ga["output_modalities"] = _modalities(beta["modalities"])
    inp: dict[str, Any] = {}
    out: dict[str, Any] = {}
    if beta.get("input_audio_format") is not None:
        inp["format"] = _format(beta["input_audio_format"])
    if beta.get("output_audio_format") is not None:
        out["format"] = _format(beta["output_audio_format"])
    if "input_audio_transcription" in beta:
        inp["transcription"] = beta["input_audio_transcription"]
    if "turn_detection" in beta:
        inp["turn_detection"] = beta["turn_detection"]
    for key in ("voice", "speed"):
        if key in beta:
            out[key] = beta[key]
    audio = {k: v for k, v in (("input", inp), ("output", out)) if v}
    if audio:
        ga["audio"] = audio
    return ga


def response_from_beta(beta: Any) -> Any:
    """A beta response.create's ``response`` as the GA one."""
    if not isinstance(beta, dict):
        return beta
    ga = {k: v for k, v in beta.items() if k not in ("modalities", "voice", "output_audio_format", "temperature", "max_output_tokens")}
    if "modalities" in beta:
        ga["output_modalities"] = _modalities(beta["modalities"])
    return ga
