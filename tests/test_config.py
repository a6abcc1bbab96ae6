"""Configuration: precedence, validation errors, `config show` / `config path`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.helpers import assert_one_line_error, run_cli
from voicechat import paths
from voicechat.cli import app
from voicechat.config import Config, resolve
from voicechat.errors import ConfigError

pytestmark = pytest.mark.fast

runner = CliRunner()


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_are_the_offline_engines():
    cfg = resolve(environ={})
    assert (cfg.stt.engine, cfg.llm.engine, cfg.tts.engine) == ("faster-whisper", "llama-cpp", "piper")
    assert cfg.stt.model is None and cfg.llm.model is None and cfg.tts.voice is None


def test_norwegian_is_a_language_code_not_false(tmp_path):
    """YAML 1.1 reads `no` as false; in the language keys it is Norwegian's code."""
    given = write(tmp_path / "no.yaml", "listen:\n  languages: [en, no]\nstt:\n  language: no\ntts:\n  voices: {no: espeak:nb}\n")
    cfg = resolve(given, environ={})
    assert cfg.listen.languages == ["en", "no"] and cfg.stt.language == "no" and cfg.tts.voices == {"no": "espeak:nb"}


def test_precedence_cli_env_file_user_defaults(tmp_path):
    write(paths.user_config_file(), "stt:\n  beam_size: 2\n  language: de\nllm:\n  temperature: 0.1\ntts:\n  speed: 1.5\n")
    given = write(tmp_path / "given.yaml", "stt:\n  beam_size: 3\nllm:\n  temperature: 0.2\n")
    env = {"VOICECHAT_STT_BEAM_SIZE": "4"}
    cfg = resolve(given, {"stt.beam_size": None}, environ=env)
    assert cfg.stt.beam_size == 4  # env beats both files
    assert cfg.llm.temperature == 0.2  # --config beats the user file
    assert cfg.stt.language == "de" and cfg.tts.speed == 1.5  # user file beats defaults
    cfg = resolve(given, {"stt.beam_size": 7}, environ=env)
    assert cfg.stt.beam_size == 7  # command line beats everything


def test_openai_env_vars(tmp_path):
    cfg = resolve(environ={"OPENAI_API_KEY": "sk-test-1234567890abcdef", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert cfg.openai.api_key == "sk-test-1234567890abcdef"
    assert cfg.openai_base_url(cfg.llm) == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    "text,needles",
    [
        ("stt:\n  beam_sise: 3\n", ["unknown key 'stt.beam_sise'", "beam_size"]),
        ("sst:\n  model: x\n", ["unknown section 'sst'"]),
        ("stt:\n  beam_size: lots\n", ["'stt.beam_size'", "expected an integer"]),
        ("llm:\n  temperature: [1]\n", ["'llm.temperature'", "expected a number"]),
        ("stt: [oops\n", ["broken YAML", "line 2"]),
        ("- a\n- b\n", ["top level"]),
        ("prices:\n  m: {input: cheap}\n", ["prices.m"]),
        # YAML reads an unquoted yes/no/on/off as a boolean: the item is named and the quotes suggested
        ("barge:\n  backchannels: [okay, yes]\n", ["'barge.backchannels' item 2 is True; expected a string", "in quotes"]),
        ("barge:\n  backchannels: [okay, [a]]\n", ["'barge.backchannels' item 2 is", "expected a string"]),
        ("tts:\n  voice: on\n", ["'tts.voice' is True", "in quotes"]),
    ],
)
def test_bad_config_names_file_key_expected(tmp_path, text, needles):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        resolve(path, environ={})
    assert str(path) in str(info.value)
    for n in needles:
        assert n in str(info.value)


def test_bad_env_value_is_named():
    with pytest.raises(ConfigError, match="VOICECHAT_LLM_MAX_TOKENS.*expected an integer"):
        resolve(environ={"VOICECHAT_LLM_MAX_TOKENS": "many"})


def test_bad_config_through_cli_is_one_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "stt:\n  bogus: 1\n")
    result = run_cli("--config", str(path), "config", "show")
    assert result.returncode == 2
    assert_one_line_error(result.stderr.decode(), str(path), "stt.bogus")


def test_config_show_masks_secrets(tmp_path, monkeypatch):
    secret = "sk-live-abcdefghijklmnopqrstuvwxyz123456"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    path = write(tmp_path / "c.yaml", "llm:\n  api_key: other-secret-value-987654\n  model: gpt-4o-mini\n")
    result = runner.invoke(app, ["--config", str(path), "config", "show", "--json"])
    assert result.exit_code == 0
    assert secret not in result.stdout and "other-secret-value-987654" not in result.stdout
    data = json.loads(result.stdout)
    assert data["llm"]["model"] == "gpt-4o-mini"
    assert data["openai"]["api_key"].startswith("sk-") and "***" in data["openai"]["api_key"]
    yaml_out = runner.invoke(app, ["--config", str(path), "config", "show"]).stdout
    assert secret not in yaml_out and "engine: faster-whisper" in yaml_out


def test_config_path_is_platform_dir():
    result = runner.invoke(app, ["config", "path"])
    assert result.exit_code == 0
    assert result.stdout.strip() == str(paths.user_config_file())


def test_example_config_is_complete_and_valid():
    """config.example.yaml documents every key, and loads as-is."""
    import dataclasses

    import yaml

    from tests.helpers import ROOT
    from voicechat.config import SECTIONS

    example = ROOT / "config.example.yaml"
    resolve(example, environ={})
    data = yaml.safe_load(example.read_text())
    for section in SECTIONS:
        fields = {f.name for f in dataclasses.fields(type(getattr(Config(), section)))}
        assert set(data[section]) == fields, section
    text = example.read_text()
    for section in SECTIONS:
        for f in dataclasses.fields(type(getattr(Config(), section))):
            line = next(row for row in text.splitlines() if row.strip().startswith(f"{f.name}:"))
            assert "#" in line or f.name in ("system_prompt",), f"{section}.{f.name} has no comment"


@pytest.mark.parametrize(
    "key,value",
    [
        ("stt.beam_size", "-5"),
        ("stt.beam_size", "0"),
        ("llm.temperature", "nan"),
        ("llm.temperature", "3"),
        ("llm.max_tokens", "0"),
        ("llm.timeout", "-1"),
        ("llm.retries", "-1"),
        ("llm.context_size", "0"),
        ("tts.speed", "0"),
        ("tts.pitch", "100"),
        ("tts.volume", "-1"),
        ("listen.frame_ms", "25"),
        ("listen.aggressiveness", "4"),
        ("listen.start_ratio", "1.5"),
        ("memory.max_rounds", "-1"),
        ("stt.no_speech_threshold", "2"),
        ("audio.latency", "medium"),
    ],
)
def test_every_numeric_key_has_its_range_checked_naming_the_source(tmp_path, key, value):
    section, name = key.split(".")
    var = f"VOICECHAT_{section}_{name}".upper()
    with pytest.raises(ConfigError, match=f"{var}.*'{key}'"):
        resolve(environ={var: value})
    given = write(tmp_path / "c.yaml", f"{section}:\n  {name}: {value}\n")
    with pytest.raises(ConfigError, match=f"c.yaml.*'{key}'"):
        resolve(given, environ={})


def test_every_numeric_key_has_a_range():
    from voicechat.config import RANGES, SECTIONS, _field_types

    cfg = Config()
    for section in SECTIONS:
        for name, tp in _field_types(type(getattr(cfg, section))).items():
            if tp in (int, float):
                assert f"{section}.{name}" in RANGES, f"{section}.{name} has no range"
            default = getattr(getattr(cfg, section), name)
            if f"{section}.{name}" in RANGES:  # the defaults are inside their own ranges
                resolve(environ={f"VOICECHAT_{section}_{name}".upper(): str(default)})
