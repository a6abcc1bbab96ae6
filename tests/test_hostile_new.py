"""The surfaces added for issues 23-25 under hostile use: `voicechat models` archives and pulls from a
hostile Hub, realtime client secrets, and the joined multilingual Whisper. Each row is one case; the
fast rows need no model or server, the pull rows run a small misbehaving Hub on loopback in this process."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from voicechat.catalogue import archive, entries, pull
from voicechat.catalogue.store import Store
from voicechat.errors import VoicechatError

# --- models import: archives that try to reach outside the models folder ------------------------------------------


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _index(name: str, kind: str, folder: str) -> tuple[str, bytes]:
    return archive.INDEX, json.dumps({"format": 1, "models": [{"name": name, "kind": kind, "folder": folder}]}).encode()


def _manifest(folder: str, files: dict) -> tuple[str, bytes]:
    return f"{folder}/voicechat-model.json", json.dumps({"name": "x", "kind": "llm", "files": files}).encode()


def _refused(store: Store, source: Path, *needles: str) -> None:
    with pytest.raises(VoicechatError) as e:
        archive.import_path(store, source)
    assert "\n" not in str(e.value)
    for needle in needles:
        assert needle in str(e.value), str(e.value)
    assert store.all() == []


@pytest.mark.fast
def test_import_archive_manifest_naming_a_file_outside_is_refused(tmp_path):
    """A manifest listing /abs/secret or ../secret would copy that local file into the models folder."""
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    store = Store(tmp_path / "models")
    for listed in (str(secret), "../../../secret.txt", "sub/m.gguf"):
        arc = _tar(
            tmp_path / "evil.tar",
            [_index("x", "llm", "llm/x"), _manifest("llm/x", {listed: {}, "m.gguf": {}}), ("llm/x/m.gguf", b"GGUF")],
        )
        _refused(store, arc, "outside the model's folder")
    assert not any(p.name == "secret.txt" for p in (tmp_path / "models").rglob("*"))


@pytest.mark.fast
def test_import_archive_index_folder_outside_is_refused(tmp_path):
    """The index's folder must be KIND/NAME inside the archive, not an absolute or ../ path to a local folder."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "voicechat-model.json").write_text(json.dumps({"files": {"a.gguf": {}}}))
    (outside / "a.gguf").write_text("a local file")
    store = Store(tmp_path / "models")
    for folder in (str(outside), "../../outside", "llm/../../outside", "tts/x"):
        _refused(store, _tar(tmp_path / "evil.tar", [_index("y", "llm", folder)]), "refusing")


@pytest.mark.fast
def test_import_folder_manifest_naming_a_file_outside_is_refused(tmp_path):
    secret = tmp_path / "secret.gguf"
    secret.write_text("private")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "voicechat-model.json").write_text(json.dumps({"name": "x", "kind": "llm", "files": {str(secret): {}}}))
    _refused(Store(tmp_path / "models"), folder, "outside the model's folder")


@pytest.mark.fast
def test_import_archive_links_devices_and_paths_are_refused(tmp_path):
    store = Store(tmp_path / "models")
    for kind, name, link in (
        (tarfile.SYMTYPE, "llm/x/m.gguf", "/etc/passwd"),
        (tarfile.LNKTYPE, "llm/x/m.gguf", "../../../etc/passwd"),
        (tarfile.CHRTYPE, "llm/x/m.gguf", ""),
        (tarfile.FIFOTYPE, "llm/x/m.gguf", ""),
        (tarfile.REGTYPE, "../../x.gguf", ""),
        (tarfile.REGTYPE, "/tmp/x.gguf", ""),
        (tarfile.REGTYPE, "llm/x/deeper/m.gguf", ""),
    ):
        path = tmp_path / "evil.tar"
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        _refused(store, path, "which an export never does")


@pytest.mark.fast
def test_import_archive_sparse_member_of_50_gb_is_refused_before_unpacking(tmp_path):
    """A 10 KB archive can declare a 50 GB sparse member; unpacked and copied it would fill the disk."""
    name, data = _index("z", "llm", "llm/z")
    index = tarfile.TarInfo(name)
    index.size = len(data)
    # an old-GNU sparse header (type S): no data stored, a real size of 50 GB
    header = bytearray(tarfile.TarInfo("llm/z/big.gguf").tobuf(format=tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[483:495] = b"%011o\0" % (50 << 30)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    path = tmp_path / "sparse.tar"
    path.write_bytes(index.tobuf(format=tarfile.GNU_FORMAT) + data.ljust(512, b"\0") + bytes(header) + b"\0" * 1024)
    with tarfile.open(path) as tar:
        assert [m.name for m in tar.getmembers() if m.issparse()] == ["llm/z/big.gguf"]
    _refused(Store(tmp_path / "models"), path, "which an export never does")


@pytest.mark.fast
def test_import_archive_larger_than_the_free_space_is_refused_before_unpacking(tmp_path, monkeypatch):
    store = Store(tmp_path / "models")
    arc = _tar(tmp_path / "a.tar", [_index("x", "llm", "llm/x"), ("llm/x/m.gguf", b"G" * 4096)])
    monkeypatch.setattr(archive, "free_bytes", lambda path: 1024)
    _refused(store, arc, "only 1 KB is free")
    assert not (store.root / ".staging" / "archive-a.tar").exists()


@pytest.mark.fast
def test_import_archive_with_a_broken_manifest_is_one_line(tmp_path):
    store = Store(tmp_path / "models")
    for manifest in (b"{not json", b"[1, 2]", json.dumps({"files": ["m.gguf"]}).encode()):
        arc = _tar(tmp_path / "b.tar", [_index("x", "llm", "llm/x"), ("llm/x/voicechat-model.json", manifest), ("llm/x/m.gguf", b"G")])
        _refused(store, arc, "export")


@pytest.mark.fast
def test_models_rm_and_info_names_with_slashes_dots_and_nul_touch_nothing(tmp_path):
    store = Store(tmp_path / "models")
    outside = tmp_path / "keep"
    outside.mkdir()
    for name in ("../..", "..", "/", "llm/../../keep", "../keep", "a\0b", "", "."):
        assert store.get(name) is None
        with pytest.raises(VoicechatError):
            store.remove(name)
        assert store.folder("llm", name).resolve().parent == (store.root / "llm").resolve()
    assert outside.is_dir()


# --- models pull: a hostile Hub -------------------------------------------------------------------------------------


@pytest.mark.fast
def test_pull_plan_refuses_hub_file_names_that_are_paths():
    """Sibling names a repository cannot hold ('..' parts, absolute, empty parts, our manifest's name) are refused
    before anything is downloaded; '*.gguf' and 'vocabulary.*' patterns would otherwise match them."""
    whisper = entries.lookup("base.en")
    chat = entries.lookup("hf:test/repo:m.gguf")

    def info(*names: str) -> SimpleNamespace:
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=n, size=10, lfs=None, blob_id="0" * 40) for n in names])

    for bad in ("vocabulary.a/..", "vocabulary.x/.", "vocabulary.txt/voicechat-model.json", "/vocabulary.txt", "a//vocabulary.txt"):
        with pytest.raises(VoicechatError, match="no repository holds"):
            pull.plan(whisper, info("model.bin", "config.json", bad))
    with pytest.raises(VoicechatError, match="no repository holds"):
        pull.plan(chat, info("../../m.gguf"))
    for size in (None, -1, "12", 1.5, True):  # a size that is not a byte count is refused, not a traceback later
        odd = info("model.bin", "config.json")
        odd.siblings[0].size = size
        with pytest.raises(VoicechatError, match="no usable size"):
            pull.plan(whisper, odd)
    assert [i["file"] for i in pull.plan(whisper, info("model.bin", "config.json", "vocabulary.txt"))] == [
        "model.bin",
        "config.json",
        "vocabulary.txt",
    ]


class _HostileHub:
    """A Hub on loopback whose metadata says one size and whose file body is longer (no Content-Length: it ends
    when the connection closes), the way a lying or endless server sends it."""

    def __init__(self, repo: str, name: str, size: int, sent: int) -> None:
        self.repo, self.name, self.size, self.sent = repo, name, size, sent
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/api/models/"):
                    body = json.dumps(
                        {
                            "id": hub.repo,
                            "sha": "a" * 40,
                            "modelId": hub.repo,
                            "private": False,
                            "siblings": [
                                {
                                    "rfilename": hub.name,
                                    "size": hub.size,
                                    "blobId": "b" * 40,
                                    "lfs": {"sha256": "0" * 64, "size": hub.size, "pointerSize": 134},
                                }
                            ],
                        }
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", "a" * 40)
                self.end_headers()
                left = hub.sent
                try:
                    while left > 0:
                        block = b"\0" * min(left, 1 << 16)
                        self.wfile.write(block)
                        left -= len(block)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _HostileHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_pull_body_longer_than_the_hub_size_is_cut_at_the_size(tmp_path, monkeypatch):
    """A server that sends more than the metadata's size (a lie, or an endless body) is stopped at the size: the disk
    never gets more, the partial file is deleted and the message says what happened."""
    entry = entries.lookup("hf:test/liar:m.gguf")
    with _HostileHub("test/liar", "m.gguf", 4096, 8 << 20) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        store = Store(tmp_path / "models")
        seen: list[int] = []
        with pytest.raises(VoicechatError, match="sent more of m.gguf") as e:
            pull.pull(entry, store, progress=lambda name, done, total: seen.append(done))
        assert "\n" not in str(e.value)
    assert [p for p in (tmp_path / "models").rglob("*") if p.is_file() and p.stat().st_size > 4096] == []
    assert store.all() == []


# --- the realtime routes on one real server ----------------------------------------------------------------------------

KEY = "hostile-new-key"
DEEP = "[" * 100_000 + "]" * 100_000  # deeper than Python's recursion limit: json.loads raises RecursionError


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.serveproc import ServeProcess

    home = tmp_path_factory.mktemp("hostile-new-home")
    env = {f"VOICECHAT_{n}_DIR": str(home / n.lower()) for n in ("CONFIG", "DATA", "CACHE")} | {"HF_HUB_OFFLINE": "1"}
    config = f"llm:\n  max_tokens: 16\nserve:\n  api_key: {KEY}\n  max_sessions: 2\n"
    with ServeProcess(tmp_path_factory.mktemp("hostile-new"), config=config, env=env) as server:
        yield server
    assert "Traceback" not in server.log_text(), server.log_text()
    assert KEY not in server.log_text()


def _post(server, path: str, body: bytes, content_type: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": content_type, "Authorization": f"Bearer {KEY}"}
    request = urllib.request.Request(server.url + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, {"text": r.read().decode()}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_deeply_nested_json_is_refused_as_bad_json_on_every_realtime_surface(served):
    """client_secrets answered 500 with a traceback in the log, and a /v1/realtime session was dropped, on JSON nested
    deeper than Python's recursion limit; now each is an ordinary refusal and the session goes on."""
    from websockets.sync.client import connect

    status, doc = _post(served, "/v1/realtime/client_secrets", DEEP.encode(), "application/json")
    assert status == 400 and "must be JSON" in doc["error"]["message"], doc
    boundary = "hostilenew"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="sdp"\r\n\r\nv=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="session"\r\n\r\n{"[" * 20_000 + "]" * 20_000}\r\n--{boundary}--\r\n'
    )
    status, doc = _post(served, "/v1/realtime/calls", form.encode(), f"multipart/form-data; boundary={boundary}")
    assert status == 400 and doc["error"]["param"] == "session", doc
    url = served.url.replace("http", "ws") + "/v1/realtime?model=x"
    with connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=60))["type"] == "session.created"
        ws.send(DEEP)
        error = json.loads(ws.recv(timeout=60))
        assert error["type"] == "error" and "JSON" in error["error"]["message"], error
        ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}}))
        assert json.loads(ws.recv(timeout=60))["type"] == "session.updated"


def test_deeply_nested_json_on_the_voice_websocket_is_refused_and_the_session_goes_on(served):
    """/v1/voice dropped the session with a traceback in the log on JSON nested deeper than the recursion limit."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = served.url.replace("http", "ws") + "/v1/voice"
    with connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}, subprotocols=["voicechat"], max_size=None) as ws:
        assert json.loads(ws.recv(timeout=60))["type"] == "session"
        ws.send("[" * 50_000 + "]" * 50_000)
        while (error := json.loads(ws.recv(timeout=60)))["type"] == "status":
            pass
        assert error["type"] == "error" and "JSON" in error["message"], error
        ws.send(json.dumps({"type": "text", "text": "Hello."}))
        ws.send(json.dumps({"type": "end"}))  # the session ends after the reply (it holds one of max_sessions)
        seen = []
        try:
            while True:
                message = ws.recv(timeout=120)
                if isinstance(message, str):
                    seen.append(json.loads(message)["type"])
        except ConnectionClosed:
            pass
        assert "user" in seen and "error" not in seen, seen


def test_a_transcription_language_the_english_only_model_cannot_hear_is_refused_and_the_session_goes_on(served):
    """With the bundled English-only Whisper, transcription language 'de' was taken; the first spoken turn then ended
    the session with a server error. Now session.update is refused by name and the session keeps English."""
    from websockets.sync.client import connect

    url = served.url.replace("http", "ws") + "/v1/realtime?model=x"
    with connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=60))["type"] == "session.created"
        for language, kind in (("de", "error"), ("en-US", "session.updated")):
            transcription = {"model": "whisper-1", "language": language}
            ws.send(
                json.dumps(
                    {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"transcription": transcription}}}}
                )
            )
            doc = json.loads(ws.recv(timeout=60))
            assert doc["type"] == kind, doc
        assert doc["session"]["audio"]["input"]["transcription"]["language"] == "en"


def test_a_malformed_sdp_offer_is_refused_in_words(served):
    """aiortc's parser asserts on a malformed m-line (the refusal said only 'AssertionError: '), and an offer without a
    DTLS fingerprint was answered 201, then failed in the background with a traceback, holding a session slot."""
    status, doc = _post(served, "/v1/realtime/calls", b"v=0\r\nm=audio garbage\r\na=fingerprint:sha-256 00\r\n", "application/sdp")
    assert status == 400 and doc["error"]["param"] == "sdp", doc
    assert "not a well-formed offer" in doc["error"]["message"] and "AssertionError" not in doc["error"]["message"], doc
    for body in (b"\x00\xffgarbage", b"v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"):
        status, doc = _post(served, "/v1/realtime/calls", body, "application/sdp")
        assert status == 400 and "audio track" in doc["error"]["message"], doc
    offer = _offer().replace("a=fingerprint:", "a=x-fingerprint:")  # a real offer but for its DTLS fingerprint
    status, doc = _post(served, "/v1/realtime/calls", offer.encode(), "application/sdp")
    assert status == 400 and "fingerprint" in doc["error"]["message"], doc


def _offer() -> str:
    import asyncio

    from aiortc import RTCPeerConnection

    async def make() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("oai-events")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


# --- the joined multilingual Whisper ------------------------------------------------------------------------------


@pytest.mark.fast
def test_a_joined_bundle_with_a_model_bin_swapped_for_a_link_or_a_same_size_file_is_not_trusted(tmp_path):
    """The stamp's size alone let a symlink (to any file of that size) or a file rewritten in place pass for the model."""
    import os

    from voicechat import whisper_bundle as wb

    folder = tmp_path / "whisper-base-multilingual-9"
    folder.mkdir()
    for name in wb.SIDE_FILES:
        (folder / name).write_text("{}")
    (folder / "model.bin").write_bytes(b"M" * 4096)
    stamp = {"version": "9", "size": 4096, "sha256": "-", "mtime_ns": os.stat(folder / "model.bin").st_mtime_ns}
    (folder / wb.STAMP).write_text(json.dumps(stamp))
    assert wb._stamp_ok(folder, "9")
    other = tmp_path / "other.bin"
    other.write_bytes(b"\0" * 4096)
    (folder / "model.bin").rename(tmp_path / "kept.bin")
    (folder / "model.bin").symlink_to(other)
    assert not wb._stamp_ok(folder, "9")  # a link to a file of the right size
    (folder / "model.bin").unlink()
    (tmp_path / "kept.bin").rename(folder / "model.bin")
    assert wb._stamp_ok(folder, "9")
    os.utime(folder / "model.bin", ns=(stamp["mtime_ns"] + 10**9, stamp["mtime_ns"] + 10**9))
    assert not wb._stamp_ok(folder, "9")  # written again after the join
    link = tmp_path / "linked"
    link.symlink_to(folder)
    os.utime(folder / "model.bin", ns=(stamp["mtime_ns"], stamp["mtime_ns"]))
    assert wb._stamp_ok(folder, "9") and not wb._stamp_ok(link, "9")  # the folder itself a link


def test_a_link_or_a_file_where_the_joined_bundle_goes_is_replaced_by_the_model(tmp_path, monkeypatch):
    """A symlink or a file at the joined model's path made every load fail with 'Not a directory' until removed by hand."""
    from voicechat import whisper_bundle as wb

    if not wb.installed():
        pytest.skip("the multilingual Whisper packages are not installed")
    monkeypatch.setenv("VOICECHAT_DATA_DIR", str(tmp_path / "data"))
    version = wb._version(wb.PARTS[0])
    assert version is not None
    target = wb.target_dir(version)
    target.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target.symlink_to(elsewhere)
    assert wb.model_dir() == str(target) and not target.is_symlink() and list(elsewhere.iterdir()) == []
    stamp = json.loads((target / wb.STAMP).read_text())
    assert (target / "model.bin").stat().st_size == stamp["size"]
    wb.shutil.rmtree(target)
    target.write_text("not a folder")
    assert wb.model_dir() == str(target) and (target / "model.bin").stat().st_size == stamp["size"]


# --- realtime client secrets ----------------------------------------------------------------------------------------


@pytest.mark.fast
def test_live_client_secrets_hold_a_bounded_total_of_session_configuration():
    """Each live secret kept its whole session configuration: 4096 mints of ~280 kB instructions (the body limit)
    held over a gigabyte. Now their total is bounded (the oldest go first), and one larger than all is refused."""
    from voicechat.serve import client_secrets as cs
    from voicechat.serve import realtime_events as rt

    defaults = rt.Settings(model="m", voice="v", instructions="", silence_ms=500)
    store = cs.ClientSecrets(clock=lambda: 1000.0, max_live_bytes=1_000_000)
    minted = [store.mint({"session": {"type": "realtime", "instructions": "x" * 100_000}}, defaults)["value"] for _ in range(30)]
    assert store.live_bytes <= 1_000_000
    assert store.grant(minted[0]) is None and store.grant(minted[-1]) is not None  # the oldest went first
    assert store.grant(minted[-1]).session["instructions"] == "x" * 100_000
    with pytest.raises(cs.Refused) as e:
        store.mint({"session": {"type": "realtime", "instructions": "x" * 2_000_000}}, defaults)
    assert e.value.param == "session"
    later = cs.ClientSecrets(clock=iter([0.0, 10_000.0, 10_000.0]).__next__, max_live_bytes=1_000_000)
    old = later.mint({"session": {"type": "realtime", "instructions": "y" * 1000}}, defaults)["value"]
    later.mint({}, defaults)  # minting sweeps the expired one, and its bytes with it
    assert later.live_bytes == 0 and later.grant(old) is None


@pytest.mark.fast
def test_an_import_waits_for_no_pull_and_leaves_a_running_pulls_partial_files_alone(tmp_path):
    """An import of a model shares its staging folder with a pull of it, and deleted the pull's partial files
    mid-download; now it takes the pull's lock and says another is running."""
    store = Store(tmp_path / "models")
    staged = store.staging("llm", "x")
    part = staged / "m.gguf.part"
    part.write_bytes(b"G" * 1000)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pull.only_one("x", staged):
        with pytest.raises(VoicechatError, match="another"):
            archive.import_path(store, model, "x")
    assert part.read_bytes() == b"G" * 1000 and store.all() == []
    assert [m.name for m in archive.import_path(store, model, "x")] == ["x"]  # once the pull is done


# --- per-turn languages -------------------------------------------------------------------------------------------


@pytest.mark.fast
def test_a_realtime_transcription_language_whisper_does_not_know_is_refused_at_session_update():
    """session.update took any string as the transcription language ('zz', 1000 characters, a NUL); the first spoken
    turn then failed with a server error and the session closed. Now it is refused by name; en-US is en, auto stays."""
    from voicechat.serve import realtime_events as rt

    def update(language: object) -> rt.Settings:
        settings = rt.Settings(model="m", voice="v", instructions="", silence_ms=500)
        rt.apply_update(settings, {"audio": {"input": {"transcription": {"model": "whisper-1", "language": language}}}})
        return settings

    for junk in ("zz", "x" * 1000, "de\0", "../en"):
        with pytest.raises(rt.UpdateRefused) as e:
            update(junk)
        assert e.value.param == "session.audio.input.transcription.language" and "Whisper" in str(e.value)
    assert [update(v).language for v in ("en-US", "DE_at", "auto", "", None)] == ["en", "de", "auto", None, None]
