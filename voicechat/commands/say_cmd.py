"""`voicechat say`: speak text through the sound card (or into a file), sentence by sentence."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from voicechat.console import handle_errors

if TYPE_CHECKING:
    from voicechat.audio import Speaker
    from voicechat.audiofile import AudioFileWriter
    from voicechat.config import Config
    from voicechat.engines.base import TextToSpeech

HELP = "Speak text aloud (argument, - or piped stdin); playback starts with the first sentence. -o writes a file."


def _stdin_blocks() -> Iterator[str]:
    """Piped text as it arrives (not 4 KB at a time: a slow writer's first sentence plays at once).

    Bytes that are not UTF-8 are replaced, and said once, instead of ending the speech.
    """
    import codecs

    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text-only stdin (embedding, tests)
        while block := sys.stdin.read(4096):
            yield block
        return
    read = getattr(stream, "read1", stream.read)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    warned = False
    while True:
        data = read(65536)
        text = decoder.decode(data, final=not data)
        if "\ufffd" in text and not warned:
            warned = True
            sys.stderr.write("voicechat: warning: the text on stdin is not valid UTF-8; the bad bytes were replaced with U+FFFD\n")
        if text:
            yield text
        if not data:
            return


@handle_errors
def say(
    text: Annotated[str | None, typer.Argument(help="Text to speak; - or nothing reads stdin.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write .wav, .flac or .ogg instead of playing.")] = None,
    engine: Annotated[str | None, typer.Option("--engine", "-e", help="Text-to-speech engine (see `voicechat engines`).")] = None,
    voice: Annotated[
        str | None, typer.Option("--voice", "-v", help="Voice: piper .onnx path, espeak voice, coqui model, openai voice.")
    ] = None,
    speed: Annotated[float | None, typer.Option("--speed", "-s", min=0.1, max=10.0, help="1.0 normal, 1.5 faster.")] = None,
    output_device: Annotated[
        str | None, typer.Option("--output-device", "-d", help="Index or name part (see `voicechat devices`).")
    ] = None,
    language: Annotated[
        str | None,
        typer.Option(
            "--language",
            "-l",
            help="The text's language (de, fr, ...): its voice (tts.voices, else espeak-ng's) and its sentence rules.",
        ),
    ] = None,
    list_voices: Annotated[bool, typer.Option("--list-voices", help="List the engine's voices and exit.")] = False,
    stats: Annotated[bool, typer.Option("--stats", help="Print time to first audio and real-time factor on stderr.")] = False,
) -> None:
    from voicechat import sentences
    from voicechat.console import catch_sigterm, load_config
    from voicechat.engines import registry
    from voicechat.errors import VoicechatError

    catch_sigterm()  # -o: a SIGTERM removes the partial file and says so, as Ctrl-C does
    if language is not None:
        language = _language_code(language)
    cfg = load_config({"tts.engine": engine, "tts.voice": voice, "tts.speed": speed, "audio.output_device": output_device})
    registry.get("tts", cfg.tts.engine)  # unknown engine: fail before reading anything
    if list_voices:
        tts = registry.create("tts", cfg)
        for v in tts.voices():
            typer.echo(v)
        return
    if text is None and sys.stdin.isatty():
        raise VoicechatError("no text given; pass it as an argument or pipe it in (`echo hi | voicechat say`)")
    if text is not None and text != "" and text != "-" and not text.strip():
        raise VoicechatError("the text is empty (only whitespace); give something to say")
    if text == "":
        raise VoicechatError("the text is empty; give something to say")
    if output is not None:
        from voicechat.audiofile import check_output

        check_output(output)
    started = time.perf_counter()
    source = _stdin_blocks() if text in (None, "-") else iter([text])
    head: list[str] = []
    for block in source:  # read only until the first words: stdin may be long
        head.append(block)
        if block.strip():
            break
    if not any(b.strip() for b in head):
        raise VoicechatError("the text is empty; give something to say")

    def warm_up() -> None:  # the splitter and PortAudio load while the engine does
        try:
            sentences.warm_up()
            if output is None:
                from voicechat.audio import sd

                sd()
        except Exception:  # reported where it is used
            pass

    warm = threading.Thread(target=warm_up, name="warm-up")
    warm.start()
    try:
        tts = registry.create("tts", cfg)
        if language is not None and voice is None:  # (a voice given by name is the one wanted, whatever the language)
            tts = _voice_for(cfg, tts, language)
    finally:
        warm.join()  # PortAudio's start-up mutes stderr for a moment: print nothing before it ends
    loaded = time.perf_counter()
    pieces = sentences.chunks(itertools.chain(head, source), cfg.tts.first_chunk_words, language=language)
    first = next(pieces, None)
    if first is None:
        raise VoicechatError("nothing speakable in the text (no words or numbers); give some words")
    sink: AudioFileWriter | Speaker
    if output is not None:
        from voicechat.audiofile import AudioFileWriter

        sink = AudioFileWriter(output)
    else:
        from voicechat.audio import Speaker

        sink = Speaker(cfg.audio.output_device, latency=cfg.audio.latency, sample_rate=tts.sample_rate)
    spoken = 0.0
    try:
        with sink:
            for chunk in itertools.chain([first], pieces):
                for audio in tts.synthesize(chunk):
                    spoken += audio.duration
                    sink.play(audio)
            if spoken == 0.0:
                raise VoicechatError("nothing speakable in the text (no words or numbers); give some words")
    except (OSError, RuntimeError) as e:  # a full disk, a quota, an I/O error: the writer has removed its partial file
        if output is None or isinstance(e, VoicechatError):
            raise
        raise _write_error(output, e) from None
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the writer has removed its partial file; say so
        from voicechat.errors import Terminated

        if output is not None:
            how = "terminated" if isinstance(e, Terminated) else "interrupted"
            raise VoicechatError(
                f"{how} after {spoken:.1f} s of speech; {output} was not written (nothing partial left)",
                exit_code=143 if isinstance(e, Terminated) else 130,
            ) from None
        raise
    if output is not None:
        typer.echo(f"wrote {output} ({spoken:.1f} s)", err=True)
    if stats:
        first_audio = (sink.first_audio_at or loaded) - loaded
        total = time.perf_counter() - loaded
        typer.echo(
            f"engine load {loaded - started:.2f} s, first audio {first_audio:.3f} s after load, {spoken:.1f} s of speech, total {total:.2f} s",
            err=True,
        )


def _language_code(value: str) -> str:
    """--language as a base ISO 639 code ("de", "pt-BR" -> "pt"), or a one-line error."""
    import re

    from voicechat.errors import VoicechatError
    from voicechat.languages import base

    if not re.fullmatch(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?", value.strip()):
        raise VoicechatError(f"--language {value[:20]!r} is not a language code; give one such as de, fr or pt-BR")
    return base(value) or "en"


def _voice_for(cfg: Config, tts: TextToSpeech, language: str) -> TextToSpeech:
    """The voice for ``language`` (tts.voices, the configured voice when it speaks it, else espeak-ng's); a
    language without one is spoken by the configured voice, with a warning."""
    from voicechat.voice.language_voices import LanguageVoices

    choice = LanguageVoices(cfg, tts).choose(language)
    if choice is None:
        return tts
    if choice.notice:
        sys.stderr.write(f"voicechat: warning: {choice.notice}\n")
    if choice.engine is not tts:
        tts.close()  # (the configured voice is not used)
    return choice.engine


def _write_error(output: Path, e: Exception) -> Exception:
    """One line naming the output file for an OS error or libsndfile's (which hides ENOSPC in its own words)."""
    import errno

    from voicechat.errors import VoicechatError, file_error, no_room

    if isinstance(e, OSError):
        return file_error(output, e)
    if type(e).__module__ != "soundfile":
        return e
    if no_room(output):
        return file_error(output, OSError(errno.ENOSPC, "No space left on device"))
    return VoicechatError(f"cannot write {output}: {e}; check the disk and the path")
