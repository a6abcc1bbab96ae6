"""Turns from recovery files brought back into the history, each once.

A recovery file (written by :mod:`voicechat.conversation.turnlog` while the history could not be
written) holds one JSON object a line: the turn's fields, plus what the session was (``kind``,
``system_prompt``, ``engines``) and which session it belongs to.

Identity: a line carries ``turn_key`` (a random id given when the turn was written); a line from an
older voicechat has none, and is known by a hash of its session, time, and texts instead. The key is
stored with the imported turn (``turns.recovered_key``, unique), so a turn already imported (from this
file, another copy of it, or by the live session itself) is never added twice.

The session: a line carries ``session_key``, the session's public id, so a session that was in the
database before the outage is continued, and one that never was is created once, with that id. A line
from an older voicechat has only ``session_id``: that session is continued when this history has it
(with the same kind); otherwise one new session takes the file's turns.

:func:`import_records` runs in one transaction: all the turns of a file are imported, or none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicechat.conversation.history import PUBLIC_ID, History, Turn, insert_session, insert_turn, new_key
from voicechat.storage.base import Query

ENGINE_FIELDS = ("stt_engine", "stt_model", "llm_engine", "llm_model", "tts_engine", "tts_model")
MAX_LINE_CHARS = 16 << 20  # a longer line is not a turn voicechat wrote


class BadLine(ValueError):
    """A line that is not a recovered turn; the message says why."""


@dataclass
class Recovered:
    """One turn read from a recovery file."""

    key: str  # the turn's identity: turn_key, or a hash of its content for an older line
    kind: str
    session_id: int | None  # the history's session id when it was written (None: no session in the history yet)
    session_key: str | None  # the session's public id (None in an older line)
    system_prompt: str | None
    engines: dict[str, str | None]
    turn: Turn
    line: int = 0


@dataclass
class Outcome:
    imported: int = 0
    already: int = 0
    sessions: list[int] = field(default_factory=list)  # the history's sessions that took turns, in order


def _field(doc: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
    if name not in doc or doc[name] is None:
        if required:
            raise BadLine(f"no {name}")
        return default
    value = doc[name]
    if isinstance(value, bool) and bool not in kinds:  # JSON true is not a number here
        raise BadLine(f"{name} is {type(value).__name__}")
    if not isinstance(value, kinds):
        raise BadLine(f"{name} is {type(value).__name__}")
    return value


def parse(doc: Any, line: int = 0) -> Recovered:
    """One recovery record (a parsed JSON line) as a turn with its identity; BadLine if it is not one."""
    if not isinstance(doc, dict):
        raise BadLine(f"a JSON {type(doc).__name__}, not an object")
    kind = _field(doc, "kind", (str,), required=True)
    session_id = _field(doc, "session_id", (int,))
    session_key = _field(doc, "session_key", (str,))
    if session_key is not None and not PUBLIC_ID.fullmatch(session_key):
        raise BadLine("session_key is not a session key")
    turn_key = _field(doc, "turn_key", (str,))
    if turn_key is not None and not (1 <= len(turn_key) <= 128):
        raise BadLine("turn_key is not a turn key")
    turn = Turn(
        user_text=_field(doc, "user_text", (str,), required=True),
        assistant_text=_field(doc, "assistant_text", (str,), required=True),
        created_at=_field(doc, "created_at", (str,), required=True),
        interrupted=_field(doc, "interrupted", (bool,), False),
        llm_model=_field(doc, "llm_model", (str,)),
        prompt_tokens=_field(doc, "prompt_tokens", (int,)),
        completion_tokens=_field(doc, "completion_tokens", (int,)),
        tokens_estimated=_field(doc, "tokens_estimated", (bool,), False),
        latency=_field(doc, "latency", (dict,), {}),
        user_audio=_field(doc, "user_audio", (str,)),
        reply_audio=_field(doc, "reply_audio", (str,)),
        cleared_before=_field(doc, "cleared_before", (bool,), False),
        tools=_field(doc, "tools", (list,), []),
        language=_field(doc, "language", (str,)),
    )
    if turn_key is None:  # an older line: known by what it says
        content = json.dumps([kind, session_id, turn.created_at, turn.user_text, turn.assistant_text], ensure_ascii=False)
        turn_key = "sha256:" + hashlib.sha256(content.encode("utf-8")).hexdigest()
    return Recovered(
        key=turn_key,
        kind=kind,
        session_id=session_id,
        session_key=session_key,
        system_prompt=_field(doc, "system_prompt", (str,)),
        engines=_engines(doc),
        turn=turn,
        line=line,
    )


def _engines(doc: dict[str, Any]) -> dict[str, str | None]:
    """The session's engines: an ``engines`` object, or (an older line) the same names at the top level."""
    nested = _field(doc, "engines", (dict,))
    source = nested if nested is not None else doc
    return {name: _field(source, name, (str,)) for name in ENGINE_FIELDS}


def read_file(path: Path) -> tuple[list[Recovered], list[tuple[int, str]]]:
    """The turns of a recovery file, and the lines that are not turns (line number, why). OSError if unreadable."""
    records: list[Recovered] = []
    bad: list[tuple[int, str]] = []
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        number = 0
        while text := f.readline(MAX_LINE_CHARS + 1):  # bounded: a file without newlines is not read whole
            number += 1
            if len(text) > MAX_LINE_CHARS and not text.endswith("\n"):
                while (rest := f.readline(1 << 20)) and not rest.endswith("\n"):
                    pass  # the rest of a line too long to be a turn
                bad.append((number, f"a line of over {MAX_LINE_CHARS} characters"))
                continue
            if not text.strip():
                continue
            try:
                records.append(parse(json.loads(text), number))
            except ValueError as e:  # BadLine, and JSON that does not parse
                bad.append((number, str(e).split("\n")[0] if isinstance(e, BadLine) else f"not JSON: {e}"))
    return records, bad


def import_records(history: History, records: list[Recovered], *, into: int | None = None) -> Outcome:
    """Bring these turns into the history in one transaction, in their order, each at most once.

    ``into``: the session the turns without a session key belong to (a live session coming back)."""
    return history.store.write(lambda q: _import(q, records, into))


def _import(q: Query, records: list[Recovered], into: int | None) -> Outcome:
    outcome = Outcome()
    seen: set[str] = set()
    groups: dict[tuple[str, Any], list[Recovered]] = {}
    for r in records:
        groups.setdefault(("key", r.session_key) if r.session_key else ("id", r.session_id), []).append(r)
    created: set[int] = set()  # sessions this import made: never the "session_id" of an older line
    for group in groups.values():
        session, existed = _session_for(q, group, into, created)
        for r in group:
            if r.key in seen or _present(q, r, session if existed else None):
                outcome.already += 1
                seen.add(r.key)
                continue
            seen.add(r.key)
            if session is None:
                first = group[0]
                public = first.session_key if first.session_key and not _public_taken(q, first.session_key) else new_key()
                session = insert_session(q, first.kind, first.system_prompt, first.engines, public, started_at=first.turn.created_at)
                created.add(session)
            insert_turn(q, session, r.turn, recovered_key=r.key)
            outcome.imported += 1
            if session not in outcome.sessions:
                outcome.sessions.append(session)
    return outcome


def _session_for(q: Query, group: list[Recovered], into: int | None, created: set[int]) -> tuple[int | None, bool]:
    """The history's session these turns continue, and whether it was there before (None: a new one is needed)."""
    for r in group:  # some of them were imported before: that session, wherever it came from
        rows = q("SELECT session_id FROM turns WHERE recovered_key=?", (r.key,))
        if rows:
            return int(rows[0]["session_id"]), True
    first = group[0]
    if first.session_key:
        rows = q("SELECT id FROM sessions WHERE public_id=?", (first.session_key,))
        return (int(rows[0]["id"]), True) if rows else (None, False)
    wanted = into if into is not None else first.session_id
    if wanted is not None and wanted not in created:  # an older line: its session if it looks like this one's
        rows = q("SELECT id FROM sessions WHERE id=? AND kind=? AND started_at<=?", (wanted, first.kind, first.turn.created_at))
        if rows:
            return int(rows[0]["id"]), True
    return None, False


def _present(q: Query, r: Recovered, session: int | None) -> bool:
    """Whether this turn is in the history already: imported before, or (in a session that was there before)
    the same turn written directly, e.g. by a commit that was reported broken but went through."""
    if q("SELECT 1 AS x FROM turns WHERE recovered_key=?", (r.key,)):
        return True
    if session is None:
        return False
    return bool(
        q(
            "SELECT 1 AS x FROM turns WHERE session_id=? AND created_at=? AND user_text=? AND assistant_text=?",
            (session, r.turn.created_at, r.turn.user_text, r.turn.assistant_text),
        )
    )


def _public_taken(q: Query, public_id: str) -> bool:
    return bool(q("SELECT 1 AS x FROM sessions WHERE public_id=?", (public_id,)))


def recovery_files() -> list[Path]:
    """This user's recovery files, oldest first: the data dir's recovered folder, then the temp dir's."""
    from voicechat.conversation.turnlog import recovery_dirs

    found: list[Path] = []
    for directory in recovery_dirs():
        if directory.is_dir():
            found += sorted(directory.glob("*.jsonl"))
    return found


def import_file(history: History, path: Path, *, remove: bool = False) -> tuple[str, list[tuple[int, str]]]:
    """Import one recovery file (one transaction): the line that says what happened, and its bad lines.
    With ``remove``, the file is deleted once all its lines are in the history (none bad)."""
    import os

    from voicechat.errors import VoicechatError, file_error

    if path.is_dir():
        raise VoicechatError(f"{path}: is a directory; name the .jsonl recovery files in it")
    if path.exists() and not path.is_file():  # a device or a pipe: it may never end (/dev/zero)
        raise VoicechatError(f"{path}: is not a regular file; name the .jsonl recovery files voicechat wrote")
    try:
        records, bad = read_file(path)
    except OSError as e:
        raise file_error(path, e, "read the recovery file") from None
    outcome = import_records(history, records)
    ids = [str(s) for s in outcome.sessions]
    said = f"{path}: {_count(outcome.imported, 'turn')} imported"
    if ids:
        said += " into session " + ids[0] if len(ids) == 1 else " into sessions " + ", ".join(ids[:-1]) + " and " + ids[-1]
    said += f", {outcome.already} already there"
    if bad:
        said += f", {_count(len(bad), 'bad line')} skipped"
    if remove and not bad:
        try:
            os.unlink(path)
            said += "; file removed"
        except OSError as e:
            said += f"; file kept ({file_error(path, e, 'remove').message})"
    elif remove:
        said += "; file kept (it has bad lines)"
    return said, bad


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
