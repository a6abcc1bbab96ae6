"""`voicechat chat`: a typed conversation with the same engines, memory and history as `talk`."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Optional

import typer

from voicechat.console import handle_errors

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
        sys.stderr.write(f"voicechat: error: stdin line {number} is longer than {MAX_LINE // (1 << 20)} MB and was skipped; "
                         "no model takes a message that long: split it or send a shorter one\n")
        return None
    text = raw.decode("utf-8", errors="replace")
    if "\ufffd" in text and "\ufffd".encode() not in raw:
        sys.stderr.write(f"voicechat: warning: stdin line {number} is not valid UTF-8; the bad bytes were replaced with U+FFFD\n")
    return text


def _warn_empty(text: str, usage, cfg) -> None:
    """An empty reply is kept as a turn, but never silently: the usual cause is a prompt too long."""
    prompt = f"{usage.prompt_tokens} prompt tokens" if usage is not None else f"{len(text.split())} words in the message"
    sys.stderr.write(
        f"voicechat: warning: the model returned an empty reply ({prompt}); the message probably does not fit "
        f"the model's context window (llm.context_size {cfg.llm.context_size} for llama-cpp, or the server's limit); "
        "send a shorter message\n"
    )


@handle_errors
def chat(
    llm: Annotated[Optional[str], typer.Option("--llm", help="Chat engine: llama-cpp, openai, langchain.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="GGUF path, server model name, or provider:model.")] = None,
    system: Annotated[Optional[str], typer.Option("--system", help="System prompt.")] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Keep this session out of the history.")] = False,
    resume: Annotated[Optional[int], typer.Option("--resume", help="Continue session ID with its memory.")] = None,
    cont: Annotated[bool, typer.Option("--continue", help="Continue the most recent session.")] = False,
) -> None:
    from voicechat.console import debug_traceback, err_console, fail, load_config, out_console
    from voicechat.engines import registry
    from voicechat.errors import StreamCut, VoicechatError
    from voicechat.history import open_for_session
    from voicechat.session import ChatSession, engines_info, summary_line

    cfg = load_config({"llm.engine": llm, "llm.model": model, "llm.system_prompt": system})
    history, resume, log = open_for_session(cfg, no_log=no_log, resume=resume, cont=cont, kind="chat")
    engine = registry.create("llm", cfg)
    session = ChatSession(cfg, engine, kind="chat", log=log, resume=resume, engines=engines_info(cfg, llm=engine), history=history)
    interactive = sys.stdin.isatty()
    out, err = out_console(), err_console()
    if interactive:
        note = f" · resumed session {resume} ({session.resumed_turns} turns)" if resume else ""
        err.print(f"[dim]{engine.model_name} · /clear /tokens /quit · Ctrl-D to end{note}[/]")
    failures = 0
    lines = 0
    if interactive and hasattr(sys.stdin, "reconfigure"):
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
                command = text.split()[0].lower()
                if command in ("/quit", "/exit"):
                    break
                if command == "/clear":
                    session.clear()
                    err.print("[dim]conversation cleared[/]")
                elif command == "/tokens":
                    err.print(summary_line(session.totals, "first token"))
                else:
                    err.print(f"unknown command {command}; use /clear, /tokens or /quit", markup=False)
                continue
            started = time.perf_counter()
            first = None
            reply: list[str] = []
            usage = None
            interrupted = False
            if interactive:
                out.print("[bold magenta]assistant ›[/] ", end="")
            stream = session.ask(text)
            try:
                for event in stream:
                    if hasattr(event, "text"):
                        if first is None:
                            first = time.perf_counter() - started
                        piece = event.text if interactive else event.text.replace("\n", " ")  # scripts: one reply per line
                        if not reply:
                            piece = piece.lstrip()
                        reply.append(event.text)
                        sys.stdout.write(piece)
                        sys.stdout.flush()
                    else:
                        usage = event
            except KeyboardInterrupt:
                stream.close()
                interrupted = True
                if not interactive:
                    raise
            except StreamCut as e:
                interrupted = True  # the partial reply is finished on its line below, and kept
                failures += 1
                debug_traceback(e)
                fail(str(e))
            except VoicechatError as e:
                failures += 1
                if reply:
                    sys.stdout.write("\n")
                debug_traceback(e)
                fail(str(e))
                continue
            sys.stdout.write("\n")
            sys.stdout.flush()
            answer = "".join(reply).strip()
            if not answer and not interrupted:
                _warn_empty(text, usage, cfg)
            latency = {"first_token": round(first, 3)} if first is not None else {}
            if first is not None:
                session.totals.latencies.append(first)
            session.record(text, answer, usage, interrupted=interrupted, latency=latency)
            if interactive and usage is not None:
                est = " est." if usage.estimated else ""
                err.print(f"[dim]{usage.prompt_tokens} + {usage.completion_tokens} tokens{est} · first token {first or 0:.2f} s · {time.perf_counter() - started:.1f} s[/]")
    except KeyboardInterrupt:
        pass
    finally:
        if session.totals.turns and interactive:
            err.print(f"[dim]{summary_line(session.totals, 'first token')}" + (f" · session {session.session_id}" if session.session_id else "") + "[/]")
        engine.close()
        if history is not None:
            history.close()
    if failures and not interactive:
        raise typer.Exit(1)
