"""Typed input during `talk`: lines (messages or /commands), and the push-to-talk key.

On a terminal, keys are read one by one in cbreak mode (Ctrl-C still interrupts), so
that the space bar can start and stop recording in push-to-talk mode while any other
key starts a typed line. Terminals report no key releases, so push-to-talk is
press-to-start, press-to-stop. Off a terminal (a pipe), whole lines are read.
The terminal's settings are restored when the reader stops.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any


class KeyboardInput:
    def __init__(
        self,
        on_line: Callable[[str], None],
        on_ptt_key: Callable[[], None],
        ptt_active: Callable[[], bool],
        on_buffer: Callable[[str], None] | None = None,
    ) -> None:
        self.on_line, self.on_ptt_key, self.ptt_active = on_line, on_ptt_key, ptt_active
        self.on_buffer = on_buffer or (lambda text: None)
        self.stop = threading.Event()
        self.tty = sys.stdin.isatty()
        self._saved: list[Any] | None = None  # the terminal's attributes (termios.tcgetattr) to restore
        self._thread = threading.Thread(target=self._run, name="talk-keyboard", daemon=True)

    def __enter__(self) -> KeyboardInput:
        if self.tty:
            import termios
            import tty

            fd = sys.stdin.fileno()
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=1)
        self.restore()

    @property
    def alive(self) -> bool:
        """Input may still come (a pipe has not reached its end)."""
        return self._thread.is_alive()

    def restore(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def _readable(self, fd: int) -> bool:
        try:
            return bool(select.select([fd], [], [], 0.1)[0])
        except (OSError, ValueError):
            return False

    def _run(self) -> None:
        try:
            fd = sys.stdin.fileno()
        except (OSError, ValueError):
            return
        buffer = ""
        pending = b""
        while not self.stop.is_set():
            if not self._readable(fd):
                continue
            try:
                data = os.read(fd, 1024)
            except OSError:  # the terminal went away: keep talking by voice
                return
            if not data:
                if buffer.strip():
                    self.on_line(buffer.strip())
                return  # end of input: keep talking by voice
            if not self.tty:
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        self.on_line(line.decode("utf-8", "replace").strip())
                continue
            for ch in data.decode("utf-8", "replace"):
                if ch == " " and not buffer and self.ptt_active():
                    self.on_ptt_key()
                elif ch in ("\r", "\n"):
                    if buffer.strip():
                        self.on_line(buffer.strip())
                    buffer = ""
                elif ch in ("\x7f", "\b"):
                    buffer = buffer[:-1]
                elif ch == "\x04":  # Ctrl-D
                    self.on_line("/quit")
                elif ch == "\x1b":
                    buffer = ""
                elif ch.isprintable():
                    buffer += ch
                self.on_buffer(buffer)
