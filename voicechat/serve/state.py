"""What one server process holds: the engines and tools (loaded once, shared), limits, live sessions, metrics."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Protocol

from voicechat.errors import VoicechatError
from voicechat.serve.admission import Admission
from voicechat.serve.metrics import Metrics

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.conversation.history import History, UnavailableHistory
    from voicechat.engines.smart_turn import SmartTurn
    from voicechat.serve.shared import CountedChat, SharedSTT, SharedTTS
    from voicechat.serve.wyoming import WyomingServer
    from voicechat.tools.box import ToolBox


class LiveConnection(Protocol):
    """A client connection the server counts as a session (a voice WebSocket, a Wyoming client)."""

    async def drain(self, timeout: float) -> None:
        """Finish what is under way within timeout seconds, taking nothing new."""


class ServerState:
    def __init__(self, cfg: Config, *, log: bool = True) -> None:
        self.cfg = cfg
        self.log = log and cfg.history.enabled  # keep voice sessions' turns in the history
        self._stt: SharedSTT | None = None
        self._llm: CountedChat | None = None
        self._tts: SharedTTS | None = None
        self.turn_model: SmartTurn | None = None
        self.tools: ToolBox | None = None  # the built-ins and MCP servers every voice session shares (tools.enabled)
        self.port: int | None = None  # the HTTP port bound, once it is
        self.wyoming: WyomingServer | None = None
        self.load_error: str | None = None
        self.notices: list[str] = []
        self.loaded = threading.Event()
        self.draining = False
        self.started = time.time()
        self.admission = Admission(cfg.serve.max_active, cfg.serve.max_queued, cfg.serve.request_timeout_s)
        self.sessions: dict[int, LiveConnection] = {}  # connection number -> live voice connection
        self._next = 0
        self._lock = threading.Lock()
        self._closed = False
        self.history: History | UnavailableHistory | None = None
        self.metrics = Metrics(
            lambda: self.admission.waiting, lambda: self.admission.active, lambda: len(self.sessions), lambda: 1.0 if self.ready else 0.0
        )

    # engines ---------------------------------------------------------------------------
    def load(self) -> None:
        """Load every engine once (called on a thread at start-up); readiness follows."""
        from voicechat import sentences
        from voicechat.engines.loading import load_all
        from voicechat.serve.shared import CountedChat, SharedSTT, SharedTTS

        try:
            stt, llm, tts, turn_model, why = load_all(self.cfg, also=sentences.warm_up)
            if why:
                self.notices.append(why)
            self._stt, self._tts = SharedSTT(stt), SharedTTS(tts)
            self._llm = CountedChat(llm, self.metrics.chat_tokens.inc)  # llama.cpp keeps its own lock for a whole reply
            self.turn_model = turn_model
            self._stt.warm_up()
            self._tts.warm_up()
            from voicechat.serve.tools import open_server_tools

            tools = open_server_tools(self.cfg, self._llm, self.notices.append)  # MCP servers start here, once
            with self._lock:
                closed = self._closed
                self.tools = None if closed else tools
            if closed and tools is not None:  # the server stopped while they started
                tools.close()
            if self.log:
                from voicechat.conversation.history import UnavailableHistory, history_target, open_history

                try:
                    self.history = open_history(self.cfg)
                except VoicechatError as e:
                    self.history = UnavailableHistory(history_target(self.cfg, redact=True), e.message, target=history_target(self.cfg))
                    self.notices.append(f"history unavailable ({e.message}); turns go to a recovery file")
        except VoicechatError as e:
            self.load_error = e.message
        except Exception as e:  # shown on /readyz and by the command, never a silent dead server
            self.load_error = f"{type(e).__name__}: {e}"
        finally:
            self.loaded.set()

    @property
    def stt(self) -> SharedSTT:
        if self._stt is None:
            raise VoicechatError("the engines are not loaded yet; wait until /readyz answers ready")
        return self._stt

    @property
    def llm(self) -> CountedChat:
        if self._llm is None:
            raise VoicechatError("the engines are not loaded yet; wait until /readyz answers ready")
        return self._llm

    @property
    def tts(self) -> SharedTTS:
        if self._tts is None:
            raise VoicechatError("the engines are not loaded yet; wait until /readyz answers ready")
        return self._tts

    @property
    def ready(self) -> bool:
        return self.loaded.is_set() and self.load_error is None and not self.draining

    def model_ids(self) -> dict[str, str]:
        """Model names as ids a client can send back (no spaces, no "(bundled)")."""
        import re

        out = {}
        for kind, name in self.engine_names().items():
            name = name.replace("(bundled)", "").strip() or getattr(self.cfg, kind).engine  # (the config section named kind)
            out[kind] = re.sub(r"[^A-Za-z0-9._:/-]+", "-", name).strip("-").lower()
        return out

    def engine_names(self) -> dict[str, str]:
        return {
            "stt": self._stt.model_name if self._stt else "",
            "llm": self._llm.model_name if self._llm else "",
            "tts": self._tts.model_name if self._tts else "",
        }

    # sessions --------------------------------------------------------------------------
    def add_session(self, conn: LiveConnection) -> int | None:
        """Register a voice connection; None when the limit is reached."""
        with self._lock:
            if len(self.sessions) >= self.cfg.serve.max_sessions:
                return None
            self._next += 1
            self.sessions[self._next] = conn
            return self._next

    def remove_session(self, number: int) -> None:
        with self._lock:
            self.sessions.pop(number, None)

    def close(self) -> None:
        self.admission.close()
        with self._lock:
            self._closed, tools, self.tools = True, self.tools, None
        if tools is not None:  # the MCP servers stop with the server
            tools.close()
        for engine in (self._stt, self._llm, self._tts):
            if engine is not None:
                try:
                    engine.close()
                except Exception:
                    pass
        if self.history is not None:
            self.history.close()
