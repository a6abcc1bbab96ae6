"""`voicechat history list | show | export | delete | import`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from voicechat.console import handle_errors

app = typer.Typer(help="Browse, export, delete and import logged conversations.", no_args_is_help=True)


def _open():
    from voicechat.console import load_config
    from voicechat.conversation.history import open_history

    return open_history(load_config())


@app.command("list")
@handle_errors
def list_(
    limit: int = typer.Option(20, "--limit", "-n", help="How many, newest first."), json_out: bool = typer.Option(False, "--json")
) -> None:
    """List sessions, newest first."""
    with _open() as h:
        rows = h.sessions(limit)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table
    from rich.text import Text

    from voicechat.console import out_console
    from voicechat.escaping import terminal_text

    table = Table(title="history", title_justify="left")
    for col in ("id", "started", "kind", "turns", "tokens", "model", "first words"):
        table.add_column(col, justify="right" if col in ("id", "turns", "tokens") else "left")
    for r in rows:  # cells as plain Text: a conversation's "[bold]" or "[/]" is shown, not taken as markup
        table.add_row(
            *(
                Text(terminal_text(v))
                for v in (
                    r["id"],
                    str(r["started_at"] or "").replace("T", " ")[:16],
                    r["kind"] or "",
                    r["turns"],
                    r["tokens"],
                    str(r["llm_model"] or "")[:28],
                    str(r["first_text"] or "")[:40],
                )
            )
        )
    out_console().print(table)


@app.command("show")
@handle_errors
def show(session_id: int = typer.Argument(..., help="Session id (see `history list`).")) -> None:
    """Print a session's conversation."""
    from voicechat.console import out_console

    with _open() as h:
        info, turns = h.session(session_id), h.turns(session_id)
    from rich.text import Text

    from voicechat.escaping import terminal_text

    console = out_console()
    head = f" · {info['kind']} · {info['started_at']} · {info['llm_model'] or ''}"
    console.print(Text.assemble((f"session {session_id}", "bold"), terminal_text(head)), highlight=False)
    for t in turns:  # the texts as Text: never read as markup, their control characters shown
        console.print(Text.assemble(("you", "bold cyan"), "  ", terminal_text(t.user_text)), highlight=False)
        cut = (" (interrupted)", "dim") if t.interrupted else ""
        console.print(Text.assemble(("assistant", "bold magenta"), "  ", terminal_text(t.assistant_text), cut), highlight=False)


def to_markdown(info: dict, turns: list) -> str:
    """The session as Markdown that shows every text as written: no HTML, link or image in it comes alive."""
    from voicechat.escaping import markdown_code
    from voicechat.escaping import markdown_text as md

    lines = [
        f"# voicechat session {md(str(info['id']))}",
        "",
        f"- started: {md(str(info['started_at']))}",
        f"- kind: {md(str(info['kind']))}",
        f"- model: {md(str(info['llm_model'] or ''))}",
        "",
    ]
    for t in turns:
        lines += [f"**You:** {md(t.user_text)}", ""]
        for call in t.tools:  # what was looked up, so a looked-up answer can be told from an invented one
            outcome = "failed: " if call.get("error") else "→ "
            result = md(" ".join(str(call.get("result")).split())[:300])
            lines += [f"> tool {markdown_code(str(call.get('name')))} {markdown_code(str(call.get('arguments')))} {outcome}{result}", ""]
        lines += [f"**Assistant:** {md(t.assistant_text)}" + (" *(interrupted)*" if t.interrupted else ""), ""]
    return "\n".join(lines)


@app.command("export")
@handle_errors
def export(
    session_id: int = typer.Argument(..., help="Session id."),
    fmt: str = typer.Option("json", "--format", "-f", help="csv, json or md."),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (atomically) instead of stdout.")] = None,
) -> None:
    """Export a session as CSV, JSON or Markdown."""
    import csv
    import dataclasses
    import io

    from voicechat.errors import VoicechatError

    if fmt not in ("csv", "json", "md"):
        raise VoicechatError(f"unknown export format '{fmt}'; use csv, json or md")
    if output is not None:
        from voicechat.atomic import check_output_file

        check_output_file(output)  # a directory or an unusable place fails before the history is read
    with _open() as h:
        info, turns = h.session(session_id), h.turns(session_id)
    if fmt == "json":
        text = (
            json.dumps({"session": info, "turns": [dataclasses.asdict(t) for t in turns]}, indent=2, ensure_ascii=False, default=str) + "\n"
        )
    elif fmt == "md":
        text = to_markdown(info, turns)
    else:
        buf = io.StringIO()
        fields = [
            "created_at",
            "user_text",
            "assistant_text",
            "interrupted",
            "llm_model",
            "prompt_tokens",
            "completion_tokens",
            "tokens_estimated",
        ]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        from voicechat.escaping import spreadsheet_cell

        for t in turns:  # no cell runs as a formula when a spreadsheet opens the file
            writer.writerow({k: spreadsheet_cell(v) for k, v in dataclasses.asdict(t).items() if k in fields})
        text = buf.getvalue()
    if output is None:
        from voicechat.outputs import emit

        emit(text)
    else:
        from voicechat.atomic import write_text_atomic

        write_text_atomic(output, text)


@app.command("delete")
@handle_errors
def delete(
    session_id: int = typer.Argument(..., help="Session id."), yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")
) -> None:
    """Delete a session and its turns."""
    import sys

    with _open() as h:
        h.session(session_id)
        if not yes:
            if not sys.stdin.isatty():
                from voicechat.errors import VoicechatError

                raise VoicechatError("refusing to delete without confirmation; add --yes")
            typer.confirm(f"delete session {session_id}?", abort=True)
        h.delete(session_id)
    typer.echo(f"deleted session {session_id}", err=True)


@app.command("import")
@handle_errors
def import_(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Recovery files (.jsonl); none: every file in the recovery folders.", show_default=False),
    ] = None,
    history: Annotated[
        str | None,
        typer.Option("--history", help="Import into this SQLite file or postgresql:// URL instead of the configured history."),
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Delete each file once every line of it is in the history.")] = False,
) -> None:
    """Bring recovery files (turns kept while the history was unavailable) back into the history.

    Importing a file twice adds nothing; a session that was in the history before is continued.

    Each file goes in one transaction. A line that is not a turn is named (file:line) and skipped (exit code 1).

    Files are kept unless --remove."""
    from voicechat.conversation import recovery
    from voicechat.conversation.history import History
    from voicechat.errors import VoicechatError

    paths = list(files or [])
    if not paths:
        paths = recovery.recovery_files()
        if not paths:
            typer.echo("no recovery files to import", err=True)
            return
    failed = False
    import os

    with History(os.path.expanduser(history)) if history else _open() as h:
        for path in paths:
            try:
                line, bad = recovery.import_file(h, path, remove=remove)
            except VoicechatError as e:
                from voicechat.console import fail

                fail(f"{path}: {e.message}" if str(path) not in e.message else e.message)
                failed = True
                continue
            for number, why in bad:
                from voicechat.errors import scrub

                typer.echo(f"voicechat: {scrub(f'{path}:{number}: not a recovered turn ({why}); skipped')}", err=True)
            failed = failed or bool(bad)
            typer.echo(line)
    if failed:
        raise typer.Exit(1)
