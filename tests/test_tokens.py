"""Offline token counts equal tiktoken's; the `tokens` command; per-session reports."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
import tiktoken
from typer.testing import CliRunner

from tests.helpers import run_cli
from voicechat import tokens
from voicechat.cli import app

runner = CliRunner()

SAMPLES = [
    "Hello, world!",
    "naïve café — déjà vu; 東京は晴れ。 Ünïcödé\n\n\tindented\r\n",
    "def f(x):\n    return x ** 2  # comment\n\n\n12345678901234 3.14159\n",
    "   leading spaces and trailing   \n\nNew paragraph.\n/path/to/file\n.\n/slash",
]


def random_text(seed: int, n: int) -> str:
    rng = random.Random(seed)
    alphabet = "abcdefghij klmnop QRST 0123456789 .,;:!? \n\n\t éü東京 /\\'\"-_" + "\n"
    return "".join(rng.choice(alphabet) for _ in range(n))


@pytest.mark.fast
@pytest.mark.parametrize("encoding", tokens.ENCODINGS)
def test_offline_files_pass_tiktoken_hash(encoding):
    path = tokens.install(encoding)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == tokens.BLOBS[encoding][1]
    enc = tokens.get_encoding(encoding)  # would raise on a DNS error if tiktoken tried the network
    assert enc.name == encoding


@pytest.mark.fast
def test_standard_model_names_work_offline():
    tokens.get_encoding("o200k_base")
    enc = tiktoken.encoding_for_model("gpt-4o")
    assert enc.encode("hello world") == [24912, 2375]
    assert tiktoken.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]


@pytest.mark.fast
@pytest.mark.parametrize("encoding", tokens.ENCODINGS)
def test_counts_equal_tiktoken_including_split_large_texts(encoding):
    enc = tokens.get_encoding(encoding)
    big = "\n".join(SAMPLES * 50) + random_text(1, 300_000)
    texts = SAMPLES + [big, random_text(2, 50_000)]
    counts = tokens.count_many(texts, encoding)
    assert counts == [len(enc.encode_ordinary(t)) for t in texts]
    pieces = tokens._safe_pieces(big, target=1000)
    assert len(pieces) > 10 and "".join(pieces) == big
    assert sum(len(enc.encode_ordinary(p)) for p in pieces) == len(enc.encode_ordinary(big))


@pytest.mark.fast
def test_corrupt_cache_file_is_replaced():
    path = tokens.install("cl100k_base")
    path.write_bytes(b"garbage")
    tokens._ready.discard("cl100k_base")
    assert tokens.install("cl100k_base") == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == tokens.BLOBS["cl100k_base"][1]


@pytest.mark.fast
def test_model_to_encoding_mapping():
    assert tokens.encoding_for_model("gpt-4o")[0] == "o200k_base"
    assert tokens.encoding_for_model("gpt-4.1-mini")[0] == "o200k_base"
    assert tokens.encoding_for_model("o3-mini")[0] == "o200k_base"
    assert tokens.encoding_for_model("gpt-4")[0] == "cl100k_base"
    assert tokens.encoding_for_model("gpt-3.5-turbo")[0] == "cl100k_base"
    enc, note = tokens.encoding_for_model("llama3.2")
    assert enc == "o200k_base" and "unknown model 'llama3.2'" in note


@pytest.mark.fast
def test_cli_text_file_stdin_json(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text(SAMPLES[1])
    result = runner.invoke(app, ["tokens", "Hello, world!", str(f), "--model", "gpt-4o", "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    enc = tokens.get_encoding("o200k_base")
    assert [r["tokens"] for r in doc["inputs"]] == [len(enc.encode(SAMPLES[0])), len(enc.encode(SAMPLES[1]))]
    assert doc["total"] == sum(r["tokens"] for r in doc["inputs"]) and doc["encoding"] == "o200k_base"
    assert doc["input_cost_usd"] == pytest.approx(doc["total"] * 2.5 / 1e6)
    piped = run_cli("tokens", "--encoding", "cl100k_base", input=SAMPLES[2].encode())
    assert piped.returncode == 0
    assert int(piped.stdout) == len(tokens.get_encoding("cl100k_base").encode(SAMPLES[2]))


@pytest.mark.fast
def test_cli_unknown_model_note_and_user_price(tmp_path):
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text("prices:\n  my-model: {input: 1.0, output: 2.0}\n")
    result = runner.invoke(app, ["--config", str(cfgfile), "tokens", "four words right here", "--model", "my-model", "--json"])
    doc = json.loads(result.stdout)
    assert "unknown model 'my-model'" in doc["note"]
    assert doc["input_cost_usd"] == pytest.approx(doc["total"] * 1.0 / 1e6)


def test_cli_gguf_model_uses_its_own_tokenizer():
    from voicechat import models

    result = runner.invoke(app, ["tokens", "Hello world, how are you?", "--model", models.smollm2_gguf(), "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    import llama_cpp

    llm = llama_cpp.Llama(model_path=models.smollm2_gguf(), vocab_only=True, verbose=False)
    assert doc["total"] == len(llm.tokenize(b"Hello world, how are you?", add_bos=False))
    assert "SmolLM2" in doc["encoding"]


@pytest.mark.fast
def test_cli_errors():
    assert run_cli("tokens", "x", "--model", "gpt-4o", "--encoding", "o200k_base").returncode != 0
    bad = run_cli("tokens", "x", "--encoding", "nope_base")
    assert bad.returncode == 1 and b"unknown or unavailable encoding" in bad.stderr
