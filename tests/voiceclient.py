"""A small client of the voice WebSocket (what a program would write), for tests and benchmarks."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.events import Events


def key_protocols(key: str | None) -> list[str]:
    protocols = ["voicechat"]
    if key:
        protocols.append("voicechat.key." + base64.urlsafe_b64encode(key.encode()).decode().rstrip("="))
    return protocols


class VoiceClient:
    """Connects, reads events on a thread, confirms playback like a player that plays in real time
    (or at once with ``instant=True``), and streams PCM up."""

    def __init__(self, url: str, *, key: str | None = None, query: str = "", instant: bool = True, headers: dict | None = None) -> None:
        from websockets.sync.client import connect

        ws_url = url.replace("http://", "ws://") + "/v1/voice" + (f"?{query}" if query else "")
        self.ws = connect(ws_url, subprotocols=key_protocols(key), additional_headers=headers, max_size=1 << 22, open_timeout=20)
        self.ws.__enter__()
        self.instant = instant
        self._log = Events()
        self.events: list[dict[str, Any]] = self._log.items
        self.audio: dict[int, list[np.ndarray]] = {}
        self.audio_at: list[float] = []  # when each audio message arrived
        self.rate = 22050
        self._header: dict | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self.ws:
                if isinstance(message, bytes):
                    header, self._header = self._header, None
                    if header is not None:
                        pcm = np.frombuffer(message, dtype="<i2").astype(np.float32) / 32768.0
                        self.rate = header["sample_rate"]
                        self.audio.setdefault(header["reply"], []).append(pcm)
                        self.audio_at.append(time.perf_counter())
                    continue
                doc = json.loads(message)
                if doc["type"] == "audio":
                    self._header = doc
                elif doc["type"] == "audio_end" and self.instant:
                    seconds = sum(len(a) for a in self.audio.get(doc["reply"], [])) / self.rate
                    self.send({"type": "played", "reply": doc["reply"], "seconds": seconds, "done": True})
                self._log.add(doc)
        except Exception:
            pass
        finally:
            rcvd = getattr(self.ws.protocol, "close_rcvd", None)
            if rcvd is not None:
                self.close_code, self.close_reason = rcvd.code, rcvd.reason
            self._log.end()

    def send(self, message: dict | bytes) -> None:
        try:
            self.ws.send(message if isinstance(message, bytes) else json.dumps(message))
        except Exception:
            pass

    def send_raw(self, text: str) -> None:
        self.ws.send(text)

    def stream(self, audio: np.ndarray, *, realtime: bool = True, block_ms: int = 20) -> None:
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        step = 16000 * 2 * block_ms // 1000
        start = time.perf_counter()
        for n, i in enumerate(range(0, len(pcm), step)):
            self.send(pcm[i : i + step])
            if realtime:
                wait = start + (n + 1) * block_ms / 1000 - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 120, after: dict | None = None) -> dict:
        """The first event matching predicate (after the given event, if any)."""
        return self._log.wait_for(
            predicate, timeout, after, why=lambda: f"close {self.close_code} {self.close_reason!r}; events: {self.events}"
        )

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def reply_audio(self, reply: int) -> np.ndarray:
        parts = self.audio.get(reply, [])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def closed(self, timeout: float = 30) -> int | None:
        self._thread.join(timeout)
        return self.close_code

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        self._thread.join(5)
