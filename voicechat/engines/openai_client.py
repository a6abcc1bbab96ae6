"""Shared pieces of the OpenAI-compatible engines: the client and error translation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from voicechat.errors import VoicechatError, scrub

if TYPE_CHECKING:
    from voicechat.engines.base import Message

OPENAI_URL = "https://api.openai.com/v1"


def make_client(base_url: str | None, api_key: str | None, *, timeout: float = 60.0, retries: int = 2) -> Any:
    import openai

    if not api_key:
        if base_url is None or "api.openai.com" in base_url:
            raise VoicechatError(
                "no OpenAI API key: set OPENAI_API_KEY (or openai.api_key in the config file), or point openai.base_url at a local server"
            )
        api_key = "not-needed"  # local servers (llama.cpp, Ollama, vLLM) accept any key
    return openai.OpenAI(base_url=base_url or OPENAI_URL, api_key=api_key, timeout=timeout, max_retries=retries)


def translate(e: Exception, what: str, base_url: str | None) -> VoicechatError:
    """Turn an openai SDK exception into one clear line."""
    import openai

    where = base_url or OPENAI_URL
    if isinstance(e, openai.AuthenticationError):
        return VoicechatError(f"{what}: the server at {where} rejected the API key (401); check OPENAI_API_KEY / openai.api_key")
    if isinstance(e, openai.PermissionDeniedError):
        return VoicechatError(f"{what}: permission denied by {where} (403); check the key's access to this model")
    if isinstance(e, openai.NotFoundError):
        return VoicechatError(f"{what}: not found at {where} (404): unknown model or wrong base URL; check the model name and base_url")
    if isinstance(e, openai.RateLimitError):
        return VoicechatError(f"{what}: rate limited by {where} (429) even after retries; wait and try again, or lower the request rate")
    if isinstance(e, openai.APITimeoutError):
        return VoicechatError(f"{what}: {where} did not answer in time; raise the timeout or check the server")
    if isinstance(e, openai.APIConnectionError):
        return VoicechatError(f"{what}: cannot connect to {where}; is the server running and the base URL right?")
    if isinstance(e, openai.BadRequestError):
        return VoicechatError(f"{what}: the server at {where} refused the request (400): {scrub(_message(e))}")
    if isinstance(e, openai.APIStatusError):
        return VoicechatError(f"{what}: server error {e.status_code} from {where}: {scrub(_message(e))}; try again later")
    return VoicechatError(f"{what}: {scrub(str(e))}")


def _message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:200]
    return str(getattr(e, "message", e))[:200]


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Chat-completions messages, with tool calls and tool results in OpenAI's shape.

    An assistant turn that only called tools has content "" rather than null: chat templates
    on local servers concatenate the content and fail on null."""
    out: list[dict[str, Any]] = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls
            ]
        if m.role == "tool":
            d["tool_call_id"] = m.tool_call_id or ""
        out.append(d)
    return out


class ToolCallAssembler:
    """Put streamed tool-call pieces back together: by index, the id and name once, the arguments appended."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}

    def feed(self, pieces: Any) -> None:
        for piece in pieces or ():
            index = getattr(piece, "index", None)
            slot = self.calls.setdefault(index if index is not None else len(self.calls), {"id": "", "name": "", "arguments": ""})
            if getattr(piece, "id", None) and not slot["id"]:
                slot["id"] = piece.id
            fn = getattr(piece, "function", None)
            if fn is not None:
                if fn.name and not slot["name"]:  # some servers repeat the name in every piece
                    slot["name"] = fn.name
                if fn.arguments:
                    slot["arguments"] += fn.arguments

    def finish(self) -> list[Any]:
        from voicechat.engines.base import ToolCall

        return [ToolCall(slot["id"] or f"call_{i}", slot["name"], slot["arguments"] or "{}") for i, slot in sorted(self.calls.items())]
