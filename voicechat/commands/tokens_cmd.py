"""`voicechat tokens`: token counts and cost estimates for texts, files or a logged session."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from voicechat.console import handle_errors

HELP = "Count tokens in text, files or stdin (tiktoken, offline; GGUF models with their own tokenizer), or per turn of a session."


def _inputs(items: list[str]) -> list[tuple[str, str]]:
    from voicechat.errors import VoicechatError

    if not items:
        if sys.stdin.isatty():
            raise VoicechatError("nothing to count; give text, files, - for stdin, or --session ID")
        items = ["-"]
    out = []
    for item in items:
        if item == "-":
            out.append(("stdin", sys.stdin.read()))
            continue
        path = Path(item)
        if path.is_dir():
            raise VoicechatError(f"{item}: is a directory; give files or text")
        if path.is_file():
            try:
                out.append((item, path.read_text(encoding="utf-8", errors="replace")))
            except OSError as e:
                raise VoicechatError(f"{item}: cannot read ({e.strerror})") from None
        else:
            out.append(("text", item))
    return out


@handle_errors
def tokens(
    inputs: Annotated[Optional[List[str]], typer.Argument(help="Text, files, or - for stdin.", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name (picks the encoding and price) or a .gguf path.")] = None,
    encoding: Annotated[Optional[str], typer.Option("--encoding", "-e", help="o200k_base or cl100k_base.")] = None,
    session: Annotated[Optional[int], typer.Option("--session", help="Report a logged conversation turn by turn.")] = None,
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
        counts, enc_name = _gguf_counts(model, [t for _, t in items]), f"{Path(model).name} tokenizer"
    else:
        if encoding:
            enc_name = encoding
        else:
            enc_name, note = tk.encoding_for_model(model)
        counts = tk.count_many([t for _, t in items], enc_name)
    total = sum(counts)
    price = tk.price(model, cfg.prices) if model else None
    cost = total * price[0] / 1_000_000 if price else None
    rows = [{"input": name, "characters": len(text), "tokens": n} for (name, text), n in zip(items, counts)]
    if json_out:
        typer.echo(json.dumps({"encoding": enc_name, "model": model, "inputs": rows, "total": total,
                               "input_cost_usd": cost, "note": note}, indent=2))
        return
    if note:
        err_console().print(f"note: {note}", style="yellow", markup=False)
    if len(rows) == 1 and not sys.stdout.isatty():
        typer.echo(str(total))
        return
    from rich.table import Table

    table = Table(title=f"tokens ({enc_name})", title_justify="left")
    table.add_column("input")
    table.add_column("characters", justify="right")
    table.add_column("tokens", justify="right")
    for r in rows:
        table.add_row(r["input"][:60], f"{r['characters']:,}", f"{r['tokens']:,}")
    if len(rows) > 1:
        table.add_row("[bold]total[/]", f"{sum(r['characters'] for r in rows):,}", f"[bold]{total:,}[/]")
    out_console().print(table)
    if cost is not None:
        out_console().print(f"estimated input cost for {model}: ${cost:.6f}")


def _gguf_counts(path: str, texts: list[str]) -> list[int]:
    import os

    from voicechat.errors import VoicechatError

    if not os.path.isfile(os.path.expanduser(path)):
        raise VoicechatError(f"GGUF model '{path}' not found; give the path of a .gguf file")
    import llama_cpp

    from voicechat.engines.llm_llama_cpp import _silence_llama_logs

    _silence_llama_logs()
    llm = llama_cpp.Llama(model_path=os.path.expanduser(path), vocab_only=True, verbose=False)
    try:
        return [len(llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)) for t in texts]
    finally:
        llm.close()


def _session_report(cfg, session_id: int, json_out: bool) -> None:
    from voicechat import tokens as tk
    from voicechat.history import open_history

    with open_history(cfg) as history:
        info = history.session(session_id)
        turns = history.turns(session_id)
    rows, running, running_cost, any_cost = [], 0, 0.0, False
    for i, t in enumerate(turns, 1):
        p, c = t.prompt_tokens or 0, t.completion_tokens or 0
        running += p + c
        cost = tk.cost(t.llm_model, p, c, cfg.prices)
        if cost is not None:
            any_cost = True
            running_cost += cost
        rows.append({"turn": i, "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c, "running_total": running,
                     "estimated": t.tokens_estimated, "cost_usd": cost, "user": t.user_text})
    if json_out:
        typer.echo(json.dumps({"session": session_id, "model": info["llm_model"], "turns": rows, "total_tokens": running,
                               "cost_usd": running_cost if any_cost else None}, indent=2))
        return
    from rich.table import Table

    from voicechat.console import out_console

    table = Table(title=f"session {session_id} · {info['llm_model'] or ''} · {info['started_at']}", title_justify="left")
    for col in ("turn", "prompt", "completion", "total", "running", "cost", "user said"):
        table.add_column(col, justify="left" if col == "user said" else "right")
    for r in rows:
        mark = "~" if r["estimated"] else ""
        table.add_row(str(r["turn"]), f"{mark}{r['prompt_tokens']}", f"{mark}{r['completion_tokens']}", f"{r['total_tokens']}",
                      f"{r['running_total']}", "-" if r["cost_usd"] is None else f"${r['cost_usd']:.5f}", r["user"][:40])
    console = out_console()
    console.print(table)
    console.print(f"total {running} tokens" + (f", ${running_cost:.5f}" if any_cost else ", cost n/a (local or unknown model)")
                  + ("  (~ = counted locally, not reported by the server)" if any(r["estimated"] for r in rows) else ""))
