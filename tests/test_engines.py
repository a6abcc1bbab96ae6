"""The engine registry, plugins through entry points, `voicechat engines`, and the OpenAI STT engine."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from tests.conftest import SENTENCE
from tests.helpers import wer
from tests.servers import OpenAILikeServer
from voicechat.cli import app
from voicechat.config import resolve
from voicechat.decode import decode
from voicechat.engines import registry
from voicechat.errors import VoicechatError

runner = CliRunner()


def test_engines_lists_every_builtin_with_status():
    result = runner.invoke(app, ["engines", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    got = {(r["kind"], r["name"]) for r in rows}
    assert got >= {(s.kind, s.name) for s in registry.BUILTINS}
    fw = next(r for r in rows if r["name"] == "faster-whisper")
    assert fw["installed"] and fw["default_model"] == "present" and fw["selected"]
    piper = next(r for r in rows if r["name"] == "piper")
    assert piper["default_model"] == "present"
    table = runner.invoke(app, ["engines"])
    assert "faster-whisper" in table.stdout and "piper" in table.stdout


@pytest.mark.fast
def test_unknown_engine_lists_choices():
    with pytest.raises(VoicechatError, match="unknown speech-to-text engine 'whisperx'.*faster-whisper, openai"):
        registry.get("stt", "whisperx")


@pytest.mark.fast
def test_missing_package_says_how_to_install():
    spec = registry.EngineSpec("ghost", "tts", "voicechat_no_such_module:create", "x", install="pip install ghost-tts")
    with pytest.raises(VoicechatError, match="needs the package 'voicechat_no_such_module': pip install ghost-tts"):
        spec.create(resolve(environ={}))


@pytest.mark.fast
def test_entry_point_plugin_is_listed_and_created(tmp_path, monkeypatch):
    """A third-party package registers an engine through the voicechat.engines entry point group."""
    pkg = tmp_path / "site"
    (pkg / "vc_echo_plugin").mkdir(parents=True)
    (pkg / "vc_echo_plugin" / "__init__.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from voicechat.engines.base import AudioChunk, TextToSpeech
            from voicechat.engines.registry import EngineSpec

            class Beep(TextToSpeech):
                name = "beep"
                def synthesize(self, text):
                    for word in text.split():
                        yield AudioChunk(np.zeros(160, dtype=np.float32), 16000, word)

            def create(config):
                return Beep()

            SPEC = EngineSpec("beep", "tts", "vc_echo_plugin:create", "beeps once per word")
            """
        )
    )
    dist = pkg / "vc_echo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vc-echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[voicechat.engines]\nbeep = vc_echo_plugin:SPEC\n")
    monkeypatch.syspath_prepend(str(pkg))
    assert "beep" in registry.names("tts")
    tts = registry.create("tts", resolve(environ={}), "beep")
    assert [c.text for c in tts.synthesize("one two three")] == ["one", "two", "three"]
    result = runner.invoke(app, ["engines", "--json"])
    assert any(r["name"] == "beep" and r["installed"] for r in json.loads(result.stdout))


def test_openai_stt_against_loopback_server(sentence_wav):
    with OpenAILikeServer() as server:
        cfg = resolve(
            environ={}, overrides={"stt.engine": "openai", "stt.base_url": server.base_url, "stt.api_key": "sk-local-test-key-000000"}
        )
        stt = registry.create("stt", cfg)
        segments = list(stt.transcribe(decode(sentence_wav)))
        assert segments and segments[-1].end > segments[0].start
        assert wer(SENTENCE, " ".join(s.text for s in segments)) <= 0.15
        req = server.requests[-1]
        assert req["path"] == "/v1/audio/transcriptions"
        assert req["headers"]["authorization"] == "Bearer sk-local-test-key-000000"


def test_openai_stt_through_cli(sentence_wav):
    with OpenAILikeServer() as server:
        result = runner.invoke(app, ["transcribe", str(sentence_wav), "--engine", "openai"], env={"OPENAI_BASE_URL": server.base_url})
        assert result.exit_code == 0, result.stderr
        assert wer(SENTENCE, result.stdout) <= 0.15


@pytest.mark.parametrize("mode,needle", [("401", "rejected the API key"), ("404", "not found"), ("500", "server error 500")])
def test_openai_stt_errors(sentence_wav, mode, needle):
    with OpenAILikeServer() as server:
        server.mode = mode
        result = runner.invoke(
            app,
            ["transcribe", str(sentence_wav), "--engine", "openai"],
            env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-wrong-key-123456789012", "VOICECHAT_LLM_RETRIES": "0"},
        )
        assert result.exit_code == 1
        assert needle in result.stderr and "sk-wrong-key-123456789012" not in result.stderr


def test_openai_stt_connection_refused(sentence_wav):
    result = runner.invoke(
        app,
        ["transcribe", str(sentence_wav), "--engine", "openai"],
        env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "VOICECHAT_LLM_RETRIES": "0"},
    )
    assert result.exit_code == 1
    assert "cannot connect" in result.stderr


def test_concurrent_engines_do_not_spin():
    """`talk` creates engines with concurrent=True: CTranslate2's OpenMP threads then sleep between calls
    (they would spin on the cores the chat model needs next); a factory without the flag still works."""
    import subprocess

    code = (
        "import os\n"
        "from voicechat.config import resolve\n"
        "from voicechat.engines import registry\n"
        "cfg = resolve(environ={})\n"
        "registry.create('tts', cfg, concurrent=True)\n"  # piper's factory takes no flag: called without it
        "registry.create('stt', cfg, concurrent=CONCURRENT)\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for flag, expected in (("True", "PASSIVE"), ("False", "None")):
        out = subprocess.run([sys.executable, "-c", code.replace("CONCURRENT", flag)], capture_output=True, text=True, env=env, timeout=120)
        assert out.stdout.strip().splitlines()[-1] == expected, out.stderr
