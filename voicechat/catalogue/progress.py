"""A download progress bar on stderr (rich), fed by pull's ``progress(name, done, total)`` calls."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def bar() -> Iterator[Callable[[str, int, int], None]]:
    """Yield a progress callback; one bar per file, drawn on stderr (only where it is a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    console = Console(stderr=True)
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    tasks: dict[str, Any] = {}
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as shown:

        def report(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = shown.add_task(name, total=total)
            shown.update(tasks[name], completed=done, total=total)

        yield report
