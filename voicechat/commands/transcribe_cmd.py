"""`voicechat transcribe FILE...`: audio files to text, subtitles or JSON."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from voicechat.console import handle_errors

HELP = "Transcribe audio or video files (or - for stdin) to txt, srt, vtt, json or tsv."


@handle_errors
def transcribe(
    files: Annotated[List[str], typer.Argument(help="Audio or video files; - reads stdin.", show_default=False)],
    output_dir: Annotated[
        Optional[Path], typer.Option("--output-dir", "-o", help="Write one file per input and format here (atomically).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="txt, srt, vtt, json, tsv, all, or a comma list.")] = "txt",
    language: Annotated[Optional[str], typer.Option("--language", "-l", help="Language code; default: detect.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name or local directory; default: bundled tiny.en.")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", "-e", help="Speech-to-text engine (see `voicechat engines`).")] = None,
    word_timestamps: Annotated[bool, typer.Option("--word-timestamps", help="Word-level times in json output.")] = False,
    vad: Annotated[Optional[bool], typer.Option("--vad/--no-vad", help="Skip silence with Silero VAD (default on).")] = None,
    beam_size: Annotated[Optional[int], typer.Option("--beam-size", min=1, max=20, help="Beam search width.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=0, help="Batched inference (0 = off).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu or cuda.")] = None,
) -> None:
    from voicechat import formats
    from voicechat.atomic import check_writable_dir
    from voicechat.console import err_console, fail, load_config
    from voicechat.engines import registry

    fmts = formats.parse_formats(fmt)
    stems: list[str] = []
    if output_dir is not None:  # outputs planned before any work: a usable directory, one name per input
        from voicechat.outputs import plan_stems

        check_writable_dir(output_dir)
        stems, notes = plan_stems(files)
        for note in notes:
            sys.stderr.write(f"voicechat: note: {note}\n")
    if files.count("-") > 1:
        from voicechat.errors import VoicechatError

        raise VoicechatError("stdin (-) can be given only once")
    cfg = load_config(
        {
            "stt.engine": engine,
            "stt.model": model,
            "stt.language": language,
            "stt.vad_filter": vad,
            "stt.beam_size": beam_size,
            "stt.batch_size": batch_size,
            "stt.device": device,
            "stt.word_timestamps": word_timestamps or None,
        }
    )
    stt = registry.create("stt", cfg)
    err = err_console()
    show_progress = sys.stderr.isatty()
    failed = 0
    for index, name in enumerate(files):
        try:
            _one(stt, cfg, name, fmts, output_dir, len(files), index, err, show_progress, stems)
        except Exception as e:
            from voicechat.console import debug
            from voicechat.errors import VoicechatError

            if debug():
                raise
            failed += 1
            fail(str(e) if isinstance(e, VoicechatError) else f"{name}: {type(e).__name__}: {e}")
    if len(files) > 1:
        err.print(f"{len(files) - failed} of {len(files)} files transcribed" + (f", {failed} failed" if failed else ""))
    if failed:
        raise typer.Exit(1)


def _one(stt, cfg, name: str, fmts: list[str], output_dir: Path | None, count: int, index: int, err, show_progress: bool,
         stems: list[str] = ()) -> None:
    from voicechat import formats, guard
    from voicechat.atomic import write_text_atomic
    from voicechat.decode import decode

    started = time.perf_counter()
    audio = decode(name)
    duration = len(audio) / 16000.0
    segments = []
    if not guard.is_silence(audio):
        stream = guard.filter_segments(stt.transcribe(audio), audio, 16000, cfg.stt.no_speech_threshold)
        if show_progress and duration > 10:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            with Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                TimeRemainingColumn(), console=err, transient=True,
            ) as progress:
                task = progress.add_task(Path(name).name, total=duration)
                for seg in stream:
                    segments.append(seg)
                    progress.update(task, completed=min(seg.end, duration))
        else:
            segments = list(stream)
    elapsed = time.perf_counter() - started
    meta = {"source": name, "language": stt.info.language, "duration": duration, "model": stt.model_name}
    if output_dir is None:
        if count > 1:
            sys.stdout.write(f"==> {name} <==\n")
        for f in fmts:
            sys.stdout.write(formats.WRITERS[f](segments, **meta))
        sys.stdout.flush()
        if not segments:
            err.print(f"{name}: no speech found", style="yellow")
        return
    stem = stems[index] if stems else ("stdin" if name == "-" else Path(name).stem)
    written = []
    for f in fmts:
        target = output_dir / f"{stem}.{f}"
        write_text_atomic(target, formats.WRITERS[f](segments, **meta))
        written.append(str(target))
    note = "" if segments else " (no speech found)"
    err.print(f"{name}: {duration:.1f} s of audio in {elapsed:.1f} s → {', '.join(written)}{note}", markup=False)
