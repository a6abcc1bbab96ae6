"""`voicechat doctor`: check this machine, the config, the devices and the models, and say what to fix."""

from __future__ import annotations

from typing import Annotated

import typer

from voicechat.console import handle_errors

HELP = (
    "Check Python, sound devices, models, GPU, config, history and servers: one line each, ok or what to do. "
    "Exits 1 when something `talk` needs is broken."
)


@handle_errors
def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object for scripts: every check, the counts, the verdict.")] = False,
    load: Annotated[bool, typer.Option("--load", help="Also load each configured engine, as talk does, and time it.")] = False,
    echo: Annotated[
        bool, typer.Option("--echo", help="Also measure the echo: play a 3 s sound and hear how much of it the canceller removes.")
    ] = False,
) -> None:
    from voicechat.console import config_file
    from voicechat.doctor.diagnose import diagnose
    from voicechat.doctor.report import exit_code, render_json, render_text

    lines = diagnose(config_file(), load=load, echo=echo)
    typer.echo(render_json(lines) if json_out else render_text(lines))
    raise typer.Exit(exit_code(lines))
