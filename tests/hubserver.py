"""A Hugging Face Hub on loopback: the endpoints huggingface_hub 2.4 uses to download, serving real files.

    with HubServer() as hub:                       # http://127.0.0.1:PORT, for HF_ENDPOINT
        hub.add("Systran/faster-whisper-base.en", {"model.bin": Path(...), "config.json": b"..."})
        hub.faults["Systran/faster-whisper-base.en/model.bin"] = [("drop", 1 << 20), ("status", 500)]

Answers:
  GET  /api/models/{owner}/{repo}[/revision/{rev}]   the repo's commit and siblings (size, blobId, lfs.sha256)
  HEAD /{owner}/{repo}/resolve/{rev}/{path}           X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size
  GET  the same                                       the bytes; ``Range: bytes=N-`` gets 206 from N
Files of 1 KB or more are "LFS" files (sha256 in the metadata and the ETag); smaller ones carry their git
blob id, as on the Hub. ``token`` makes every request need ``Authorization: Bearer <token>`` (else 401).
Faults, consumed one per GET of that file, in order: ``("drop", n)`` sends n bytes then closes the
connection, ``("status", code)`` answers with that status, ``("corrupt",)`` flips one byte of the body.
``requests`` records (method, path, Range header) of every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_FROM = 1024


class _File:
    def __init__(self, content: bytes | Path) -> None:
        self.content = content
        self.size = content.stat().st_size if isinstance(content, Path) else len(content)
        h, g = hashlib.sha256(), hashlib.sha1(f"blob {self.size}\0".encode())
        for block in self.blocks(0):
            h.update(block)
            g.update(block)
        self.sha256, self.blob = h.hexdigest(), g.hexdigest()

    @property
    def lfs(self) -> bool:
        return self.size >= LFS_FROM

    def blocks(self, start: int):
        if isinstance(self.content, bytes):
            yield self.content[start:]
            return
        with open(self.content, "rb") as f:
            f.seek(start)
            while block := f.read(1 << 20):
                yield block


class HubServer:
    def __init__(self, token: str | None = None) -> None:
        self.repos: dict[str, dict[str, _File]] = {}
        self.commits: dict[str, str] = {}
        self.faults: dict[str, list[tuple]] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.token = token
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hubserver", daemon=True)

    def add(self, repo: str, files: dict[str, bytes | Path]) -> None:
        self.repos[repo] = {name: _File(content) for name, content in files.items()}
        self.commits[repo] = hashlib.sha1(repo.encode()).hexdigest()

    def gets(self, repo_file: str) -> list[str]:
        """The Range headers of the GETs of one file ("" for none)."""
        return [
            r
            for m, p, r in self.requests
            if m == "GET" and p.endswith("/resolve/" + self.commits[repo_file.rsplit("/", 1)[0]] + "/" + repo_file.rsplit("/", 1)[1])
        ]

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _fault(self, key: str) -> tuple | None:
        with self._lock:
            queue = self.faults.get(key)
            return queue.pop(0) if queue else None

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str) -> None:
                self._send(status, json.dumps({"error": code}).encode(), {"Content-Type": "application/json", "X-Error-Code": code})

            def _route(self) -> None:
                path = unquote(urlparse(self.path).path)
                with hub._lock:
                    hub.requests.append((self.command, path, self.headers.get("Range", "")))
                if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self._error(401, "RepoNotFound")
                if path.startswith("/api/models/"):
                    return self._info(path[len("/api/models/") :])
                parts = path.strip("/").split("/")
                if len(parts) >= 5 and parts[2] == "resolve":
                    return self._file("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
                return self._error(404, "EntryNotFound")

            def _info(self, rest: str) -> None:
                repo, _, revision = rest.partition("/revision/")
                if repo not in hub.repos:
                    return self._error(404, "RepoNotFound")
                commit = hub.commits[repo]
                if revision and revision not in ("main", commit):
                    return self._error(404, "RevisionNotFound")
                siblings = []
                for name, f in hub.repos[repo].items():
                    item: dict = {"rfilename": name, "size": f.size, "blobId": f.blob}
                    if f.lfs:
                        item["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
                    siblings.append(item)
                body = {"id": repo, "modelId": repo, "sha": commit, "private": False, "siblings": siblings}
                self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

            def _file(self, repo: str, revision: str, name: str) -> None:
                f = hub.repos.get(repo, {}).get(name)
                if f is None or revision not in ("main", hub.commits[repo]):
                    return self._error(404, "EntryNotFound")
                etag = f'"{f.sha256 if f.lfs else f.blob}"'
                headers = {"X-Repo-Commit": hub.commits[repo], "ETag": etag, "Accept-Ranges": "bytes"}
                if f.lfs:
                    headers |= {"X-Linked-Etag": etag, "X-Linked-Size": f.size}
                if self.command == "HEAD":
                    self.send_response(200)
                    for k, v in headers.items():
                        self.send_header(k, str(v))
                    self.send_header("Content-Length", str(f.size))
                    self.end_headers()
                    return
                fault = hub._fault(f"{repo}/{name}")
                if fault and fault[0] == "status":
                    return self._error(fault[1], "Injected")
                start = 0
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():
                    start = int(rng[6:].split("-")[0])
                self.send_response(206 if start else 200)
                for k, v in headers.items():
                    self.send_header(k, str(v))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{f.size - 1}/{f.size}")
                self.send_header("Content-Length", str(f.size - start))
                self.end_headers()
                budget = fault[1] if fault and fault[0] == "drop" else None
                corrupt = bool(fault and fault[0] == "corrupt")
                for block in f.blocks(start):
                    if corrupt and block:
                        block = bytes([block[0] ^ 0xFF]) + block[1:]
                        corrupt = False
                    if budget is not None:
                        block = block[:budget]
                        budget -= len(block)
                    self.wfile.write(block)
                    if budget == 0:
                        self.wfile.flush()
                        self.close_connection = True
                        import socket

                        self.connection.shutdown(socket.SHUT_RDWR)
                        return

            do_GET = do_HEAD = _route

        return Handler
