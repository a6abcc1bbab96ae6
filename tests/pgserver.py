"""A real PostgreSQL for the tests: Debian's server binaries, a cluster in a temp directory, loopback TCP.

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to the
`postgres` user (created by Debian's package) and its commands run through `runuser`.
Each test gets a database of its own (:meth:`PostgresServer.new_database`).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.serveproc import free_port

PASSWORD = "pg-Secret-7d3a91c2e5"  # the role's password: a secret that must never show
USER = "voicechat"


def bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found; install Debian's `postgresql` package (scripts/setup.sh test)")
    return Path(found[-1]).parent


class PostgresServer:
    def __init__(self) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="voicechat-pg-"))  # not under pytest's root-only temp dir
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self._names = itertools.count(1)

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", "postgres", "--"] if self.as_root else []) + list(args)

    def _run(self, *args: str, input: str | None = None) -> str:
        result = subprocess.run(self._cmd(*args), capture_output=True, text=True, input=input, timeout=120)
        if result.returncode:
            raise RuntimeError(f"{args[0]} failed: {result.stderr or result.stdout}")
        return result.stdout

    def start(self) -> PostgresServer:
        self.socket_dir.mkdir(parents=True)
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        pwfile = self.root / "pw"
        pwfile.write_text("postgres-superuser\n")
        if self.as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        pwfile.unlink()
        opts = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.socket_dir} -c max_connections=60"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts, "-w", "-t", "60", "start")
        self.sql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}' CREATEDB")
        return self

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the unix socket."""
        return self._run(
            str(self.bin / "psql"),
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            statement,
        )

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database owned by the voicechat role; returns its URL."""
        name = f"vc{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} OWNER {USER}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
        except Exception:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
