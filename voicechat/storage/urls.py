"""Where the history lives, told from the config without importing a database driver:
a ``postgresql://`` URL (history.url) or a SQLite file (history.path)."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


def is_postgres(target: object) -> bool:
    return isinstance(target, str) and target.split("://", 1)[0].lower() in SCHEMES and "://" in target


def password(url: str) -> str | None:
    """The password a URL carries (in its user part or as ``?password=``), to register as a secret."""
    parts = urlsplit(url)
    found = parts.password
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password":
            found = value
    return found or None


def redacted(url: str) -> str:
    """The URL with its password replaced by ``***``: what messages and `config show` may print."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            name = user.split(":", 1)[0]
            netloc = f"{name}:***@{host}"
        query = urlencode(
            [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*/", quote_via=quote
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # a malformed URL shows nothing that could be a password
        return url.split("://", 1)[0] + "://***"
