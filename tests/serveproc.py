"""`voicechat serve` as a real subprocess on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers import VOICECHAT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """Start `voicechat serve` with a config of its own; ``url`` once /readyz says ready."""

    def __init__(self, workdir: Path, *args: str, config: str = "", env: dict | None = None, ready_timeout: float = 180) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.workdir / "config.yaml"
        self.config.write_text(f"history:\n  path: {self.workdir / 'history.sqlite3'}\n{config}")
        self.args = args
        self.env = {**os.environ, "VOICECHAT_LLM_TEMPERATURE": "0", **(env or {})}
        self.ready_timeout = ready_timeout
        self.log = self.workdir / "serve.log"
        self.proc: subprocess.Popen | None = None
        self.readiness: list[int] = []  # /readyz statuses seen while starting

    def __enter__(self) -> ServeProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [VOICECHAT, "--config", str(self.config), "serve", "--port", str(self.port), *self.args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"voicechat serve exited with {self.proc.returncode}: {self.log_text()}")
            status = self.status("/readyz")
            if status is not None:
                self.readiness.append(status)
            if status == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"voicechat serve not ready after {self.ready_timeout} s: {self.log_text()}")

    def status(self, path: str, headers: dict | None = None) -> int | None:
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers or {}), timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def get_json(self, path: str, headers: dict | None = None) -> dict:
        with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers or {}), timeout=10) as r:
            return json.loads(r.read())

    def metrics(self, headers: dict | None = None) -> str:
        with urllib.request.urlopen(urllib.request.Request(self.url + "/metrics", headers=headers or {}), timeout=10) as r:
            return r.read().decode()

    def metric(self, name: str, headers: dict | None = None, **labels: str) -> float:
        """The value of one sample in /metrics (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        total = 0.0
        for line in self.metrics(headers).splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            base, _, rest = key.partition("{")
            if base == name and all(part in rest for part in want.split(",") if part):
                total += float(value)
        return total

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode
