"""HAProxy on loopback in front of `voicechat serve` replicas, configured from deploy/haproxy.cfg (the
README's example) with only the ports changed."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers import ROOT
from tests.serveproc import free_port

EXAMPLE = ROOT / "deploy" / "haproxy.cfg"


def render(ports: list[int], listen: int, stats: int | None = None) -> str:
    """The example with our ports: the bind line and one server line per replica."""
    text = EXAMPLE.read_text()
    text = re.sub(r"(?m)^(\s*)bind :\d+", rf"\g<1>bind 127.0.0.1:{listen}", text)
    text = text.replace("global\n", "global\n    log stdout format raw local0 info\n", 1)  # a log for when a test fails
    if stats is not None:  # where the tests ask which replicas the balancer counts as up
        text = text.replace(
            "frontend voicechat\n",
            f"frontend stats\n    bind 127.0.0.1:{stats}\n    stats enable\n    stats uri /stats\n\nfrontend voicechat\n",
            1,
        )
    text = text.replace("defaults\n", "defaults\n    log global\n    option httplog\n", 1)
    head, servers = text.split("    server replica1", 1)[0], ""
    for n, port in enumerate(ports, 1):
        servers += f"    server replica{n} 127.0.0.1:{port} check\n"
    return head + servers


class Balancer:
    def __init__(self, workdir: Path, ports: list[int]) -> None:
        self.workdir = Path(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.workdir / "haproxy.cfg"
        self.stats = free_port()
        self.config.write_text(render(ports, self.port, self.stats))
        self.log = self.workdir / "haproxy.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Balancer:
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.config)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"haproxy did not answer: {self.log.read_text()}")

    def up(self) -> list[str]:
        """The replicas the balancer sends traffic to now (its health checks passed)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats}/stats;csv", timeout=5) as r:
            data = r.read().decode()
        rows = [line.split(",") for line in data.splitlines() if line and not line.startswith("#")]
        return [r[1] for r in rows if r[0] == "replicas" and r[1].startswith("replica") and r[17] == "UP"]

    def wait_up(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.up()) < count:
            assert time.monotonic() < deadline, f"the balancer sees {self.up()} up"
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
