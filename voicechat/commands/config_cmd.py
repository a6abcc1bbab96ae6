"""`voicechat config show | path`."""

from __future__ import annotations

import typer

from voicechat.console import handle_errors, load_config

app = typer.Typer(help="Show the effective configuration or where the config file lives.", no_args_is_help=True)


@app.command("show")
@handle_errors
def show(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of YAML.")) -> None:
    """Print the effective configuration (all sources merged), secrets masked."""
    import json

    import yaml

    from voicechat.config import as_dict

    data = as_dict(load_config())
    if json_out:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


@app.command("path")
@handle_errors
def path() -> None:
    """Print where the user's config file lives (it may not exist yet)."""
    from voicechat import paths

    typer.echo(str(paths.user_config_file()))
