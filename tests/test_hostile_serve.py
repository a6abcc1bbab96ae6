"""The server's HTTP boundary under hostile use (issue 21): Host (DNS rebinding), Origin (other web pages),
content types, chat limits, uploads, slow clients, and hostile config values. One real `voicechat serve`
with the bundled models serves the tables; the browser cases run in Debian's chromium through Playwright,
from a page served by another origin on loopback."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers import VOICECHAT, assert_one_line_error, run_cli, speak, write_wav
from tests.hostile import run_measured
from tests.serveproc import ServeProcess, free_port
from tests.voiceclient import VoiceClient

CONFIG = """
serve:
  header_timeout_s: 2
  body_timeout_s: 3
  max_messages: 64
  allowed_hosts: [voicechat.example]
  allowed_origins: [http://friend.example:1234]
llm:
  max_tokens: 16
"""


@pytest.fixture(scope="module")
def tmpdir_(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile-serve-tmp")  # the server's TMPDIR: where its uploads wait


def _env(home: Path, tmpdir: Path) -> dict:
    env = {f"VOICECHAT_{n}_DIR": str(home / n.lower()) for n in ("CONFIG", "DATA", "CACHE")}
    return {**env, "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmpdir)}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tmpdir_):
    home = tmp_path_factory.mktemp("hostile-serve-home")
    with ServeProcess(tmp_path_factory.mktemp("hostile-serve"), config=CONFIG, env=_env(home, tmpdir_)) as s:
        yield s


# --- raw HTTP -------------------------------------------------------------------------------------


def raw(port: int, data: bytes, timeout: float = 30) -> tuple[int, dict, bytes]:
    """Send bytes, read one response: (status, headers, body); status 0 when the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_response(s)


def read_response(s: socket.socket) -> tuple[int, dict, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        more = s.recv(65536)
        if not more:
            return 0, {}, buf
        buf += more
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "-1"))
    while length >= 0 and len(body) < length:
        more = s.recv(65536)
        if not more:
            break
        body += more
    return status, headers, body


def request(port: int, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, dict, bytes]:
    head = {"Host": f"127.0.0.1:{port}", **headers}
    if body or method == "POST":
        head["Content-Length"] = str(len(body))
    version = "1.1" if head["Host"] is not None else "1.0"  # HTTP/1.1 requires a Host; a 1.0 probe (HAProxy's) has none
    text = f"{method} {path} HTTP/{version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items() if v is not None) + "\r\n"
    return raw(port, text.encode("latin-1") + body)


def assert_openai_error(body: bytes, *needles: str) -> dict:
    doc = json.loads(body)
    assert set(doc) == {"error"}, doc  # never {"detail": ...}
    assert set(doc["error"]) == {"message", "type", "param", "code"}, doc
    for needle in needles:
        assert needle in doc["error"]["message"] or needle == doc["error"]["code"], (needle, doc)
    return doc["error"]


CHAT = json.dumps({"model": "x", "messages": [{"role": "user", "content": "Say hi."}]}).encode()
EVIL = "rebind.evil.example"

# id, method, path, headers ({port} is the server's), body, status, needles in the error message (None: a success)
HTTP_CASES = [
    ("rebinding Host, models", "GET", "/v1/models", {"Host": EVIL + ":{port}"}, b"", 421, ["serve.allowed_hosts", EVIL]),
    (
        "rebinding Host, chat",
        "POST",
        "/v1/chat/completions",
        {"Host": EVIL + ":{port}", "Content-Type": "application/json"},
        CHAT,
        421,
        ["serve.allowed_hosts"],
    ),
    ("rebinding Host, the page", "GET", "/", {"Host": EVIL}, b"", 421, ["serve.allowed_hosts"]),
    ("rebinding Host, metrics", "GET", "/metrics", {"Host": "127.0.0.1.evil.example:{port}"}, b"", 421, ["serve.allowed_hosts"]),
    ("localhost Host", "GET", "/v1/models", {"Host": "localhost:{port}"}, b"", 200, None),
    ("IPv6 loopback Host", "GET", "/v1/models", {"Host": "[::1]:{port}"}, b"", 200, None),
    ("listed Host", "GET", "/v1/models", {"Host": "VoiceChat.Example:{port}"}, b"", 200, None),
    ("no Host (HTTP/1.0 probe)", "GET", "/readyz", {"Host": None}, b"", 200, None),
    ("foreign Origin, models", "GET", "/v1/models", {"Origin": "http://127.0.0.1:1"}, b"", 403, ["serve.allowed_origins"]),
    (
        "foreign Origin, no-cors text/plain chat",
        "POST",
        "/v1/chat/completions",
        {"Origin": "http://attacker.example", "Content-Type": "text/plain;charset=UTF-8"},
        CHAT,
        403,
        ["serve.allowed_origins"],
    ),
    (
        "foreign Origin, form upload",
        "POST",
        "/v1/audio/transcriptions",
        {"Origin": "http://attacker.example", "Content-Type": "multipart/form-data; boundary=x"},
        b"--x--\r\n",
        403,
        ["serve.allowed_origins"],
    ),
    ("null Origin (sandboxed page)", "GET", "/v1/models", {"Origin": "null"}, b"", 403, ["serve.allowed_origins"]),
    ("same Origin", "GET", "/v1/models", {"Origin": "http://127.0.0.1:{port}"}, b"", 200, None),
    ("listed Origin", "GET", "/v1/models", {"Origin": "http://friend.example:1234"}, b"", 200, None),
    ("text/plain chat without Origin", "POST", "/v1/chat/completions", {"Content-Type": "text/plain"}, CHAT, 415, ["application/json"]),
    ("chat without a content type", "POST", "/v1/chat/completions", {}, CHAT, 415, ["application/json"]),
    (
        "form-encoded speech",
        "POST",
        "/v1/audio/speech",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"input=hi",
        415,
        ["application/json"],
    ),
    (
        "JSON to transcriptions",
        "POST",
        "/v1/audio/transcriptions",
        {"Content-Type": "application/json"},
        b"{}",
        415,
        ["multipart/form-data"],
    ),
    ("chat JSON with charset", "POST", "/v1/chat/completions", {"Content-Type": "Application/JSON; charset=utf-8"}, CHAT, 200, None),
    (
        "2000 empty messages",
        "POST",
        "/v1/chat/completions",
        {"Content-Type": "application/json"},
        json.dumps({"messages": [{"role": "user", "content": ""}] * 2000}).encode(),
        400,
        ["serve.max_messages"],
    ),
    (
        "messages past the model's context",
        "POST",
        "/v1/chat/completions",
        {"Content-Type": "application/json"},
        json.dumps({"messages": [{"role": "user", "content": "a " * 60}] * 64}).encode(),
        400,
        ["llm.context_size", "context_length_exceeded"],
    ),
    (
        "600 000 empty messages (18 MB)",
        "POST",
        "/v1/chat/completions",
        {"Content-Type": "application/json"},
        json.dumps({"messages": [{"role": "user", "content": ""}] * 600_000}).encode(),
        413,
        ["serve.max_messages"],
    ),
    (
        "a huge response_format is not echoed",
        "POST",
        "/v1/audio/speech",
        {"Content-Type": "application/json"},
        json.dumps({"input": "hi", "response_format": "x" * 5000}).encode(),
        400,
        ["5000 characters"],
    ),
    (
        "multipart cut short",
        "POST",
        "/v1/audio/transcriptions",
        {"Content-Type": "multipart/form-data; boundary=zz"},
        b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF',
        400,
        ["file"],
    ),
    (
        "multipart without a boundary",
        "POST",
        "/v1/audio/transcriptions",
        {"Content-Type": "multipart/form-data"},
        b"--zz\r\n",
        400,
        ["boundary"],
    ),
    ("no such route", "GET", "/v1/nothing", {}, b"", 404, ["/docs"]),
    ("wrong method", "DELETE", "/v1/models", {}, b"", 405, ["method"]),
]


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_http_boundary(server, case):
    _, method, path, headers, body, want, needles = case
    headers = {k: (v.format(port=server.port) if isinstance(v, str) else v) for k, v in headers.items()}
    status, _, got = request(server.port, method, path, headers, body)
    assert status == want, got[:300]
    if needles is not None:
        error = assert_openai_error(got, *needles)
        assert len(error["message"]) < 400, error  # a value from the request is never echoed whole
    assert server.status("/healthz") == 200


def test_a_listed_page_gets_cors_and_its_preflight(server):
    status, headers, _ = request(
        server.port,
        "OPTIONS",
        "/v1/chat/completions",
        {
            "Origin": "http://friend.example:1234",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert status == 204 and headers["access-control-allow-origin"] == "http://friend.example:1234"
    assert "content-type" in headers["access-control-allow-headers"]
    status, headers, _ = request(server.port, "GET", "/v1/models", {"Origin": "http://friend.example:1234"})
    assert status == 200 and headers["access-control-allow-origin"] == "http://friend.example:1234"
    status, headers, _ = request(server.port, "GET", "/v1/models", {})
    assert status == 200 and "access-control-allow-origin" not in headers  # nobody else is granted CORS
    status, _, _ = request(
        server.port, "OPTIONS", "/v1/chat/completions", {"Origin": "http://attacker.example", "Access-Control-Request-Method": "POST"}
    )
    assert status == 403


# --- the WebSocket upgrade ------------------------------------------------------------------------------


def upgrade(port: int, headers: dict) -> tuple[int, bytes]:
    head = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": "voicechat",
        **headers,
    }
    text = "GET /v1/voice HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(text.encode())
        status, _, body = read_response(s)
    return status, body


WS_CASES = [
    ("foreign Origin", {"Origin": "http://127.0.0.1:1"}, 403, "serve.allowed_origins"),
    ("attacker Origin", {"Origin": "https://attacker.example"}, 403, "serve.allowed_origins"),
    ("null Origin", {"Origin": "null"}, 403, "serve.allowed_origins"),
    ("rebinding Host", {"Host": EVIL + ":{port}", "Origin": "http://" + EVIL + ":{port}"}, 421, "serve.allowed_hosts"),
    ("rebinding Host, no Origin", {"Host": EVIL}, 421, "serve.allowed_hosts"),
    ("same Origin", {"Origin": "http://127.0.0.1:{port}"}, 101, None),
    ("no Origin (a program)", {}, 101, None),
]


@pytest.mark.parametrize("case", WS_CASES, ids=[c[0] for c in WS_CASES])
def test_websocket_boundary(server, case):
    _, headers, want, needle = case
    status, body = upgrade(server.port, {k: v.format(port=server.port) for k, v in headers.items()})
    assert status == want
    if needle:
        assert_openai_error(body, needle)


# --- uploads --------------------------------------------------------------------------------------------


def multipart(name: str, data: bytes) -> tuple[dict, bytes]:
    boundary = "voicechatboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body


def test_a_truncated_upload_is_named_by_its_file_name_never_the_servers_path(server, tmp_path, tmpdir_):
    wav = write_wav(tmp_path / "speech.wav", speak("Hello there, this is a test.")).read_bytes()
    headers, body = multipart("my speech.wav", wav[: len(wav) // 2])
    status, _, got = request(server.port, "POST", "/v1/audio/transcriptions", headers, body)
    assert status == 400
    error = assert_openai_error(got, "my speech.wav", "truncated")
    assert str(tmpdir_) not in error["message"] and "upload-" not in error["message"], error
    assert not list(tmpdir_.glob("voicechat-uploads-*/*/upload-*"))  # the server removed it


def test_kill_9_during_an_upload_leaves_nothing_after_the_next_start(tmp_path):
    """A server killed mid-transcription cannot delete its upload; the next server to start sweeps it."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = _env(tmp_path / "home", tmpdir)
    audio = np.concatenate([speak("The quick brown fox jumps over the lazy dog.")] * 12)
    wav = write_wav(tmp_path / "long.wav", audio).read_bytes()
    headers, body = multipart("long.wav", wav)
    first = ServeProcess(tmp_path / "a", env=env)
    with first:
        sender = threading.Thread(
            target=lambda: _quietly(request, first.port, "POST", "/v1/audio/transcriptions", headers, body), daemon=True
        )
        sender.start()
        deadline = time.monotonic() + 60
        while not list(tmpdir.glob("voicechat-uploads-*/*/upload-*")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(tmpdir.glob("voicechat-uploads-*/*/upload-*")), "the upload never reached the disk"
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
    left = list(tmpdir.glob("voicechat-uploads-*/*/upload-*"))
    assert left  # SIGKILL: nobody could delete it
    with ServeProcess(tmp_path / "b", env=env):
        assert not any(p.exists() for p in left), left  # swept at start
        assert len(list(tmpdir.glob("voicechat-uploads-*/*"))) == 1  # only the live server's own directory


def _quietly(fn, *args):
    try:
        fn(*args)
    except OSError:
        pass


# --- slow clients ---------------------------------------------------------------------------------------


def drip(s: socket.socket, data: bytes) -> int:
    """Send data a byte a second until the server answers or closes; how many bytes went."""
    sent = 0
    try:
        for i in range(len(data)):
            s.sendall(data[i : i + 1])
            sent += 1
            time.sleep(1)
            s.setblocking(False)
            try:
                if s.recv(65536, socket.MSG_PEEK) is not None:
                    break  # the server answered (408) or closed
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.settimeout(30)
    return sent


def test_headers_sent_a_byte_a_second_are_cut_off(server):
    """Slowloris: header_timeout_s is 2 here; the headers would take a minute at this pace."""
    data = f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUser-Agent: slow-slow-slow-client\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        sent = drip(s, data)
        try:
            status, _, body = read_response(s)
        except ConnectionResetError:
            status, body = 0, b""
    assert sent < len(data), "the server waited for the whole slow request"
    assert status in (0, 408)
    if status:
        assert_openai_error(body, "serve.header_timeout_s")
    assert server.status("/healthz") == 200


def test_a_body_sent_a_byte_a_second_gets_408(server):
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(CHAT)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(head)
        sent = drip(s, CHAT)
        status, _, body = read_response(s)
    assert sent < len(CHAT)
    assert status == 408
    assert_openai_error(body, "serve.body_timeout_s")


# --- start-up: keys and config values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,what",
    [
        ("abc\ndef-key", "a newline"),
        ("trailing-newline\n", "a newline"),
        ("has space", "a space"),
        ("tab\tkey", "a tab"),
        ("bell\x07key", "a control character"),
        ("clé-key", "not ASCII"),
    ],
)
def test_an_api_key_that_no_header_can_carry_is_refused_at_start(key, what):
    result = run_cli("serve", "--api-key", key, "--port", str(free_port()), timeout=60)
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert_one_line_error(stderr, "serve.api_key", what)
    assert key.strip() not in stderr  # the key itself is never shown
    result = run_cli("config", "show", env={"VOICECHAT_SERVE_API_KEY": key}, timeout=60)
    assert result.returncode == 2
    assert_one_line_error(result.stderr.decode(), "VOICECHAT_SERVE_API_KEY", what)


def alias_bomb(key: str) -> str:
    """A billion laughs (9^10 items when walked, 1 kB of YAML) as the value of one key, its anchors inline."""
    value = '&a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'
    for i in range(1, 10):
        prev, this = chr(ord("a") + i - 1), chr(ord("a") + i)
        value = f"&{this} [{value}, " + ", ".join([f"*{prev}"] * 8) + "]"
    section, name = key.split(".")
    return f"{section}:\n  {name}: {value}\n"


BAD_CONFIGS = [
    ("alias bomb in llm.system_prompt", "bomb", "llm.system_prompt", ["llm.system_prompt"]),
    ("alias bomb in llm.temperature", "bomb", "llm.temperature", ["llm.temperature"]),
    ("alias bomb in serve.allowed_hosts", "bomb", "serve.allowed_hosts", ["serve.allowed_hosts"]),
    ("an integer of 5000 digits", "llm:\n  max_tokens: " + "9" * 5000 + "\n", None, ["cannot be read"]),
    ("nested 100 000 deep", "llm:\n  model: " + "[" * 100_000 + "\n", None, ["nested too deeply"]),
    ("a 1 MB string where a number goes", "llm:\n  temperature: '" + "x" * 1_000_000 + "'\n", None, ["llm.temperature", "characters"]),
    ("a key 100 000 characters long", "llm:\n  ? " + "k" * 100_000 + "\n  : 1\n", None, ["unknown key"]),
]


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_a_hostile_config_value_is_refused_in_one_short_line_and_bounded_memory(tmp_path, case):
    _, text, key, needles = case
    path = tmp_path / "config.yaml"
    path.write_text(alias_bomb(key) if key is not None else text)
    result = run_measured([VOICECHAT, "--config", str(path), "config", "show"], timeout=120)
    assert result["code"] == 2, result["stderr"][-500:]
    assert_one_line_error(result["stderr"], *needles)
    assert len(result["stderr"]) < 600, result["stderr"][:600]
    assert result["peak_mb"] < 400, result["peak_mb"]


def test_a_config_file_that_never_ends_is_refused(tmp_path):
    result = run_measured([VOICECHAT, "--config", "/dev/zero", "config", "show"], timeout=60)
    assert result["code"] == 2
    assert_one_line_error(result["stderr"], "too large for a config file")
    assert result["peak_mb"] < 400


# --- policy ---------------------------------------------------------------------------------------------


def boundary(**serve):
    from voicechat.serve.boundary import Boundary

    base = {"host": "127.0.0.1", "api_key": None, "allowed_hosts": [], "allowed_origins": []}
    return Boundary(SimpleNamespace(**{**base, **serve}))


@pytest.mark.parametrize(
    "serve,host,ok",
    [
        ({}, "localhost:8000", True),
        ({}, "127.0.0.1:8000", True),
        ({}, "[::1]:8000", True),
        ({}, "LOCALHOST.", True),
        ({}, "10.1.2.3:8000", True),  # an address cannot be a rebinding page's Host
        ({}, "evil.example:8000", False),
        ({}, "localhost.evil.example", False),
        ({}, "127.0.0.1.nip.io:8000", False),
        ({"host": "0.0.0.0"}, "gpu-box:8000", False),  # beyond loopback without a key: names must be listed
        ({"host": "0.0.0.0", "api_key": "k"}, "gpu-box:8000", True),  # ... with a key, the key guards
        ({"host": "0.0.0.0", "api_key": "k", "allowed_hosts": ["voice.example"]}, "gpu-box:8000", False),  # listed: checked
        ({"host": "127.0.0.1", "api_key": "k"}, "evil.example", False),  # loopback with a key: still checked
        ({"host": "gpu-box.lan"}, "gpu-box.lan:8000", True),  # the name it binds to
        ({"allowed_hosts": ["*.example.com"]}, "a.example.com", True),
        ({"allowed_hosts": ["*.example.com"]}, "example.com.evil", False),
        ({"allowed_hosts": ["*"]}, "anything", True),
    ],
)
def test_host_policy(serve, host, ok):
    assert (boundary(**serve).host_refusal(host) is None) == ok


@pytest.mark.parametrize(
    "serve,origin,host,ok",
    [
        ({}, "http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ({}, "http://127.0.0.1:8001", "127.0.0.1:8000", False),
        ({}, "https://voice.example", "voice.example", True),
        ({}, "https://voice.example", "voice.example:443", True),
        ({}, "http://localhost:8000", "127.0.0.1:8000", False),
        ({}, "null", "127.0.0.1:8000", False),
        ({"api_key": "k"}, "https://evil.example", "127.0.0.1:8000", False),  # a key does not lift the check
        ({"allowed_origins": ["https://App.example/"]}, "https://app.example", "127.0.0.1:8000", True),
        ({"allowed_origins": ["*"]}, "https://evil.example", "127.0.0.1:8000", True),
    ],
)
def test_origin_policy(serve, origin, host, ok):
    assert (boundary(**serve).origin_refusal(origin, host) is None) == ok


# --- in a real browser: another origin on loopback, and a DNS-rebinding page --------------------------------

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/setup.sh); never `playwright install`

ATTACK = """<!doctype html><meta charset="utf-8"><title>attacker</title><pre id="out">running</pre><script>
const target = TARGET, session = SESSION, out = {};
function show() { document.getElementById("out").textContent = JSON.stringify(out, null, 1); }
function openVoice(url) {
  return new Promise(resolve => {
    const events = [];
    let ws;
    try { ws = new WebSocket(url, ["voicechat"]); } catch (e) { resolve({thrown: String(e)}); return; }
    ws.onmessage = m => {
      events.push(String(m.data).slice(0, 300));
      if (events.length === 1) ws.send(JSON.stringify({type: "text", text: "Repeat what I told you before."}));
    };
    ws.onclose = e => resolve({closed: e.code, events});
    setTimeout(() => { resolve({timeout: true, events}); try { ws.close(); } catch (e) {} }, 20000);
  });
}
async function attempt(name, fn) {
  try { out[name] = await fn(); } catch (e) { out[name] = {blocked: String(e)}; }
  show();
}
(async () => {
  await attempt("voice", () => openVoice(`ws://${target}/v1/voice?session=${session}`));
  await attempt("models", async () => { const r = await fetch(`http://${target}/v1/models`); return {status: r.status, body: (await r.text()).slice(0, 300)}; });
  await attempt("post", async () => {
    const r = await fetch(`http://${target}/v1/chat/completions`, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
      body: JSON.stringify({model: "x", messages: [{role: "user", content: "Spend the engine for me."}]})});
    return {type: r.type, status: r.status};
  });
  out.done = true; show();
})();
</script>"""


def attack_page(target: str, session: str) -> str:
    return ATTACK.replace("TARGET", json.dumps(target)).replace("SESSION", json.dumps(session))


def turns(server) -> int:
    db = sqlite3.connect(server.workdir / "history.sqlite3")
    try:
        return db.execute("SELECT count(*) FROM turns").fetchone()[0]
    finally:
        db.close()


@pytest.fixture(scope="module")
def victim(server):
    """A conversation the user had through the server: a secret, and its session id."""
    c = VoiceClient(server.url)
    try:
        c.wait_for(lambda e: e["type"] == "session")
        c.send({"type": "text", "text": "Remember that my bank PIN is 4321."})
        c.wait_for(lambda e: e["type"] == "reply")
        c.send({"type": "end"})
        c.wait_for(lambda e: e["type"] == "summary")
        ids = [e["id"] for e in c.of("session") if e.get("id") is not None]
    finally:
        c.close()
    assert ids and turns(server) >= 1
    return str(ids[-1])


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                f"--host-resolver-rules=MAP {EVIL} 127.0.0.1",
                # the real page of a rebinding attack comes from the public internet; Chrome would then also ask the
                # user before it reaches loopback (Local Network Access): off here, so the server itself must refuse
                "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights",
            ],
        )
        yield b
        b.close()


class _Page(http.server.BaseHTTPRequestHandler):
    html = ""

    def do_GET(self) -> None:
        body = self.html.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def run_attack(chromium, url: str, shot: Path, route_html: str | None = None) -> dict:
    page = chromium.new_context().new_page()
    if route_html is not None:  # the first DNS answer: the attacker's own server hands out the page
        page.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=route_html))
    page.goto(url)
    page.wait_for_function("document.getElementById('out').textContent.includes('\"done\"')", timeout=90_000)
    page.screenshot(path=str(shot))
    out = json.loads(page.inner_text("#out"))
    page.context.close()
    return out


@pytest.mark.serial
def test_a_page_from_another_origin_cannot_read_or_write_a_conversation(server, victim, chromium, tmp_path):
    before = turns(server)
    refused = server.metric("voicechat_requests_total", route="/v1/chat/completions", status="403")
    _Page.html = attack_page(f"127.0.0.1:{server.port}", victim)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        out = run_attack(chromium, f"http://127.0.0.1:{httpd.server_address[1]}/", tmp_path / "attacker.png")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert out["voice"].get("events") == [] and out["voice"].get("closed") == 1006, out  # the upgrade was refused
    assert "blocked" in out["models"], out  # no CORS for a foreign page, and 403 besides
    assert out["post"].get("type") == "opaque", out  # a no-cors POST is sent blind ...
    assert server.metric("voicechat_requests_total", route="/v1/chat/completions", status="403") == refused + 1  # ... and refused
    assert turns(server) == before  # nothing was appended to the victim's conversation
    assert "4321" not in json.dumps(out)


@pytest.mark.serial
def test_a_dns_rebinding_page_gets_nothing(server, victim, chromium, tmp_path):
    """The page comes from rebind.evil.example (the attacker's DNS answer); then the name points at 127.0.0.1, so the
    page's own-origin requests reach the server: it must refuse them by their Host."""
    before = turns(server)
    url = f"http://{EVIL}:{server.port}/"
    out = run_attack(chromium, url, tmp_path / "rebinding.png", route_html=attack_page(f"{EVIL}:{server.port}", victim))
    assert out["models"]["status"] == 421 and "serve.allowed_hosts" in out["models"]["body"], out  # read, but refused
    assert out["voice"].get("events") == [], out
    assert turns(server) == before
    assert "4321" not in json.dumps(out)
