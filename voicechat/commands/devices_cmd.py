"""`voicechat devices`: the sound devices PortAudio sees."""

from __future__ import annotations

import typer

from voicechat.console import handle_errors

HELP = "List input and output sound devices (use the index or part of the name with --input-device / --output-device)."


@handle_errors
def devices(
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    check_echo: bool = typer.Option(
        False, "--check-echo", help="Play a short sound and measure the echo and how much of it echo cancellation removes."
    ),
    input_device: str = typer.Option(None, "--input-device", help="With --check-echo: microphone (index or name part)."),
    output_device: str = typer.Option(None, "--output-device", help="With --check-echo: speaker (index or name part)."),
) -> None:
    from voicechat.audio import list_devices

    if check_echo:
        _check_echo(json_out, input_device, output_device)
        return
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
        table.add_row(
            str(d["index"]),
            escape(d["name"]) + (f" [bold]{mark.strip()}[/]" if mark else ""),
            d["hostapi"],
            str(d["inputs"]),
            str(d["outputs"]),
            str(d["samplerate"]),
        )
    out_console().print(table)
    if not rows:
        typer.echo("no sound devices found", err=True)


def _check_echo(json_out: bool, input_device: str | None, output_device: str | None) -> None:
    from voicechat.console import load_config
    from voicechat.voice.echo_check import check_echo

    cfg = load_config({"audio.input_device": input_device, "audio.output_device": output_device})
    report = check_echo(cfg.audio.input_device, cfg.audio.output_device, cfg.audio.aec_engine, cfg.audio.latency)
    if json_out:
        import json

        typer.echo(json.dumps(report.to_dict()))
        return
    r = report
    typer.echo(f"echo cancellation: {r.engine}; stream latency: output {r.output_latency_ms:.0f} ms, input {r.input_latency_ms:.0f} ms")
    if not r.echo_heard:
        level = "" if r.echo_level_db is None else f" (echo {r.echo_level_db:.0f} dB)"
        typer.echo(f"the microphone did not hear the speaker{level}: no echo to remove (headphones?)")
        return
    typer.echo(f"echo heard at {r.echo_level_db:.0f} dB of the sound played, {r.delay_ms:.0f} ms after it was played")
    if r.erle_db is not None:
        typer.echo(f"echo removed: {r.erle_db:.1f} dB")
