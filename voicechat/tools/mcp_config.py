"""The MCP servers section of the config (tools.mcp), checked when the config is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voicechat.errors import ConfigError

KEYS = {"command", "args", "env", "cwd", "url", "enabled", "allow", "confirm", "timeout"}


@dataclass(frozen=True)
class ServerConfig:
    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = None
    enabled: bool = True
    allow: tuple[str, ...] | None = None
    confirm: bool = True
    timeout: float = 10.0


def servers(mapping: Any, *, default_timeout: float = 10.0, source: str = "tools.mcp") -> list[ServerConfig]:
    """The configured servers, checked: one clear line for the first thing wrong."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: must map server names to settings, e.g. {{files: {{command: npx, args: [...]}}}}")
    out = []
    from voicechat.config import shown

    for name, entry in mapping.items():
        where = f"{source}.{str(name)[:40]}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a mapping with command (and args) or url")
        unknown = set(entry) - KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key {shown(str(sorted(map(str, unknown))[0]))}; expected {', '.join(sorted(KEYS))}")
        command, url = entry.get("command"), entry.get("url")
        if (command is None) == (url is None):
            raise ConfigError(f"{where}: give either command (a stdio server) or url (an HTTP server)")
        if command is not None and (not isinstance(command, str) or not command.strip()):
            raise ConfigError(f"{where}.command: must be a program name or path")
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            raise ConfigError(f"{where}.url: must be an http:// or https:// URL")
        args = entry.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
            raise ConfigError(f"{where}.args: must be a list of strings")
        env = entry.get("env")
        if env is not None and (not isinstance(env, dict) or not all(isinstance(v, (str, int, float)) for v in env.values())):
            raise ConfigError(f"{where}.env: must map variable names to strings")
        allow = entry.get("allow")
        if allow is not None and (not isinstance(allow, list) or not all(isinstance(a, str) for a in allow)):
            raise ConfigError(f"{where}.allow: must be a list of tool names")
        for flag in ("enabled", "confirm"):
            if flag in entry and not isinstance(entry[flag], bool):
                raise ConfigError(f"{where}.{flag}: must be true or false")
        timeout = entry.get("timeout", default_timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.1 <= timeout <= 3600:
            raise ConfigError(f"{where}.timeout: use a number of seconds from 0.1 to 3600")
        out.append(
            ServerConfig(
                name=str(name),
                command=command,
                args=tuple(str(a) for a in args),
                env={str(k): str(v) for k, v in env.items()} if env else None,
                cwd=entry.get("cwd"),
                url=url,
                enabled=entry.get("enabled", True),
                allow=tuple(allow) if allow is not None else None,
                confirm=entry.get("confirm", True),
                timeout=float(timeout),
            )
        )
    return out
