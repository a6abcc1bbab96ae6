"""The voicechat command line: the root app, global options and the command table.

Each command lives in voicechat/commands/; nothing heavy is imported until a
command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from voicechat import __version__
from voicechat.commands import (
    chat_cmd,
    config_cmd,
    devices_cmd,
    doctor_cmd,
    engines_cmd,
    history_cmd,
    models_cmd,
    say_cmd,
    serve_cmd,
    talk_cmd,
    tokens_cmd,
    transcribe_cmd,
)
from voicechat.console import set_globals

app = typer.Typer(
    name="voicechat",
    help="A voice assistant in your terminal: speak, and it answers aloud. Offline by default.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"voicechat {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="A YAML config file (see config.example.yaml).", envvar="VOICECHAT_CONFIG")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    set_globals(debug=debug, config=config)


app.command("talk", help=talk_cmd.HELP)(talk_cmd.talk)
app.command("transcribe", help=transcribe_cmd.HELP)(transcribe_cmd.transcribe)
app.command("say", help=say_cmd.HELP)(say_cmd.say)
app.command("chat", help=chat_cmd.HELP)(chat_cmd.chat)
app.command("tokens", help=tokens_cmd.HELP)(tokens_cmd.tokens)
app.command("serve", help=serve_cmd.HELP)(serve_cmd.serve)
app.command("devices", help=devices_cmd.HELP)(devices_cmd.devices)
app.command("engines", help=engines_cmd.HELP)(engines_cmd.engines)
app.command("doctor", help=doctor_cmd.HELP)(doctor_cmd.doctor)
app.add_typer(history_cmd.app, name="history")
app.add_typer(config_cmd.app, name="config")
app.add_typer(models_cmd.app, name="models")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
