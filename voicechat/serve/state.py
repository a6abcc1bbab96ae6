"""What one server process holds: the engines (loaded once, shared), limits, live sessions, metrics."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from voicechat.serve.admission import Admission
from voicechat.serve.metrics import Metrics

if TYPE_CHECKING:
    from voicechat.config import Config


class ServerState:
    def __init__(self, cfg: "Config", *, log: bool = True) -> None:
        self.cfg = cfg
        self.log = log and cfg.history.enabled  # keep voice sessions' turns in the history
        self.stt: Any = None
        self.llm: Any = None
        self.tts: Any = None
        self.turn_model: Any = None
        self.load_error: str | None = None
        self.notices: list[str] = []
        self.loaded = threading.Event()
        self.draining = False
        self.started = time.time()
        self.admission = Admission(cfg.serve.max_active, cfg.serve.max_queued, cfg.serve.request_timeout_s)
        self.sessions: dict[int, Any] = {}  # connection number -> live voice connection
        self._next = 0
        self._lock = threading.Lock()
        self.history: Any = None
        self.metrics = Metrics(lambda: self.admission.waiting, lambda: self.admission.active, lambda: len(self.sessions),
                               lambda: 1.0 if self.ready else 0.0)

    # engines ---------------------------------------------------------------------------
    def load(self) -> None:
        """Load every engine once (called on a thread at start-up); readiness follows."""
        from voicechat import sentences
        from voicechat.engines.loading import load_all
        from voicechat.errors import VoicechatError
        from voicechat.serve.shared import Counted, Shared

        try:
            stt, llm, tts, turn_model, why = load_all(self.cfg, also=sentences.warm_up)
            if why:
                self.notices.append(why)
            self.stt, self.tts = Shared(stt), Shared(tts)
            self.llm = Counted(llm, self.metrics.chat_tokens.inc)  # llama.cpp keeps its own lock for a whole reply
            self.turn_model = turn_model
            self.stt.warm_up()
            self.tts.warm_up()
            if self.log:
                from voicechat.conversation.history import UnavailableHistory, history_target, open_history

                try:
                    self.history = open_history(self.cfg)
                except VoicechatError as e:
                    self.history = UnavailableHistory(history_target(self.cfg, redact=True), e.message)
                    self.notices.append(f"history unavailable ({e.message}); turns go to a recovery file")
        except VoicechatError as e:
            self.load_error = e.message
        except Exception as e:  # shown on /readyz and by the command, never a silent dead server
            self.load_error = f"{type(e).__name__}: {e}"
        finally:
            self.loaded.set()

    @property
    def ready(self) -> bool:
        return self.loaded.is_set() and self.load_error is None and not self.draining

    def model_ids(self) -> dict[str, str]:
        """Model names as ids a client can send back (no spaces, no "(bundled)")."""
        import re

        out = {}
        for kind, name in self.engine_names().items():
            name = name.replace("(bundled)", "").strip() or getattr(self.cfg, kind).engine
            out[kind] = re.sub(r"[^A-Za-z0-9._:/-]+", "-", name).strip("-").lower()
        return out

    def engine_names(self) -> dict[str, str]:
        return {"stt": getattr(self.stt, "model_name", "") or "", "llm": getattr(self.llm, "model_name", "") or "",
                "tts": getattr(self.tts, "model_name", "") or ""}

    # sessions --------------------------------------------------------------------------
    def add_session(self, conn: Any) -> int | None:
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
        for engine in (self.stt, self.llm, self.tts):
            if engine is not None:
                try:
                    engine.close()
                except Exception:
                    pass
        if self.history is not None:
            self.history.close()
