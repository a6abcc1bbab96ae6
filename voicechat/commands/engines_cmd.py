"""`voicechat engines`: every engine, whether it is installed, whether its offline model is present."""

from __future__ import annotations

import typer

from voicechat.console import handle_errors

HELP = "List the speech-to-text, chat and text-to-speech engines, installed or not."


@handle_errors
def engines(json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    from voicechat.config import Config
    from voicechat.console import load_config
    from voicechat.engines.registry import all_specs

    try:
        cfg = load_config()
    except Exception:
        cfg = Config()
    rows = []
    for spec in all_specs():
        default = getattr(cfg, spec.kind).engine == spec.name
        rows.append(
            {
                "kind": spec.kind,
                "name": spec.name,
                "installed": spec.installed(),
                "default_model": spec.default_model_status(),
                "selected": default,
                "description": spec.description,
                "install": "" if spec.installed() else spec.install,
            }
        )
    if json_out:
        import json

        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    from voicechat.console import out_console

    table = Table(title="voicechat engines", title_justify="left")
    for col in ("kind", "engine", "installed", "offline model", "description"):
        table.add_column(col)
    for r in rows:
        name = f"[bold]{r['name']}[/] (selected)" if r["selected"] else r["name"]
        inst = "[green]yes[/]" if r["installed"] else f"[red]no[/]: {escape(r['install'])}"
        model = {"present": "[green]present[/]", "missing": "[red]missing[/]"}.get(r["default_model"], "-")
        table.add_row(r["kind"], name, inst, model, escape(r["description"]))
    out_console().print(table)
