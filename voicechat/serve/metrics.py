"""Prometheus metrics of one server: requests, errors, latencies, sessions, queue depth.

Each server has its own registry (no process-global state), exposed at /metrics. Labels are
route templates and status codes, never anything a client sent (no paths with ids, no keys).
"""

from __future__ import annotations

from collections.abc import Callable


class Metrics:
    def __init__(
        self, queue_depth: Callable[[], float], active: Callable[[], float], sessions: Callable[[], float], ready: Callable[[], float]
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        buckets = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
        self.requests = Counter("voicechat_requests", "HTTP requests answered", ["route", "status"], registry=self.registry)
        self.errors = Counter(
            "voicechat_request_errors", "HTTP requests answered with a status of 400 or more", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "voicechat_request_seconds",
            "Time to answer an HTTP request (to the end of its body)",
            ["route"],
            buckets=buckets,
            registry=self.registry,
        )
        self.first_byte = Histogram(
            "voicechat_first_byte_seconds", "Time to the first byte of a streamed body", ["route"], buckets=buckets, registry=self.registry
        )
        self.turns = Histogram(
            "voicechat_voice_turn_seconds",
            "Voice sessions: end of speech to the first reply audio sent",
            buckets=buckets,
            registry=self.registry,
        )
        self.chat_tokens = Counter(
            "voicechat_chat_tokens", "Reply pieces (tokens) written by the chat model, for every client", registry=self.registry
        )
        self.session_total = Counter("voicechat_voice_sessions", "Voice sessions opened", registry=self.registry)
        self.refused = Counter("voicechat_refused", "Requests and sessions refused for load (503)", ["what"], registry=self.registry)
        for name, doc, fn in (
            ("voicechat_queue_depth", "Requests waiting for an engine slot", queue_depth),
            ("voicechat_active_requests", "Requests doing engine work now", active),
            ("voicechat_active_sessions", "Live voice sessions", sessions),
            ("voicechat_ready", "1 once the engines are loaded and the server is not draining", ready),
        ):
            Gauge(name, doc, registry=self.registry).set_function(fn)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
