"""`voicechat models list | pull | import | export | rm | info`: the model catalogue and voicechat's model folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from voicechat.console import handle_errors

if TYPE_CHECKING:
    from voicechat.catalogue.entries import Entry
    from voicechat.catalogue.store import Store

app = typer.Typer(
    help="Find, download, import and export models: Whisper, Piper voices and chat GGUFs, by name.",
    no_args_is_help=True,
)

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


def _store() -> Store:
    from voicechat.catalogue.store import Store, models_dir
    from voicechat.console import load_config

    return Store(models_dir(load_config().models.dir))


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in ("stt", "llm", "tts"):
        raise typer.BadParameter(f"'{kind}' is not a kind; choose stt, llm or tts", param_hint="--kind")


def _row(entry: Entry, store: Store) -> dict[str, Any]:
    from voicechat.catalogue.resolve import bundled_path

    installed = store.get(entry.name, entry.kind)
    path: str | None = None
    if entry.bundled and entry.engine_name != "espeak":
        path = bundled_path(entry)
        status = "bundled" if path else f"bundled (package {entry.bundled} missing)"
    elif entry.engine_name == "espeak":
        status = "installed (espeak-ng)"
    elif installed is not None:
        status, path = "installed", str(installed.path)
    else:
        status = "available"
    return {
        "name": entry.name,
        "kind": entry.kind,
        "engine": entry.engine_name,
        "status": status,
        "size_mb": round(installed.size / 1e6) if installed else entry.size_mb,
        "memory_mb": entry.memory_mb,
        "languages": list(entry.languages),
        "quality": entry.quality,
        "licence": entry.licence,
        "repo": entry.repo,
        "files": list(entry.files),
        "group": entry.group,
        "tools": entry.tools,
        "speed": entry.speed,
        "notes": entry.notes,
        "path": path,
    }


def _rows(kind: str | None, language: str | None, only_installed: bool) -> list[dict[str, Any]]:
    from voicechat.catalogue import entries

    store = _store()
    listed = entries.catalogue(kind)
    rows = [_row(e, store) for e in listed]
    known = {(e.kind, e.name) for e in listed}
    for item in store.all(kind):  # hf: pulls and imports under their own names
        if (item.kind, item.name) not in known:
            entry = entries.Entry(item.name, item.kind, str(item.manifest.get("repo", "")), (), 0, 0, ("?",), "", "see its source")
            rows.append(_row(entry, store) | {"notes": f"{item.manifest.get('source', '')}ed"})
    if language:
        rows = [r for r in rows if entries.Entry("", r["kind"], "", (), 0, 0, tuple(r["languages"]), "", "").speaks(language)]
    if only_installed:
        rows = [r for r in rows if r["status"] != "available"]
    return rows


def _langs(langs: list[str]) -> str:
    if langs == ["*"]:
        return "multilingual"
    return ", ".join(langs) if len(langs) <= 4 else ", ".join(langs[:4]) + f" +{len(langs) - 4}"


@app.command("list")
@handle_errors
def list_(
    kind: str | None = typer.Option(None, "--kind", help="stt, llm or tts."),
    language: str | None = typer.Option(None, "--language", "-l", help="Only models for this language (de, de_DE, pt-BR)."),
    installed: bool = typer.Option(False, "--installed", help="Only bundled and installed models."),
    recommended: bool = typer.Option(False, "--recommended", help="What fits this machine for a live conversation, and why."),
    json_out: bool = JSON,
) -> None:
    """The catalogue: every model the local engines can use, with size, memory, languages, licence and status."""
    _check_kind(kind)
    if recommended:
        _recommended(language, json_out)
        return
    rows = _rows(kind, language, installed)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    from voicechat.console import out_console

    if not rows:
        typer.echo("no models match; see all with `voicechat models list`")
        return
    titles = {"stt": "speech to text (faster-whisper)", "llm": "chat models (llama.cpp GGUF)", "tts": "voices (piper, espeak)"}
    console = out_console()
    for k in ("stt", "llm", "tts"):
        mine = [r for r in rows if r["kind"] == k]
        if not mine:
            continue
        table = Table(title=titles[k], title_justify="left")
        table.add_column("name", no_wrap=True, min_width=max(len(r["name"]) for r in mine))  # names are copied: never cut
        for col in ("status", "size", "memory", "languages", "quality" if k != "llm" else "tools", "licence"):
            table.add_column(col)
        if k == "llm":
            table.add_column("needs")
        for r in mine:
            status = {"available": "[dim]available[/]", "installed": "[green]installed[/]", "bundled": "[cyan]bundled[/]"}.get(
                r["status"], r["status"]
            )
            cells = [
                escape(r["name"]),
                status,
                f"{r['size_mb']} MB" if r["size_mb"] else "-",
                f"{r['memory_mb']} MB" if r["memory_mb"] else "-",
                escape(_langs(r["languages"])),
                escape(r["tools"] if k == "llm" else r["quality"]),
                escape(r["licence"]),
            ]
            table.add_row(*cells, *([escape(r["group"])] if k == "llm" else []))
        console.print(table)
    typer.echo("Use a name with --stt-model, --llm-model or --voice; get one with `voicechat models pull NAME`.")


def _recommended(language: str | None, json_out: bool) -> None:
    from voicechat.catalogue import recommend
    from voicechat.console import load_config

    cfg = load_config()
    installed = {item.name for item in _store().all()}
    result = recommend.recommend(recommend.machine(), language or cfg.stt.language, installed)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    m = result["machine"]
    gpu = f"{m['gpu']} ({m['gpu_memory_mb']} MB)" if m["gpu"] else "no CUDA GPU"
    lines = [
        f"This machine: {m['cores']} cores, {m['ram_total_mb']} MB memory ({m['ram_available_mb']} MB available), {gpu}.",
        f"For a live conversation in '{result['language']}' the three models share {result['memory_budget_mb']} MB "
        "(available memory less 1 GB for the rest of the machine and 600 MB for voicechat itself).",
        "",
    ]
    option = {"stt": "--stt-model", "llm": "--llm-model", "tts": "--voice"}
    words = {"stt": "speech to text", "llm": "chat model", "tts": "voice"}
    pulls = []
    for p in result["picks"]:
        lines.append(f"{words[p['kind']]}: {p['name']} ({p['status']}, {p['size_mb']} MB on disk, ~{p['memory_mb']} MB loaded)")
        lines.append(f"  why: {p['why']}")
        lines.append(f"  speed: {p['estimate']}")
        if p["alternatives"]:
            lines.append(f"  larger, slower: {', '.join(p['alternatives'])}")
        if p["status"] == "to pull":
            pulls.append(p["name"])
    lines.append("")
    if pulls:
        lines.append(f"Get them: voicechat models pull {' '.join(pulls)}")
    lines.append("Use them: voicechat talk " + " ".join(f"{option[p['kind']]} {p['name']}" for p in result["picks"]))
    lines.append("Estimates are scaled from speeds measured for the bundled models; `voicechat models info NAME` shows a model's figures.")
    typer.echo("\n".join(lines))


@app.command("pull")
@handle_errors
def pull(
    names: list[str] = typer.Argument(
        ..., help="Catalogue names (small.en, de_DE-thorsten-medium, qwen2.5-1.5b-instruct) or hf:OWNER/REPO[:FILE]."
    ),
    force: bool = typer.Option(False, "--force", help="Download again even when installed."),
    json_out: bool = JSON,
) -> None:
    """Download models from the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE are honoured); resumes, checks sha256, installs whole."""
    from voicechat.catalogue import entries, progress
    from voicechat.catalogue.pull import pull as do_pull
    from voicechat.console import catch_sigterm

    catch_sigterm()
    chosen = [entries.lookup(n) for n in names]  # every name checked before any download
    store = _store()
    done = []
    for entry in chosen:
        if entry.bundled:  # nothing to download: say so, and go on with the others
            done.append({"name": entry.name, "kind": entry.kind, "path": None, "size": entry.size_mb * 10**6, "status": "bundled"})
            if not json_out:
                typer.echo(f"{entry.name}: bundled with voicechat (package {entry.bundled}); nothing to pull")
            continue
        before = store.get(entry.name, entry.kind)
        with progress.bar() as report:
            item = do_pull(entry, store, force=force, progress=report)
        state = "already installed" if before is not None and not force else "installed"
        done.append({"name": item.name, "kind": item.kind, "path": str(item.path), "size": item.size, "status": state})
        if not json_out:
            typer.echo(f"{item.name}: {state} ({item.size / 1e6:.0f} MB) at {item.path}")
    if json_out:
        typer.echo(json.dumps(done, indent=2))


@app.command("import")
@handle_errors
def import_(
    path: Path = typer.Argument(
        ..., help="An archive made by `models export`, a model folder, a .gguf, or a Piper .onnx (its .onnx.json beside it)."
    ),
    name: str | None = typer.Option(None, "--name", help="The name to install it under (default: from the file or folder name)."),
    json_out: bool = JSON,
) -> None:
    """Install models from files (for machines without network); checked and installed whole."""
    from voicechat.catalogue.archive import import_path
    from voicechat.console import catch_sigterm

    catch_sigterm()
    done = import_path(_store(), path, name)
    if json_out:
        typer.echo(json.dumps([{"name": m.name, "kind": m.kind, "path": str(m.path), "size": m.size} for m in done], indent=2))
        return
    for m in done:
        typer.echo(f"{m.name}: imported ({m.kind}, {m.size / 1e6:.0f} MB) at {m.path}")


@app.command("export")
@handle_errors
def export(
    names: list[str] = typer.Argument(..., help="Installed models to put in the archive."),
    output: Path = typer.Option(..., "--output", "-o", help="The archive file to write (a tar)."),
    json_out: bool = JSON,
) -> None:
    """Write installed models into one archive that `voicechat models import` takes on another machine."""
    from voicechat.catalogue.archive import export as do_export
    from voicechat.console import catch_sigterm

    catch_sigterm()
    models = do_export(_store(), names, output)
    if json_out:
        typer.echo(json.dumps({"output": str(output), "models": [m.name for m in models], "bytes": output.stat().st_size}, indent=2))
        return
    typer.echo(f"{output}: {len(models)} model(s), {output.stat().st_size / 1e6:.0f} MB")


@app.command("rm")
@handle_errors
def rm(name: str = typer.Argument(..., help="An installed model."), json_out: bool = JSON) -> None:
    """Delete an installed model."""
    from voicechat.catalogue import entries
    from voicechat.errors import VoicechatError

    entry = entries.find(name) if not name.startswith("hf:") else None
    if entry is not None and entry.bundled:
        raise VoicechatError(f"{name} is bundled with the package {entry.bundled}; remove it with pip, not here")
    gone = _store().remove(name)
    if json_out:
        typer.echo(json.dumps({"removed": gone.name, "bytes": gone.size}))
        return
    typer.echo(f"{gone.name}: removed ({gone.size / 1e6:.0f} MB freed)")


@app.command("info")
@handle_errors
def info(name: str = typer.Argument(..., help="A catalogue name or an installed model."), json_out: bool = JSON) -> None:
    """Everything known about one model: source, files, size, memory, languages, licence, speed, where it is installed."""
    from voicechat.catalogue import entries
    from voicechat.errors import VoicechatError

    store = _store()
    entry = entries.find(name)
    installed = store.get(name)
    if entry is None and installed is None:
        raise VoicechatError(f"'{name}' is neither in the catalogue nor installed; see `voicechat models list`")
    if entry is None:
        assert installed is not None
        entry = entries.Entry(
            installed.name, installed.kind, str(installed.manifest.get("repo", "")), (), 0, 0, ("?",), "", "see its source"
        )
    row = _row(entry, store)
    if installed is not None:
        row["installed"] = {k: installed.manifest.get(k) for k in ("source", "revision", "installed", "files")}
    option = {"stt": "--stt-model", "llm": "--llm-model", "tts": "--voice"}[entry.kind]
    row["use"] = f"voicechat talk {option} {entry.name}" + (" --tts espeak" if entry.engine_name == "espeak" else "")
    if json_out:
        typer.echo(json.dumps(row, indent=2))
        return
    for key, value in row.items():
        if value in (None, "", [], {}):
            continue
        if key == "installed":
            files = value.get("files") or {}
            value = f"{value.get('source')} {value.get('installed')}, revision {value.get('revision') or '-'}, " + ", ".join(
                f"{f} ({meta.get('size', 0) / 1e6:.1f} MB, sha256 {str(meta.get('sha256', ''))[:12]})" for f, meta in files.items()
            )
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        typer.echo(f"{key}: {value}")
