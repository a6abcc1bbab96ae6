"""`voicechat transcribe` with the real bundled Whisper model on speech made by piper."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import srt
from typer.testing import CliRunner

from tests.conftest import SENTENCE
from tests.helpers import assert_one_line_error, run_cli, speak, wer, write_wav
from voicechat.cli import app

runner = CliRunner()
MAX_WER = 0.15  # measured 0-7 % on piper speech with tiny.en


def invoke(*args, **kw):
    return runner.invoke(app, list(args), catch_exceptions=False, **kw)


def test_transcribe_to_stdout_words_match(sentence_wav):
    result = invoke("transcribe", str(sentence_wav))
    assert result.exit_code == 0, result.stderr
    assert wer(SENTENCE, result.stdout) <= MAX_WER, result.stdout


def test_every_format_written_and_parses(sentence_wav, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("transcribe", str(sentence_wav), "-o", str(out), "--format", "all", "--word-timestamps")
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"sentence.{f}" for f in ("json", "srt", "tsv", "txt", "vtt")]
    subs = list(srt.parse((out / "sentence.srt").read_text()))
    assert subs and subs[0].start.total_seconds() >= 0 and subs[-1].end > subs[0].start
    assert wer(SENTENCE, " ".join(s.content for s in subs)) <= MAX_WER
    vtt = (out / "sentence.vtt").read_text().splitlines()
    assert vtt[0] == "WEBVTT" and " --> " in vtt[2]
    doc = json.loads((out / "sentence.json").read_text())
    assert doc["segments"] and all({"start", "end", "text"} <= set(s) for s in doc["segments"])
    assert doc["segments"][0]["words"], "word timestamps requested"
    assert 0 < doc["duration"] < 10
    tsv = (out / "sentence.tsv").read_text().splitlines()
    assert tsv[0] == "start\tend\ttext" and len(tsv[1].split("\t")) == 3
    assert wer(SENTENCE, (out / "sentence.txt").read_text()) <= MAX_WER
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temp files left behind"


def test_real_subprocess_and_stdin(sentence_wav):
    result = run_cli("transcribe", "-", input=sentence_wav.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert wer(SENTENCE, result.stdout.decode()) <= MAX_WER


@pytest.mark.parametrize("ext,kw", [("flac", {}), ("ogg", {"subtype": "VORBIS"})])
def test_other_containers(tmp_path, ext, kw):
    import soundfile as sf

    path = tmp_path / f"speech.{ext}"
    sf.write(str(path), speak(SENTENCE, 22050), 22050, **kw)
    result = invoke("transcribe", str(path))
    assert result.exit_code == 0, result.stderr
    assert wer(SENTENCE, result.stdout) <= MAX_WER


def test_m4a_through_ffmpeg(tmp_path):
    import av

    path = tmp_path / "speech.m4a"
    audio = (speak(SENTENCE, 24000) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=24000, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 24000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    result = invoke("transcribe", str(path))
    assert result.exit_code == 0, result.stderr
    assert wer(SENTENCE, result.stdout) <= MAX_WER


def test_silence_gives_empty_transcript(silence_wav, tmp_path):
    result = invoke("transcribe", str(silence_wav), "-o", str(tmp_path), "-f", "txt,json")
    assert result.exit_code == 0
    assert (tmp_path / "silence.txt").read_text() == ""
    assert json.loads((tmp_path / "silence.json").read_text())["segments"] == []


def test_quiet_noise_gives_no_words(tmp_path):
    noise = (np.random.default_rng(1).standard_normal(16000 * 5) * 0.003).astype(np.float32)
    path = write_wav(tmp_path / "noise.wav", noise)
    result = invoke("transcribe", str(path), "--no-vad")
    assert result.exit_code == 0
    assert result.stdout.strip() == ""


@pytest.fixture()
def bad_files(tmp_path, sentence_wav):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.wav").write_bytes(b"")
    (d / "text.mp3").write_text("this is not audio\n" * 20)
    good = sentence_wav.read_bytes()
    (d / "truncated.wav").write_bytes(good[: len(good) // 3])
    write_wav(d / "zero.wav", np.zeros(0, dtype=np.float32))
    (d / "folder").mkdir()
    return d


@pytest.mark.parametrize(
    "name,needle",
    [
        ("missing.wav", "no such file"),
        ("folder", "directory"),
        ("empty.wav", "empty file"),
        ("text.mp3", "not an audio file"),
        ("truncated.wav", "truncated"),
        ("zero.wav", "no audio"),
    ],
)
def test_bad_input_one_line_error(bad_files, name, needle):
    result = invoke("transcribe", str(bad_files / name))  # (a real process: test_real_subprocess_and_stdin)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, name, needle)
    assert result.stdout == ""


def test_unknown_format_and_unwritable_dir(sentence_wav, tmp_path):
    result = invoke("transcribe", str(sentence_wav), "--format", "docx")
    assert result.exit_code != 0
    assert_one_line_error(result.stderr, "unknown format 'docx'")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(locked, os.W_OK):  # running as root: permissions are not enforced
        target = tmp_path / "missing-dir"
        needle = "does not exist"
    else:
        target, needle = locked, "not writable"
    result = invoke("transcribe", str(sentence_wav), "-o", str(target))
    assert result.exit_code != 0
    assert_one_line_error(result.stderr, needle)


def test_one_bad_file_does_not_stop_the_others(bad_files, sentence_wav, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    result = run_cli("transcribe", str(bad_files / "text.mp3"), str(sentence_wav), "-o", str(out))
    assert result.returncode == 1
    assert (out / "sentence.txt").is_file()
    assert wer(SENTENCE, (out / "sentence.txt").read_text()) <= MAX_WER
    err = result.stderr.decode()
    assert "text.mp3" in err and "1 of 2 files transcribed, 1 failed" in err


def test_english_only_model_rejects_other_language(sentence_wav):
    from voicechat import models

    # (without --model, another language picks the bundled multilingual Whisper)
    result = invoke("transcribe", str(sentence_wav), "--language", "fr", "--model", models.whisper_model())
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "English only")


def test_unknown_model_name_is_clear_offline(sentence_wav):
    result = invoke("transcribe", str(sentence_wav), "--model", "small.en")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "small.en", "voicechat models pull small.en")


def test_debug_shows_traceback(bad_files):
    result = run_cli("--debug", "transcribe", str(bad_files / "empty.wav"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr.decode()


def test_batched_inference(sentence_wav):
    result = invoke("transcribe", str(sentence_wav), "--batch-size", "4")
    assert result.exit_code == 0, result.stderr
    assert wer(SENTENCE, result.stdout) <= MAX_WER
