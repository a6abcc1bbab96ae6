"""`voicechat transcribe FILE...`: audio files to text, subtitles or JSON."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from voicechat.console import handle_errors

SUBS = "Subtitles (srt, vtt)"
HELP = "Transcribe audio or video files (or - for stdin) to txt, srt, vtt, json or tsv."


@handle_errors
def transcribe(
    files: Annotated[list[str], typer.Argument(help="Audio or video files; - reads stdin.", show_default=False)],
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Write one file per input and format here (atomically).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="txt, srt, vtt, json, tsv, all, or a comma list.")] = "txt",
    language: Annotated[
        str | None,
        typer.Option(
            "--language",
            "-l",
            help="Language code (de), or auto: each file's language is detected (multilingual model); default: the model's.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model name or local directory; default: bundled tiny.en (multilingual base for other languages)."
        ),
    ] = None,
    engine: Annotated[str | None, typer.Option("--engine", "-e", help="Speech-to-text engine (see `voicechat engines`).")] = None,
    word_timestamps: Annotated[bool, typer.Option("--word-timestamps", help="Word-level times in json output.")] = False,
    vad: Annotated[bool | None, typer.Option("--vad/--no-vad", help="Skip silence with Silero VAD (default on).")] = None,
    beam_size: Annotated[int | None, typer.Option("--beam-size", min=1, max=20, help="Beam search width.")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=0, help="Batched inference: N at a time, 0 = off; default: automatic (on for long audio)."),
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    max_line_width: Annotated[
        int | None, typer.Option("--max-line-width", min=1, help="Characters per subtitle line before a break.", rich_help_panel=SUBS)
    ] = None,
    max_line_count: Annotated[
        int | None,
        typer.Option(
            "--max-line-count", min=1, help="Lines per subtitle cue (with --max-line-width or --max-words-per-line).", rich_help_panel=SUBS
        ),
    ] = None,
    max_words_per_line: Annotated[
        int | None, typer.Option("--max-words-per-line", min=1, help="Words per subtitle line.", rich_help_panel=SUBS)
    ] = None,
    highlight_words: Annotated[
        bool, typer.Option("--highlight-words", help="Underline each word as it is spoken (srt, vtt).", rich_help_panel=SUBS)
    ] = False,
) -> None:
    from voicechat.atomic import check_writable_dir
    from voicechat.console import err_console, fail, load_config
    from voicechat.engines import registry
    from voicechat.errors import VoicechatError
    from voicechat.transcription import formats
    from voicechat.transcription.subtitles import SubtitleOptions

    fmts = formats.parse_formats(fmt)
    if language is not None and language.strip().lower() != "auto":
        from voicechat.stt_languages import normalize

        codes = normalize([language], source="--language")
        language = codes[0] if codes else None
    subs = SubtitleOptions(max_line_width, max_line_count, max_words_per_line, highlight_words)
    if max_line_count is not None and not (max_line_width or max_words_per_line):
        raise VoicechatError("--max-line-count needs --max-line-width or --max-words-per-line")
    stems: list[str] = []
    if output_dir is not None:  # outputs planned before any work: a usable directory, one name per input
        from voicechat.outputs import plan_stems

        check_writable_dir(output_dir)
        stems, notes = plan_stems(files)
        for note in notes:
            sys.stderr.write(f"voicechat: note: {note}\n")
    if files.count("-") > 1:
        raise VoicechatError("stdin (-) can be given only once")
    # Subtitles are cut at word boundaries (sentence ends, line widths): they need word times.
    wants_words = word_timestamps or subs.needs_words or any(f in fmts for f in ("srt", "vtt", "tsv"))
    cfg = load_config(
        {
            "stt.engine": engine,
            "stt.model": model,
            "stt.language": language,
            "stt.vad_filter": vad,
            "stt.beam_size": beam_size,
            "stt.batch_size": batch_size,
            "stt.device": device,
            "stt.word_timestamps": wants_words or None,
        }
    )
    err = err_console()
    show_progress = sys.stderr.isatty()
    failed = 0
    from voicechat.decode import open_audio
    from voicechat.transcription.longform import Prefetcher

    with Prefetcher(list(files), open_audio) as prefetch:  # the first file decodes while the model loads
        stt = registry.create("stt", cfg)
        for index, events in prefetch.files():
            name = files[index]
            try:
                _one(stt, cfg, name, events, fmts, subs, output_dir, len(files), err, show_progress, index, stems)
            except Exception as e:
                from voicechat.console import debug

                if debug():
                    raise
                failed += 1
                fail(str(e) if isinstance(e, VoicechatError) else f"{name}: {type(e).__name__}: {e}")
    if len(files) > 1:
        err.print(f"{len(files) - failed} of {len(files)} files transcribed" + (f", {failed} failed" if failed else ""))
    if failed:
        raise typer.Exit(1)


def _windows(events, done: dict):
    """The windows of one file as the decoder thread delivers them; its error, raised here."""
    from voicechat.transcription.longform import Done, Failed, Window

    for event in events:
        if isinstance(event, Window):
            yield event
        elif isinstance(event, Done):
            done["duration"] = event.duration
        elif isinstance(event, Failed):
            raise event.error


def _one(
    stt,
    cfg,
    name: str,
    events,
    fmts: list[str],
    subs,
    output_dir: Path | None,
    count: int,
    err,
    show_progress: bool,
    index: int = 0,
    stems: Sequence[str] = (),
) -> None:
    from voicechat.atomic import write_text_atomic
    from voicechat.transcription import formats
    from voicechat.transcription.longform import Failed, transcribe_windows

    started = time.perf_counter()
    opened = next(events)
    if isinstance(opened, Failed):
        raise opened.error
    done: dict = {}
    stream = transcribe_windows(stt, _windows(events, done), no_speech_threshold=cfg.stt.no_speech_threshold)
    segments = []
    declared = opened.duration
    if show_progress and (declared is None or declared > 10):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        done_text = "{task.completed:.0f}/{task.total:.0f} s" if declared else "{task.completed:.0f} s"  # stdin: length unknown
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn(done_text),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task(Path(opened.name).name, total=declared)
            for seg in stream:
                segments.append(seg)
                progress.update(task, completed=min(seg.end, declared or seg.end))
    else:
        segments = list(stream)
    duration = done.get("duration", 0.0)
    elapsed = time.perf_counter() - started
    meta = {"source": name, "language": stt.info.language, "duration": duration, "model": stt.model_name, "subtitles": subs}
    detected = (cfg.stt.language or "").strip().lower() == "auto" and segments and stt.info.language
    if output_dir is None:
        from voicechat.outputs import emit

        if detected:
            err.print(f"{name}: language {stt.info.language}", markup=False)

        emit((f"==> {name} <==\n" if count > 1 else "") + "".join(formats.WRITERS[f](segments, **meta) for f in fmts))
        if not segments:
            err.print(f"{name}: no speech found", style="yellow")
        return
    stem = stems[index] if stems else ("stdin" if name == "-" else Path(name).stem)
    written = []
    for f in fmts:
        target = output_dir / f"{stem}.{f}"
        write_text_atomic(target, formats.WRITERS[f](segments, **meta))
        written.append(str(target))
    note = (f" (language {stt.info.language})" if detected else "") if segments else " (no speech found)"
    err.print(f"{name}: {duration:.1f} s of audio in {elapsed:.1f} s → {', '.join(written)}{note}", markup=False)
