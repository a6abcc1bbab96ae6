"""`voicechat devices`: the sound devices PortAudio sees."""

from __future__ import annotations

import typer

from voicechat.console import handle_errors

HELP = "List input and output sound devices (use the index or part of the name with --input-device / --output-device)."


@handle_errors
def devices(json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    from voicechat.audio import list_devices

    rows = list_devices()
    if json_out:
        import json

        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    from voicechat.console import out_console

    table = Table(title="sound devices (* = default)", title_justify="left")
    for col in ("index", "name", "api", "in", "out", "rate"):
        table.add_column(col, justify="right" if col in ("index", "in", "out", "rate") else "left")
    for d in rows:
        mark = ("*in " if d["default_input"] else "") + ("*out" if d["default_output"] else "")
        table.add_row(str(d["index"]), escape(d["name"]) + (f" [bold]{mark.strip()}[/]" if mark else ""), d["hostapi"], str(d["inputs"]), str(d["outputs"]), str(d["samplerate"]))
    out_console().print(table)
    if not rows:
        typer.echo("no sound devices found", err=True)
