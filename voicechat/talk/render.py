"""Show a voice session's events: a rich live view on a terminal, JSON lines with --json, plain lines otherwise."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from voicechat.tools.base import call_line, result_line
from voicechat.voice import events as ev
from voicechat.voice.timing import TurnTiming

STATE_STYLE = {
    "listening": ("green", "● listening"),
    "hearing": ("bold green", "● hearing you"),
    "thinking": ("yellow", "◌ thinking"),
    "speaking": ("magenta", "♪ speaking"),
    "recording": ("bold red", "● recording (space to stop)"),
    "idle": ("dim", "○ type a message"),
    "starting": ("dim", "◌ loading the models"),
    "asleep": ("dim", "☾ asleep (say the wake word)"),
}


def fmt_latency(t: TurnTiming) -> str:
    parts = []
    if t.endpoint is not None:
        parts.append(f"end of turn +{t.endpoint:.2f}s")
    if t.stt is not None:
        parts.append(f"transcript +{t.stt:.2f}s")
    if t.first_token is not None:
        parts.append(f"first token +{t.first_token:.2f}s")
    if t.first_audio is not None:
        parts.append(f"first audio at {t.first_audio:.2f}s")
    if t.voice_to_voice is not None:
        parts.append(f"voice-to-voice {t.voice_to_voice:.2f}s")
    return " → ".join(parts)


def summary_text(s: ev.Summary) -> str:
    parts = [f"{s.turns} turn{'s' if s.turns != 1 else ''}"]
    if s.p50 is not None:
        parts.append(f"voice-to-voice p50 {s.p50:.2f} s, p95 {s.p95:.2f} s")
    parts.append(f"tokens {s.prompt_tokens} in + {s.completion_tokens} out{' (estimated)' if s.estimated else ''}")
    parts.append(f"cost ${s.cost:.4f}" if s.cost is not None else "cost n/a (local model)")
    if s.session_id:
        parts.append(f"session {s.session_id}")
    return " · ".join(parts)


class JsonRenderer:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> JsonRenderer:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __call__(self, event: ev.Event) -> None:
        with self._lock:
            sys.stdout.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            sys.stdout.flush()

    def typing(self, text: str) -> None:
        pass


class PlainRenderer:
    """For pipes: one line per user turn and per reply; notices on stderr."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> PlainRenderer:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __call__(self, event: ev.Event) -> None:
        with self._lock:
            if isinstance(event, ev.UserText):
                print(f"you: {event.text}", flush=True)
            elif isinstance(event, ev.ReplyDone):
                print(f"assistant: {event.text}" + (" [interrupted]" if event.interrupted else ""), flush=True)
            elif isinstance(event, ev.TurnStats):
                print(f"  ({fmt_latency(event.timing)})", file=sys.stderr, flush=True)
            elif isinstance(event, (ev.Notice,)):
                print(event.message, file=sys.stderr, flush=True)
            elif isinstance(event, ev.ToolCalled):
                print(call_line(event.name, event.arguments), file=sys.stderr, flush=True)
            elif isinstance(event, ev.ToolDone):
                print(result_line(event.name, event.result, event.error, event.seconds), file=sys.stderr, flush=True)
            elif isinstance(event, ev.Error):
                print(f"voicechat: error: {event.message}", file=sys.stderr, flush=True)
            elif isinstance(event, ev.Summary):
                print(summary_text(event), file=sys.stderr, flush=True)

    def typing(self, text: str) -> None:
        pass


class LiveRenderer:
    """A rich Live area with the reply as it streams and a status line; finished turns scroll above it."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False)
        self.state = "starting"
        self.reply = ""
        self.typed = ""
        self.partial = ""
        self._lock = threading.Lock()
        self.live: Any = None

    def __enter__(self) -> LiveRenderer:
        from rich.live import Live

        self.live = Live(self._view(), console=self.console, refresh_per_second=12, transient=True)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _view(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        parts = []
        if self.partial:
            parts.append(Text.assemble(("you ", "bold cyan"), (self.partial, "dim")))
        if self.reply:
            parts.append(Text.assemble(("assistant ", "bold magenta"), self.reply))
        style, label = STATE_STYLE.get(self.state, ("dim", self.state))
        status = Text(label, style=style)
        status.append("   /clear /tokens /mode /quit · Ctrl-C ends", style="dim")
        if self.typed:
            status = Text.assemble(("you (typing) › ", "bold cyan"), self.typed)
        parts.append(status)
        return Group(*parts)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._view())

    def typing(self, text: str) -> None:
        with self._lock:
            self.typed = text
            self._refresh()

    def __call__(self, event: ev.Event) -> None:
        from rich.text import Text

        with self._lock:
            out = self.live.console if self.live is not None else self.console
            if isinstance(event, ev.Status):
                self.state = event.state
            elif isinstance(event, ev.Partial):
                self.partial = event.text
            elif isinstance(event, ev.Dropped):
                self.partial = ""
            elif isinstance(event, ev.UserText):
                self.typed = ""
                self.partial = ""
                out.print(Text.assemble(("you ", "bold cyan"), event.text))
            elif isinstance(event, ev.ReplyDelta):
                self.reply += event.text
            elif isinstance(event, ev.ReplyDone):
                cut = " [interrupted]" if event.interrupted else ""
                out.print(Text.assemble(("assistant ", "bold magenta"), event.text or self.reply.strip(), (cut, "yellow")))
                self.reply = ""
            elif isinstance(event, ev.TurnStats):
                tokens = ""
                if event.prompt_tokens is not None:
                    tokens = f" · {event.prompt_tokens}+{event.completion_tokens} tokens{' est.' if event.estimated else ''}"
                out.print(Text(f"  {fmt_latency(event.timing)}{tokens}", style="dim"))
            elif isinstance(event, ev.Notice):
                out.print(Text(event.message, style="dim italic"))
            elif isinstance(event, ev.ToolCalled):
                out.print(Text(call_line(event.name, event.arguments), style="cyan"))
            elif isinstance(event, ev.ToolDone):
                out.print(
                    Text(result_line(event.name, event.result, event.error, event.seconds), style="bold red" if event.error else "dim")
                )
            elif isinstance(event, ev.Error):
                out.print(Text(f"error: {event.message}", style="bold red"))
            elif isinstance(event, ev.Summary):
                out.print(Text(summary_text(event), style="bold"))
            self._refresh()
