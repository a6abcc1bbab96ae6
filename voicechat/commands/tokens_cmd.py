"""`voicechat tokens`: token counts and cost estimates for texts, files or a logged session."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from voicechat.console import handle_errors

HELP = "Count tokens in text, files or stdin (tiktoken, offline; GGUF models with their own tokenizer), or per turn of a session."


BLOCK = 1 << 20  # bytes read at a time: memory stays bounded whatever the input's size
SNIFF = 8192  # a NUL byte in the first bytes means a binary file
_PATHLIKE = re.compile(r"^(~|\.{1,2}/|/)|/|^[^\s]+\.[A-Za-z][A-Za-z0-9]{0,4}$")


@dataclass
class Input:
    name: str  # what the user gave: text is shown as "text"
    kind: str  # text | file | stdin
    value: str = ""  # the text itself (kind == text)
    characters: int = 0
    replaced: int = 0  # invalid UTF-8 sequences counted as U+FFFD


def _inputs(items: list[str]) -> list[Input]:
    """Classify every argument before anything is counted: text, a readable text file, or stdin."""
    from voicechat.errors import VoicechatError

    if not items:
        if sys.stdin.isatty():
            raise VoicechatError("nothing to count; give text, files, - for stdin, or --session ID")
        items = ["-"]
    if items.count("-") > 1:
        raise VoicechatError("stdin (-) can be given only once")
    out = []
    for item in items:
        if item == "-":
            out.append(Input("stdin", "stdin"))
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            raise VoicechatError(f"{item}: is a directory; give files or text")
        if path.exists():
            try:
                with path.open("rb") as f:
                    head = f.read(SNIFF)
            except OSError as e:
                raise VoicechatError(f"{item}: cannot read ({e.strerror}); check its permissions") from None
            _refuse_binary(item, head)
            out.append(Input(item, "file"))
        elif _PATHLIKE.search(item) and not any(c.isspace() for c in item):
            raise VoicechatError(f"{item}: no such file; give an existing file, or pipe the text in to count it as text")
        else:
            out.append(Input("text", "text", value=item))
    return out


def _refuse_binary(name: str, head: bytes) -> None:
    from voicechat.errors import VoicechatError

    if b"\0" in head:
        raise VoicechatError(f"{name}: a binary file (it holds NUL bytes), not text; give a text file")


def _blocks(item: Input) -> Iterator[str]:
    """The input's text in blocks, decoded as UTF-8 (invalid bytes become U+FFFD and are counted)."""
    import codecs

    from voicechat.errors import VoicechatError

    if item.kind == "text":
        item.characters = len(item.value)
        yield item.value
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    f = sys.stdin.buffer if item.kind == "stdin" else open(Path(item.name).expanduser(), "rb")
    first = True
    try:
        while True:
            try:
                data = f.read(BLOCK)
            except OSError as e:
                raise VoicechatError(f"{item.name}: cannot read ({e.strerror})") from None
            if first:
                _refuse_binary(item.name, data[:SNIFF])
                first = False
            text = decoder.decode(data, final=not data)
            if text:
                item.characters += len(text)
                item.replaced += text.count("\ufffd")
                yield text
            if not data:
                return
    finally:
        if f is not sys.stdin.buffer:
            f.close()


@handle_errors
def tokens(
    inputs: Annotated[list[str] | None, typer.Argument(help="Text, files, or - for stdin.", show_default=False)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name (picks the encoding and price) or a .gguf path.")] = None,
    encoding: Annotated[str | None, typer.Option("--encoding", "-e", help="o200k_base or cl100k_base.")] = None,
    session: Annotated[int | None, typer.Option("--session", help="Report a logged conversation turn by turn.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    from voicechat import tokens as tk
    from voicechat.console import err_console, load_config, out_console
    from voicechat.errors import VoicechatError

    if model and encoding:
        raise VoicechatError("give --model or --encoding, not both")
    cfg = load_config()
    if session is not None:
        if inputs:
            raise VoicechatError("--session reports a logged conversation; give no text or files with it")
        return _session_report(cfg, session, json_out)
    items = _inputs(inputs or [])
    note = None
    if model and model.endswith(".gguf"):
        encode, enc_name = _gguf_encoder(model), f"{Path(model).name} tokenizer"
    else:
        if encoding:
            enc_name = encoding
        else:
            enc_name, note = tk.encoding_for_model(model)
        tk.get_encoding(enc_name)  # an unknown encoding fails before any input is read
        encode = None
    try:
        counts = [tk.count_stream(_blocks(item), enc_name, encode=encode) for item in items]
    finally:
        if encode is not None:
            encode.close()
    for item in items:
        if item.replaced:
            err_console().print(
                f"note: {item.name}: {item.replaced} invalid UTF-8 sequence(s) counted as U+FFFD", style="yellow", markup=False
            )
    total = sum(counts)
    price = tk.price(model, cfg.prices) if model else None
    cost = total * price[0] / 1_000_000 if price else None
    rows = [
        {"input": item.name, "kind": item.kind, "characters": item.characters, "tokens": n} for item, n in zip(items, counts, strict=True)
    ]
    from voicechat.outputs import emit

    if json_out:
        emit(
            json.dumps(
                {"encoding": enc_name, "model": model, "inputs": rows, "total": total, "input_cost_usd": cost, "note": note}, indent=2
            )
            + "\n"
        )
        return
    if note:
        err_console().print(f"note: {note}", style="yellow", markup=False)
    if len(rows) == 1 and not sys.stdout.isatty():
        emit(f"{total}\n")
        return
    from rich.table import Table

    table = Table(title=f"tokens ({enc_name})", title_justify="left")
    table.add_column("input")
    table.add_column("characters", justify="right")
    table.add_column("tokens", justify="right")
    from rich.text import Text

    from voicechat.escaping import terminal_text

    for item, n in zip(items, counts, strict=True):  # an input's name or text is shown as written, never read as markup
        table.add_row(Text(terminal_text(item.name[:60])), f"{item.characters:,}", f"{n:,}")
    if len(rows) > 1:
        table.add_row("[bold]total[/]", f"{sum(item.characters for item in items):,}", f"[bold]{total:,}[/]")
    out_console().print(table)
    if cost is not None:
        out_console().print(f"estimated input cost for {model}: ${cost:.6f}")


class _GGUFCounter:
    """A count function for :func:`voicechat.tokens.count_stream` using a GGUF's own tokenizer; close() frees it."""

    def __init__(self, llm: Any) -> None:  # (a llama_cpp.Llama loaded with vocab_only)
        self.llm = llm

    def __call__(self, pieces: list[str]) -> list[int]:
        return [len(self.llm.tokenize(p.encode("utf-8"), add_bos=False, special=False)) for p in pieces]

    def close(self) -> None:
        self.llm.close()


def _gguf_encoder(path: str) -> _GGUFCounter:
    """The GGUF's own tokenizer, as a count function."""
    import os

    from voicechat.engines.llm_llama_cpp import check_gguf
    from voicechat.errors import VoicechatError

    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise VoicechatError(f"GGUF model '{path}' not found; give the path of a .gguf file")
    check_gguf(path)
    import llama_cpp

    from voicechat.engines.llm_llama_cpp import _silence_llama_logs

    _silence_llama_logs()
    try:
        llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as e:
        raise VoicechatError(f"cannot load the tokenizer of '{path}' ({e}); is it a valid .gguf file?") from None

    return _GGUFCounter(llm)


def _session_report(cfg, session_id: int, json_out: bool) -> None:
    from voicechat import tokens as tk
    from voicechat.conversation.history import open_history

    with open_history(cfg) as history:
        info = history.session(session_id)
        turns = history.turns(session_id)
    rows: list[dict[str, Any]] = []  # one JSON object per turn
    running, running_cost, any_cost = 0, 0.0, False
    for i, t in enumerate(turns, 1):
        p, c = t.prompt_tokens or 0, t.completion_tokens or 0
        running += p + c
        cost = tk.cost(t.llm_model, p, c, cfg.prices)
        if cost is not None:
            any_cost = True
            running_cost += cost
        rows.append(
            {
                "turn": i,
                "prompt_tokens": p,
                "completion_tokens": c,
                "total_tokens": p + c,
                "running_total": running,
                "estimated": t.tokens_estimated,
                "cost_usd": cost,
                "user": t.user_text,
            }
        )
    if json_out:
        from voicechat.outputs import emit

        emit(
            json.dumps(
                {
                    "session": session_id,
                    "model": info["llm_model"],
                    "turns": rows,
                    "total_tokens": running,
                    "cost_usd": running_cost if any_cost else None,
                },
                indent=2,
            )
            + "\n"
        )
        return
    from rich.table import Table
    from rich.text import Text

    from voicechat.console import out_console
    from voicechat.escaping import terminal_text

    table = Table(
        title=Text(terminal_text(f"session {session_id} · {info['llm_model'] or ''} · {info['started_at']}")), title_justify="left"
    )
    for col in ("turn", "prompt", "completion", "total", "running", "cost", "user said"):
        table.add_column(col, justify="left" if col == "user said" else "right")
    for r in rows:
        mark = "~" if r["estimated"] else ""
        table.add_row(
            str(r["turn"]),
            f"{mark}{r['prompt_tokens']}",
            f"{mark}{r['completion_tokens']}",
            f"{r['total_tokens']}",
            f"{r['running_total']}",
            "-" if r["cost_usd"] is None else f"${r['cost_usd']:.5f}",
            Text(terminal_text(r["user"][:40])),
        )
    console = out_console()
    console.print(table)
    console.print(
        f"total {running} tokens"
        + (f", ${running_cost:.5f}" if any_cost else ", cost n/a (local or unknown model)")
        + ("  (~ = counted locally, not reported by the server)" if any(r["estimated"] for r in rows) else "")
    )
