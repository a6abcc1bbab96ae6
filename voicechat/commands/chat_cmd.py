"""`voicechat chat`: a typed conversation with the same engines, memory and history as `talk`."""

from __future__ import annotations

import io
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from voicechat.console import handle_errors

if TYPE_CHECKING:
    from voicechat.conversation.chat import Conversation

HELP = "Chat by typing (or one message per stdin line when piped); replies stream as they are written."


MAX_LINE = 1 << 20  # bytes: a longer message fits no model's context, and must not fill memory


def _read_line(number: int) -> str | None:
    """One line of piped stdin; bytes that are not UTF-8 are replaced (and said), never fatal.

    A line longer than MAX_LINE is read through and refused (None), so memory stays
    bounded whatever comes in; the chat goes on with the next line and exits 1 at the end.
    """
    raw = sys.stdin.buffer.readline(MAX_LINE + 1)
    if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
        while True:
            rest = sys.stdin.buffer.readline(MAX_LINE)
            if not rest or rest.endswith(b"\n"):
                break
        sys.stderr.write(
            f"voicechat: error: stdin line {number} is longer than {MAX_LINE // (1 << 20)} MB and was skipped; "
            "no model takes a message that long: split it or send a shorter one\n"
        )
        return None
    text = raw.decode("utf-8", errors="replace")
    if "\ufffd" in text and "\ufffd".encode() not in raw:
        sys.stderr.write(f"voicechat: warning: stdin line {number} is not valid UTF-8; the bad bytes were replaced with U+FFFD\n")
    return text


@handle_errors
def chat(
    llm: Annotated[str | None, typer.Option("--llm", help="Chat engine: llama-cpp, openai, langchain.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="GGUF path, server model name, or provider:model.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="System prompt.")] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Keep this session out of the history.")] = False,
    resume: Annotated[int | None, typer.Option("--resume", help="Continue session ID with its memory.")] = None,
    cont: Annotated[bool, typer.Option("--continue", help="Continue the most recent session.")] = False,
    tools: Annotated[
        bool | None,
        typer.Option(
            "--tools/--no-tools", help="Let the model call tools (tools.enabled): date and time, calculator, Wikipedia, MCP servers."
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON event per line on stdout, as `talk --json` (user, reply_delta, tool_call, tool_result, reply, turn_stats, error).",
        ),
    ] = False,
    languages: Annotated[
        str | None,
        typer.Option(
            "--languages",
            help="The languages you write in, e.g. en,de,fr (listen.languages): each message is answered in the one its words are in.",
        ),
    ] = None,
) -> None:
    from voicechat import languages as langs
    from voicechat.console import debug_traceback, err_console, fail, load_config, out_console
    from voicechat.conversation import slash
    from voicechat.conversation.chat import Conversation, engines_info, open_tools, summary_line
    from voicechat.conversation.history import open_for_session
    from voicechat.engines import registry
    from voicechat.tools.base import call_line, result_line
    from voicechat.voice import events as ev

    cfg = load_config(
        {"llm.engine": llm, "llm.model": model, "llm.system_prompt": system, "tools.enabled": tools, "listen.languages": languages}
    )
    history, resume, log = open_for_session(cfg, no_log=no_log, resume=resume, cont=cont, kind="chat")
    engine = registry.create("llm", cfg)
    interactive = sys.stdin.isatty() and not json_out
    out, err = out_console(), err_console()
    emit = None
    if json_out:
        from voicechat.talk.render import JsonRenderer

        emit = JsonRenderer()
    try:
        toolbox = open_tools(cfg, engine, _warn)
    except BaseException:
        engine.close()
        raise
    if toolbox is not None and interactive:
        from voicechat.tools.confirm import PromptConfirmation

        toolbox.confirm = PromptConfirmation(lambda q: out.input(q, markup=False))
    session = Conversation(
        cfg, engine, kind="chat", log=log, resume=resume, engines=engines_info(cfg, llm=engine), history=history, tools=toolbox
    )
    session.on_notice = (lambda message: emit(ev.Notice(message))) if emit is not None else _note
    target = _Commands(session)
    declared = list(cfg.listen.languages)
    system_prompt, language = session.memory.system_prompt, None  # each message's language line goes after the prompt
    if interactive:
        note = f" · resumed session {resume} ({session.resumed_turns} turns)" if resume else ""
        err.print(f"[dim]{engine.model_name} · {' '.join(slash.names(target))} · Ctrl-D to end{note}[/]")
    failures = 0
    lines = 0
    if interactive and isinstance(sys.stdin, io.TextIOWrapper):  # (a test runner's stdin is another kind of stream)
        sys.stdin.reconfigure(errors="replace")  # a stray byte from the terminal must not end the chat
    try:
        while True:
            try:
                line = out.input("[bold cyan]you ›[/] ") if interactive else _read_line(lines + 1)
            except EOFError:
                break
            lines += 1
            if line is None:  # a line too long to send: refused, said, counted
                failures += 1
                continue
            if not interactive and line == "":
                break
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                outcome = slash.run(text, target)
                if outcome.quit:
                    break
                err.print(outcome.message, markup=False)
                continue
            started = time.perf_counter()
            language = langs.turn_language(text, declared, language)
            session.memory.system_prompt = langs.with_prompt_line(system_prompt, language, declared, cfg.llm.language_prompts)
            if interactive:
                out.print("[bold magenta]assistant ›[/] ", end="")
            if emit is not None:
                emit(ev.UserText(text, "typed", language))
            pieces = 0
            prefix_open = interactive  # "assistant ›" is on the line, waiting for the reply

            def show(delta: str) -> None:
                nonlocal pieces, prefix_open
                if emit is not None:
                    pieces += 1
                    emit(ev.ReplyDelta(delta))
                    return
                piece = delta if interactive else delta.replace("\n", " ")  # scripts: one reply per line
                if not pieces:
                    piece = piece.lstrip()
                    if not prefix_open and interactive and piece:
                        out.print("[bold magenta]assistant ›[/] ", end="")
                        prefix_open = True
                pieces += 1
                _write(piece)

            def on_tool(event) -> None:  # the live view shows each call and its result on stderr
                nonlocal prefix_open
                if event.phase == "slow":
                    return
                if emit is not None:
                    r = event.result
                    emit(ev.ToolCalled(event.name, event.arguments) if r is None else ev.ToolDone(r.name, r.text, r.error, r.seconds))
                    return
                if interactive:
                    if prefix_open and not pieces:  # noqa: B023 - this turn's count, read while the turn runs
                        # (the tool lines go where "assistant ›" was; it comes back with the words)
                        _write("\r\x1b[2K")
                        prefix_open = False
                    if event.phase == "call":
                        err.print(call_line(event.name, event.arguments), style="cyan", markup=False, highlight=False)
                    else:
                        r = event.result
                        err.print(
                            result_line(r.name, r.text, r.error, r.seconds),
                            style="bold red" if r.error else "dim",
                            markup=False,
                            highlight=False,
                        )
                elif event.phase == "result" and event.result.error:  # scripts: failures only, one line each
                    r = event.result
                    sys.stderr.write(f"voicechat: warning: {result_line(r.name, r.text, True, r.seconds)}\n")

            reply = session.stream_reply(text, show, on_tool=on_tool)
            if reply.keyboard and not interactive:
                raise KeyboardInterrupt
            if reply.error and emit is not None:
                emit(ev.Error(reply.error))
            if reply.failed:
                failures += 1
                if pieces and emit is None:
                    _write("\n")
                if reply.exception is not None:
                    debug_traceback(reply.exception)
                fail(reply.error or "no reply")
                continue
            if reply.error:  # the stream broke: the partial reply is finished on its line below, and kept
                failures += 1
                if reply.exception is not None:
                    debug_traceback(reply.exception)
                fail(reply.error)
            if emit is not None:
                emit(ev.ReplyDone(reply.text, reply.interrupted))
            else:
                _write("\n")
            if not reply.text and not reply.interrupted:
                sys.stderr.write(f"voicechat: warning: {session.empty_reply_note(text, reply.usage)}\n")
            latency = {"first_token": round(reply.first_token, 3)} if reply.first_token is not None else {}
            if reply.first_token is not None:
                session.totals.latencies.append(reply.first_token)
            session.record(
                text, reply.text, reply.usage, interrupted=reply.interrupted, latency=latency, tools=reply.tools, language=language
            )
            usage = reply.usage
            if emit is not None:
                from voicechat.voice.timing import TurnTiming

                emit(
                    ev.TurnStats(
                        TurnTiming(first_token=reply.first_token),
                        usage.prompt_tokens if usage else None,
                        usage.completion_tokens if usage else None,
                        bool(usage and usage.estimated),
                    )
                )
            if interactive and usage is not None:
                est = " est." if usage.estimated else ""
                err.print(
                    f"[dim]{usage.prompt_tokens} + {usage.completion_tokens} tokens{est} · first token {reply.first_token or 0:.2f} s · {time.perf_counter() - started:.1f} s[/]"
                )
    except KeyboardInterrupt:
        pass
    except _StdoutGone as e:  # `chat > file` on a full disk, or a reader that went away: one line, and stop
        from voicechat.outputs import stdout_failed

        raise stdout_failed(e.error) from None
    finally:
        if session.totals.turns and interactive:
            err.print(
                f"[dim]{summary_line(session.totals, 'first token')}"
                + (f" · session {session.session_id}" if session.session_id else "")
                + "[/]"
            )
        session.turnlog.close()  # turns no file could take are printed now, for the user to keep
        engine.close()
        if toolbox is not None:
            toolbox.close()
        if history is not None:
            history.close()
    if failures and not interactive:
        raise typer.Exit(1)


class _StdoutGone(Exception):
    """Stdout failed while a reply streamed: raised past the session's engine-error handling."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as e:
        raise _StdoutGone(e) from None


class _Commands:
    """What the shared slash commands act on in a typed chat."""

    modes = False

    def __init__(self, session: Conversation) -> None:
        self.session = session

    def clear(self) -> None:
        self.session.clear()

    def tokens_line(self) -> str:
        return self.session.tokens_line("first token")

    def toggle_mode(self) -> str:
        return ""


def _warn(message: str) -> None:
    sys.stderr.write(f"voicechat: warning: {message}\n")


def _note(message: str) -> None:
    sys.stderr.write(f"voicechat: note: {message}\n")
