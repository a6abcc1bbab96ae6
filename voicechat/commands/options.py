"""Command-line options that several commands share (the engines of `talk` and `serve`), declared once."""

from __future__ import annotations

from typing import Annotated

import typer

ENGINES = "Engines and models"

Stt = Annotated[str | None, typer.Option("--stt", help="Speech-to-text engine.", rich_help_panel=ENGINES)]
Llm = Annotated[str | None, typer.Option("--llm", help="Chat engine.", rich_help_panel=ENGINES)]
Tts = Annotated[str | None, typer.Option("--tts", help="Text-to-speech engine.", rich_help_panel=ENGINES)]
SttModel = Annotated[str | None, typer.Option("--stt-model", help="Whisper model name or directory.", rich_help_panel=ENGINES)]
LlmModel = Annotated[str | None, typer.Option("--llm-model", help="GGUF path, server model, or provider:model.", rich_help_panel=ENGINES)]
Voice = Annotated[str | None, typer.Option("--voice", help="TTS voice.", rich_help_panel=ENGINES)]
System = Annotated[str | None, typer.Option("--system", help="System prompt.", rich_help_panel=ENGINES)]
Languages = Annotated[
    str | None,
    typer.Option(
        "--languages",
        help="The languages you speak, e.g. en,de,fr: each turn's language is detected among them (listen.languages).",
        rich_help_panel=ENGINES,
    ),
]


def engine_overrides(
    stt: str | None, llm: str | None, tts: str | None, stt_model: str | None, llm_model: str | None, voice: str | None, system: str | None
) -> dict[str, object]:
    """The config keys the shared engine options set (None: not given, the config decides)."""
    return {
        "stt.engine": stt,
        "llm.engine": llm,
        "tts.engine": tts,
        "stt.model": stt_model,
        "llm.model": llm_model,
        "tts.voice": voice,
        "llm.system_prompt": system,
    }
