"""`voicechat talk`: speak, and the assistant answers aloud, streaming end to end."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voicechat.commands import options
from voicechat.console import handle_errors

if TYPE_CHECKING:
    from voicechat.engines.base import ChatModel, SpeechToText, TextToSpeech
    from voicechat.engines.smart_turn import SmartTurn
    from voicechat.talk.render import JsonRenderer, LiveRenderer, PlainRenderer
    from voicechat.voice.io import LiveSession

HELP = "Talk with the assistant: it listens, answers aloud as it thinks, and shows the conversation live."
AUDIO = "Audio"
SESSION = "Session"


@handle_errors
def talk(
    stt: options.Stt = None,
    llm: options.Llm = None,
    tts: options.Tts = None,
    stt_model: options.SttModel = None,
    llm_model: options.LlmModel = None,
    voice: options.Voice = None,
    system: options.System = None,
    languages: options.Languages = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="vad (voice activity) or ptt (push-to-talk, space bar).", rich_help_panel=AUDIO)
    ] = None,
    barge_in: Annotated[
        bool | None, typer.Option("--barge-in/--no-barge-in", help="Speaking over the assistant stops it.", rich_help_panel=AUDIO)
    ] = None,
    aec: Annotated[
        bool | None,
        typer.Option(
            "--aec/--no-aec",
            help="Echo cancellation: the assistant's voice from the speaker is removed from the microphone (for --barge-in on loudspeakers).",
            rich_help_panel=AUDIO,
        ),
    ] = None,
    wake: Annotated[
        str | None,
        typer.Option(
            "--wake", help="Sleep until this wake word: alexa, hey_jarvis, hey_mycroft, hey_rhasspy, okay_nabu.", rich_help_panel=AUDIO
        ),
    ] = None,
    input_device: Annotated[
        str | None, typer.Option("--input-device", help="Microphone: index or name part.", rich_help_panel=AUDIO)
    ] = None,
    output_device: Annotated[
        str | None, typer.Option("--output-device", help="Speaker: index or name part.", rich_help_panel=AUDIO)
    ] = None,
    input_file: Annotated[Path | None, typer.Option("--input", help="Use an audio file as the microphone.", rich_help_panel=AUDIO)] = None,
    fast: Annotated[bool, typer.Option("--fast", help="With --input: do not pace the file in real time.", rich_help_panel=AUDIO)] = False,
    output_file: Annotated[
        Path | None, typer.Option("--output", help="Write the replies to a .wav/.flac/.ogg instead of the speaker.", rich_help_panel=AUDIO)
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON event per line on stdout instead of the live view.", rich_help_panel=SESSION)
    ] = False,
    no_log: Annotated[bool, typer.Option("--no-log", help="Keep this session out of the history.", rich_help_panel=SESSION)] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            help="Continue session ID with its memory (a number from `history list`; with --server, the id the server gave).",
            rich_help_panel=SESSION,
        ),
    ] = None,
    cont: Annotated[bool, typer.Option("--continue", help="Continue the most recent session.", rich_help_panel=SESSION)] = False,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Run the session on a `voicechat serve` at this URL; microphone and speaker stay here.",
            rich_help_panel=SESSION,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="The server's API key (or VOICECHAT_SERVE_API_KEY).", rich_help_panel=SESSION, show_default=False),
    ] = None,
    tools: Annotated[
        bool | None, typer.Option("--tools/--no-tools", help="Let the model call tools (tools.enabled).", rich_help_panel=SESSION)
    ] = None,
) -> None:
    from voicechat.console import load_config
    from voicechat.errors import VoicechatError, register_secret

    register_secret(api_key)
    cfg = load_config(
        {
            **options.engine_overrides(stt, llm, tts, stt_model, llm_model, voice, system),
            "listen.mode": mode,
            "listen.languages": languages,
            "listen.barge_in": barge_in,
            "audio.input_device": input_device,
            "audio.output_device": output_device,
            "audio.aec": aec,
            "listen.wake": wake,
            "serve.api_key": api_key,
            "tools.enabled": tools,
        }
    )
    if server is not None:
        engine_options = {
            "--stt": stt,
            "--llm": llm,
            "--tts": tts,
            "--stt-model": stt_model,
            "--llm-model": llm_model,
            "--voice": voice,
            "--system": system,
            "--languages": languages,
            "--tools": tools,
        }
        given = [name for name, value in engine_options.items() if value is not None]
        if given:
            raise VoicechatError(f"{given[0]} does not apply with --server: the server's engines answer; set it on `voicechat serve`")
        if cont:
            raise VoicechatError("--continue does not apply with --server; give --resume ID (the id the server reported)")
        if fast:
            raise VoicechatError("--fast does not apply with --server: the server listens in real time")
        if no_log:
            raise VoicechatError("--no-log does not apply with --server: the server keeps the history (start it with --no-log)")
        session_ref: Any = resume
    else:
        session_ref = _local_session(resume)
    if cfg.listen.mode not in ("vad", "ptt"):
        raise VoicechatError(f"--mode is '{cfg.listen.mode}'; use vad or ptt")
    if cfg.listen.mode == "ptt" and not sys.stdin.isatty():
        raise VoicechatError("push-to-talk needs a terminal for the space bar; use --mode vad")
    if cfg.listen.wake is not None:
        from voicechat.voice.wake import word_name

        cfg.listen.wake = word_name(cfg.listen.wake)
        if cfg.listen.mode != "vad":
            raise VoicechatError("--wake works with --mode vad")
    if fast and input_file is None:
        raise VoicechatError("--fast applies to --input FILE only")
    if output_file is not None:
        from voicechat.audiofile import check_output

        check_output(output_file)
    if input_file is not None:
        from voicechat.decode import decode

        decode(input_file)  # a bad file fails here, before the models load
    Talk(
        cfg,
        input_file=input_file,
        fast=fast,
        output_file=output_file,
        json_out=json_out,
        no_log=no_log,
        resume=session_ref,
        cont=cont,
        server=server,
        options={"barge_in": barge_in, "mode": mode},
    ).run()


class Talk:
    """The terminal front end of a :class:`voicechat.voice.session.VoiceSession`: devices, keyboard, live view."""

    def __init__(
        self,
        cfg: Any,
        *,
        input_file: Path | None,
        fast: bool,
        output_file: Path | None,
        json_out: bool,
        no_log: bool,
        resume: int | str | None,
        cont: bool,
        server: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.server, self.options = server, options or {}
        self.input_file, self.fast, self.output_file = input_file, fast, output_file
        self.json_out, self.no_log, self.resume, self.cont = json_out, no_log, resume, cont
        self.stop = threading.Event()
        self.interrupts = 0
        self._keyboard: Any = None

    def _renderer(self) -> JsonRenderer | LiveRenderer | PlainRenderer:
        from voicechat.talk import render

        if self.json_out:
            return render.JsonRenderer()
        if sys.stdout.isatty():
            return render.LiveRenderer()
        return render.PlainRenderer()

    def _load(self, renderer: Any) -> tuple[SpeechToText, ChatModel, TextToSpeech, SmartTurn | None]:
        """Load the three engines and the turn model at once (and PortAudio, and the sentence splitter) to start sooner."""
        from voicechat import sentences
        from voicechat.audio import sd
        from voicechat.engines.loading import load_all
        from voicechat.voice import events as ev

        def also() -> None:
            try:
                sd()
            except Exception:
                pass
            sentences.warm_up()

        stt, llm, tts, model, why = load_all(self.cfg, also=also)
        if why:
            renderer(ev.Notice(why))
        return stt, llm, tts, model

    def _open_source(self, renderer: Any, stack: Any) -> Any:
        from voicechat.errors import VoicechatError
        from voicechat.voice import events as ev
        from voicechat.voice.sources import FileSource, MicSource

        frame_ms = self.cfg.listen.frame_ms
        if self.input_file is not None:
            return stack.enter_context(FileSource(self.input_file, frame_ms, fast=self.fast))
        try:
            return stack.enter_context(MicSource(self.cfg.audio.input_device, frame_ms, self.cfg.audio.latency))
        except VoicechatError as e:
            if self.cfg.audio.input_device is not None:
                raise
            renderer(ev.Notice(f"no microphone ({e}); type your messages instead"))
            return None

    def _open_sink(self, renderer: Any, stack: Any, rate: int | None) -> Any:
        from voicechat.audio import Speaker, find_device
        from voicechat.errors import VoicechatError
        from voicechat.voice import events as ev
        from voicechat.voice.sinks import FileSink, SpeakerSink, TextSink

        if self.output_file is not None:
            from voicechat.audiofile import AudioFileWriter

            return FileSink(stack.enter_context(AudioFileWriter(self.output_file)))
        try:
            from voicechat.voice.echo import SPEAKER_LATENCY_S

            device = find_device(self.cfg.audio.output_device, "output")
            wants_aec = self._wants_aec()
            latency = SPEAKER_LATENCY_S if wants_aec else self.cfg.audio.latency  # no underruns: they move the echo
            return SpeakerSink(stack.enter_context(Speaker(device, latency=latency, sample_rate=rate)))
        except VoicechatError as e:
            if self.cfg.audio.output_device is not None:
                raise
            renderer(ev.Notice(f"no speaker ({e}); replies are printed only (use --output FILE to save them)"))
            return TextSink()

    def _wake_gate(self, renderer: Any, stack: Any) -> Any:
        if self.cfg.listen.wake is None:
            return None
        from voicechat.voice import events as ev
        from voicechat.voice.wake import WakeGate, WakeWord

        detector = WakeWord(self.cfg.listen.wake, self.cfg.listen.wake_threshold)
        stack.callback(detector.close)
        renderer(ev.Notice(f"asleep until the wake word '{detector.word.replace('_', ' ')}'"))
        return WakeGate(detector, self.cfg.listen.wake_stay_s)

    def _wants_aec(self) -> bool:
        """On when asked for, or by default with barge-in (the microphone listens while the speaker plays)."""
        aec = self.cfg.audio.aec
        return aec is True or (aec is None and self.cfg.listen.barge_in)

    def _cancel_echo(self, renderer: Any, source: Any, sink: Any) -> Any:
        """Put the echo canceller between the microphone and the listener, fed by the speaker, when it applies."""
        from voicechat.errors import VoicechatError
        from voicechat.voice import events as ev
        from voicechat.voice.echo import applies, attach

        if not applies(source, sink):
            if self.cfg.audio.aec:
                raise VoicechatError("--aec needs a microphone and a loudspeaker; drop --input/--output, or use --no-aec")
            return source
        if not self._wants_aec():
            return source
        cleaned = attach(source, sink, self.cfg.audio.aec_engine)
        renderer(ev.Notice(f"echo cancellation on ({cleaned.canceller.name})"))
        return cleaned

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.interrupts += 1
        if self.interrupts >= 2:
            if self._keyboard is not None:
                self._keyboard.restore()
            os._exit(130)  # a second Ctrl-C forces
        self.stop.set()

    def run(self) -> None:
        import contextlib

        from voicechat.conversation.chat import Conversation, engines_info, open_tools
        from voicechat.conversation.history import open_for_session
        from voicechat.errors import VoicechatError
        from voicechat.talk.keyboard import KeyboardInput
        from voicechat.voice import events as ev
        from voicechat.voice.session import VoiceSession

        cfg = self.cfg
        if self.server is not None:
            history, resume, log = None, None, False  # (the server resumes: self.resume is the id it reported)
        else:
            local = self.resume if isinstance(self.resume, int) else None  # (a local session is a number: _local_session)
            history, resume, log = open_for_session(cfg, no_log=self.no_log, resume=local, cont=self.cont, kind="talk")
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        previous_term = signal.signal(signal.SIGTERM, self._on_sigint)  # SIGTERM ends talk as Ctrl-C does: nothing lost
        stt = llm = tts = None
        session: LiveSession | None = None  # the conversation here, or on a server: one protocol
        toolbox = confirmation = None
        exit_code = 0
        try:
            with contextlib.ExitStack() as stack:
                renderer = self._renderer()
                stack.enter_context(renderer)
                if self.server is not None:
                    from voicechat.talk.remote import RemoteSession

                    source = self._open_source(renderer, stack)
                    sink = self._open_sink(renderer, stack, None)
                    session = RemoteSession(
                        self.server,
                        api_key=cfg.serve.api_key,
                        source=source,
                        sink=sink,
                        resume=None if self.resume is None else str(self.resume),
                        barge_in=self.options.get("barge_in"),
                        mode=self.options.get("mode"),
                        reconnect_s=cfg.serve.reconnect_s,
                    )
                else:
                    stt, llm, tts, turn_model = self._load(renderer)
                    toolbox = open_tools(cfg, llm, lambda message: renderer(ev.Notice(message)))
                    if toolbox is not None and _stdin_usable() and not self.json_out:
                        from voicechat.tools.confirm import TypedConfirmation

                        confirmation = TypedConfirmation(lambda message: renderer(ev.Notice(message)), self.stop)
                        toolbox.confirm = confirmation
                    chat = Conversation(
                        cfg,
                        llm,
                        kind="talk",
                        log=log,
                        resume=resume,
                        engines=engines_info(cfg, stt, llm, tts),
                        history=history,
                        tools=toolbox,
                    )
                    if resume is not None:
                        renderer(ev.Notice(f"resumed session {resume} ({chat.resumed_turns} turns)"))
                    source = self._open_source(renderer, stack)
                    if source is None:
                        cfg.listen.mode = "vad"
                    sink = self._open_sink(renderer, stack, tts.sample_rate)
                    source = self._cancel_echo(renderer, source, sink)
                    wake_gate = self._wake_gate(renderer, stack) if source is not None else None
                    session = VoiceSession(
                        cfg,
                        conversation=chat,
                        stt=stt,
                        tts=tts,
                        source=source,
                        sink=sink,
                        turn_model=turn_model,
                        ptt_key=sys.stdin.isatty(),
                        wake=wake_gate,
                    )
                session.subscribe(renderer)
                session.warm_up()

                def on_line(line: str) -> None:
                    if confirmation is not None and confirmation.answer(line):
                        return  # the answer to a tool's question
                    if not line.startswith("/"):
                        session.send_text(line)
                        return
                    outcome = session.command(line)
                    if outcome.message:
                        renderer(ev.Notice(outcome.message))

                keyboard = KeyboardInput(on_line, session.toggle_recording, lambda: session.mode == "ptt", on_buffer=renderer.typing)
                stdin_usable = _stdin_usable()
                if stdin_usable:
                    self._keyboard = stack.enter_context(keyboard)
                session.start()
                if source is None and not stdin_usable:
                    raise VoicechatError(
                        "no microphone and no keyboard input: nothing to listen to; connect a microphone or use --input FILE"
                    )
                while not self.stop.wait(0.05):
                    if session.done:
                        break
                    if source is None and self._keyboard is not None and not self._keyboard.alive and session.idle:
                        break  # typed input only, and it has ended
                session.close()
                if session.errors:
                    exit_code = 1
                renderer(session.summary())
                lost = session.lost
                if lost:  # the server went away: one line, after the summary of what was done
                    raise VoicechatError(lost)
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)
            stopped = session.close(timeout=2) if session is not None else True
            if stopped:  # else a stage is still inside an engine: leave the engines to the process's exit
                for engine in (stt, llm, tts):
                    if engine is not None:
                        engine.close()
            if toolbox is not None:
                toolbox.close()
            if history is not None:
                history.close()
        if exit_code:
            raise typer.Exit(exit_code)


def _local_session(resume: str | None) -> int | None:
    """--resume without --server: a session number of the local history."""
    if resume is None:
        return None
    from voicechat.errors import VoicechatError

    value = resume.strip()
    if not value.isdigit() or len(value) > 18:
        raise VoicechatError(
            f"--resume '{resume[:40]}' is not a session number; see `voicechat history list` (a server's session id goes with --server URL)"
        )
    return int(value)


def _stdin_usable() -> bool:
    try:
        fd = sys.stdin.fileno()
        os.fstat(fd)
    except (OSError, ValueError, AttributeError):
        return False
    return True
