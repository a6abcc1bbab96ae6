"""Long recordings: windows, decoding ahead, batching, streamed stdin, bounded memory, subtitles."""

from __future__ import annotations

import json
import subprocess
import threading
from itertools import pairwise

import numpy as np
import pytest
import srt
from typer.testing import CliRunner

from tests.helpers import VOICECHAT, assert_one_line_error, run_cli, speak, wer
from voicechat.cli import app
from voicechat.engines.base import Segment, Word
from voicechat.errors import VoicechatError
from voicechat.transcription import longform

runner = CliRunner()
SENTENCES = [
    "The library opens at nine in the morning and closes at five.",
    "Our train left the station a few minutes late that day.",
    "Fresh bread needs flour, water, salt and a little patience.",
    "The hiking trail climbs through a quiet pine forest.",
]


# --- windows and the decoder thread (no model) ---------------------------------------------


def test_windows_cut_at_the_quiet_moment_and_lose_nothing():
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(16000 * 50) * 0.1).astype(np.float32)
    audio[16000 * 17 : 16000 * 17 + 4000] = 0.0  # a quarter second of silence near the first window's end
    blocks = np.array_split(audio, 37)
    wins = list(longform.windows(blocks, window_seconds=20))
    assert np.array_equal(np.concatenate([w.audio for w in wins]), audio)
    assert all(len(w.audio) <= 20 * 16000 for w in wins)
    assert 17 * 16000 <= len(wins[0].audio) <= 17 * 16000 + 4000
    assert [w.offset for w in wins] == pytest.approx(np.cumsum([0] + [len(w.audio) / 16000 for w in wins[:-1]]))


class FakeStream:
    def __init__(self, name, seconds, fail_at=None):
        self.name, self.duration, self.sample_rate, self.samples = name, float(seconds), 16000, 0
        self._seconds, self._fail_at = seconds, fail_at

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def __iter__(self):
        for i in range(self._seconds):
            if i == self._fail_at:
                raise VoicechatError(f"{self.name}: corrupt")
            self.samples += 16000
            yield np.full(16000, 0.1, np.float32)


def fake_open(source):
    if source.startswith("missing"):
        raise VoicechatError(f"{source}: no such file")
    name, seconds, *fail = source.split(":")
    return FakeStream(name, int(seconds), int(fail[0]) if fail else None)


def test_prefetcher_keeps_order_reports_errors_and_joins():
    got = []
    with longform.Prefetcher(["a:25", "missing", "b:7:3", "c:12"], fake_open, window_seconds=10) as pre:
        for _index, events in pre.files():
            got.append([type(e).__name__ for e in events])
        thread = pre._thread
    assert got == [
        ["Opened", "Window", "Window", "Window", "Done"],
        ["Failed"],
        ["Opened", "Failed"],
        ["Opened", "Window", "Window", "Done"],
    ]
    assert not thread.is_alive()


def test_prefetcher_skips_the_rest_of_a_file_given_up_on():
    with longform.Prefetcher(["a:600", "b:5"], fake_open, window_seconds=10) as pre:
        seen = []
        for index, events in pre.files():
            for e in events:
                seen.append((index, type(e).__name__))
                if index == 0 and isinstance(e, longform.Window):
                    break  # a transcription error: leave the file
    assert seen == [(0, "Opened"), (0, "Window"), (1, "Opened"), (1, "Window"), (1, "Done")]


# --- streamed stdin and bounded memory (real subprocesses) ---------------------------------


def _feed_endless(data: bytes, limit: int = 64 * 2**20) -> tuple[subprocess.CompletedProcess, int]:
    """Pipe `data` over and over into `voicechat transcribe -`; return the result and the bytes it took."""
    p = subprocess.Popen([VOICECHAT, "transcribe", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sent = 0

    def feed():
        nonlocal sent
        try:
            while sent < limit:
                p.stdin.write(data)
                sent += len(data)
        except (BrokenPipeError, ValueError, OSError):
            pass
        finally:
            try:
                p.stdin.close()
            except OSError:
                pass

    writer = threading.Thread(target=feed)
    writer.start()
    out, err = p.stdout.read(), p.stderr.read()
    p.wait(timeout=120)
    writer.join(timeout=10)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), sent


def test_endless_text_on_stdin_is_refused_early():
    result, sent = _feed_endless(b"not audio\n" * 6554)  # 64 KB a write, like `yes "not audio"`
    assert result.returncode == 1
    assert_one_line_error(result.stderr.decode(), "stdin", "not an audio file")
    assert sent < 2 * 2**20, f"read {sent} bytes before refusing"


def test_endless_binary_junk_on_stdin_is_refused_within_the_probe():
    junk = np.random.default_rng(3).integers(0, 256, 65536, dtype=np.uint8).tobytes()
    result, sent = _feed_endless(junk)
    assert result.returncode == 1
    assert_one_line_error(result.stderr.decode(), "stdin")
    assert sent < 8 * 2**20, f"read {sent} bytes before refusing"


def _silent_wav(path, hours: float):
    import soundfile as sf

    block = np.zeros(16000 * 60, np.int16)
    with sf.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(int(hours * 60)):
            f.write(block)
    return path


def _peak_rss_mb(cmd: list[str], stdin=None) -> tuple[int, float, bytes]:
    """Run cmd from a small wrapper process and read the peak RSS of cmd alone. (A child forked straight
    from pytest would count pytest's own pages, models included, until it starts its program.)"""
    import json
    import sys

    wrapper = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], stdin=sys.stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
        "print(json.dumps([p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, len(p.stdout)]))"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], stdin=stdin, capture_output=True, check=True)
    code, maxrss, out_len = json.loads(done.stdout)
    return code, maxrss / 1024, b"x" * out_len


def test_two_hours_of_audio_in_bounded_memory(tmp_path):
    """2 h of 16 kHz audio is 460 MB as float32; the whole file must never be held (it was: 1.74 GB peak)."""
    path = _silent_wav(tmp_path / "two-hours.wav", 2.0)
    code, peak, out = _peak_rss_mb([VOICECHAT, "transcribe", str(path)])
    assert code == 0 and out == b""
    assert peak < 700, f"peak RSS {peak:.0f} MB"
    with open(path, "rb") as fh:  # the same through a pipe
        code, peak, out = _peak_rss_mb([VOICECHAT, "transcribe", "-"], stdin=fh)
    assert code == 0 and out == b""
    assert peak < 700, f"peak RSS {peak:.0f} MB through stdin"


# --- real model: batching, windows, word times ---------------------------------------------


@pytest.fixture(scope="module")
def timed_speech(tmp_path_factory):
    """About 45 s: four sentences twice, with pauses, and where each one starts."""
    import soundfile as sf

    rng = np.random.default_rng(5)
    parts, onsets, texts, t = [], [], [], 0
    for _ in range(2):
        for s in SENTENCES:
            pause = np.zeros(int(rng.uniform(0.8, 2.5) * 16000), np.float32)
            audio = speak(s)
            lead = int(np.argmax(np.abs(audio) > 0.02))  # piper's own leading silence
            parts += [pause, audio]
            t += len(pause)
            onsets.append((t + lead) / 16000)
            texts.append(s)
            t += len(audio)
    path = tmp_path_factory.mktemp("long") / "timed.wav"
    sf.write(str(path), np.concatenate(parts + [np.zeros(16000, np.float32)]), 16000, subtype="PCM_16")
    return path, onsets, texts


def _json(*args, monkeypatch=None):
    result = runner.invoke(app, ["transcribe", *args, "-f", "json", "--word-timestamps"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("how", ["batched", "sequential", "small windows, batched"])
def test_word_times_match_where_sentences_start(timed_speech, how, monkeypatch):
    path, onsets, texts = timed_speech
    args = [str(path), "--batch-size", "0" if how == "sequential" else "4"]
    if "windows" in how:
        monkeypatch.setattr(longform, "WINDOW_SECONDS", 12.0)  # several windows: offsets must add up
    doc = _json(*args)
    assert wer(" ".join(texts), doc["text"]) <= 0.15, doc["text"]
    words = [w for s in doc["segments"] for w in s["words"]]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w["start"] <= w["end"] <= doc["duration"] + 0.05 for w in words)
    for s in doc["segments"]:
        assert s["start"] <= s["words"][0]["start"] + 1e-3 and s["words"][-1]["end"] <= s["end"] + 1e-3
    # every sentence's first word is placed where its speech begins. The first word is found by time,
    # not by its text: Piper's noise differs per run, and Whisper sometimes hears "Our" as "Are".
    # Pauses are at least 0.8 s, so no word of the sentence before starts 0.6 s ahead of an onset.
    for onset in onsets:
        first = min(w["start"] for w in words if w["start"] >= onset - 0.6)
        assert first < onset + 0.6, (how, onset, [round(s, 2) for s in starts])


def test_batching_is_chosen_by_length(monkeypatch):
    from voicechat.config import resolve
    from voicechat.engines import stt_faster_whisper as fw

    cfg = resolve(environ={})
    stt = fw.FasterWhisper(cfg.stt)
    limit = cfg.stt.batch_min_seconds
    assert stt.batch_size_for(limit - 1) == 0
    assert stt.batch_size_for(limit) == fw.CPU_BATCH_SIZE
    cfg.stt.batch_size = 0
    assert stt.batch_size_for(3600) == 0
    cfg.stt.batch_size = 3
    assert stt.batch_size_for(5) == 3
    calls = []
    real = stt._transcribe
    monkeypatch.setattr(
        stt, "_transcribe", lambda audio, language, batch, *rest: calls.append(batch) or real(audio, language, batch, *rest)
    )
    cfg.stt.batch_size = None
    list(stt.transcribe(np.zeros(16000 * int(limit + 5), np.float32)))
    assert calls == [0], "talk's transcribe() never batches unless asked"


def test_several_files_keep_their_order_and_errors(timed_speech, sentence_wav, tmp_path):
    path, _, texts = timed_speech
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    result = run_cli("transcribe", str(sentence_wav), str(bad), str(path), str(sentence_wav))
    assert result.returncode == 1
    out = result.stdout.decode()
    heads = [line for line in out.splitlines() if line.startswith("==> ")]
    assert heads == [f"==> {sentence_wav} <==", f"==> {path} <==", f"==> {sentence_wav} <=="]
    assert wer(" ".join(texts), out.split(f"==> {path} <==")[1].split("==>")[0]) <= 0.15
    err = result.stderr.decode()
    assert "bad.wav" in err and "3 of 4 files transcribed, 1 failed" in err


# --- subtitles -------------------------------------------------------------------------------


def _w(text, start, end):
    return Word(start, end, " " + text)


def _segment(words):
    return Segment(words[0].start, words[-1].end, "".join(w.text for w in words).strip(), tuple(words))


def test_cues_end_at_sentences_and_wrap_lines():
    from voicechat.transcription.subtitles import SubtitleOptions, timed_texts

    text = "Good morning. Dr. Smith will see you now, so please take a seat in the waiting room. Thanks!"
    words = [_w(t, i * 0.4, i * 0.4 + 0.3) for i, t in enumerate(text.split())]
    seg = _segment(words)
    plain = timed_texts([seg], SubtitleOptions())
    assert [t for _, _, t in plain] == [
        "Good morning.",
        "Dr. Smith will see you now, so please take a seat in the waiting room.",
        "Thanks!",
    ]
    assert plain[0][1] == pytest.approx(words[1].end) and plain[1][0] == pytest.approx(words[2].start)
    wrapped = timed_texts([seg], SubtitleOptions(max_line_width=20, max_line_count=2))
    for _, _, cue in wrapped:
        lines = cue.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 20 for line in lines), cue
    assert " ".join(t.replace("\n", " ") for _, _, t in wrapped) == text
    per_line = timed_texts([seg], SubtitleOptions(max_words_per_line=3))
    assert all(len(line.split()) <= 3 for _, _, t in per_line for line in t.split("\n"))


def test_highlight_words_one_cue_per_word():
    from voicechat.transcription.subtitles import SubtitleOptions, timed_texts

    words = [_w("one", 0.0, 0.5), _w("two", 1.0, 1.5), _w("three.", 1.5, 2.0)]
    cues = timed_texts([_segment(words)], SubtitleOptions(highlight_words=True))
    assert cues == [
        (0.0, 0.5, "<u>one</u> two three."),
        (0.5, 1.0, "one two three."),
        (1.0, 1.5, "one <u>two</u> three."),
        (1.5, 2.0, "one two <u>three.</u>"),
    ]


def test_segments_without_word_times_split_by_characters():
    from voicechat.transcription.subtitles import split_sentences

    parts = split_sentences([Segment(10.0, 20.0, "First one. Second sentence here!")])
    assert [p.text for p in parts] == ["First one.", "Second sentence here!"]
    assert parts[0].start == 10.0 and parts[-1].end == pytest.approx(20.0) and parts[0].end == pytest.approx(parts[1].start)


def test_subtitle_options_on_the_command_line(timed_speech, tmp_path):
    path, _, texts = timed_speech
    result = run_cli("transcribe", str(path), "-o", str(tmp_path), "-f", "srt,vtt", "--max-line-width", "24", "--max-line-count", "2")
    assert result.returncode == 0, result.stderr.decode()
    subs = list(srt.parse((tmp_path / "timed.srt").read_text()))
    assert wer(" ".join(texts), " ".join(s.content for s in subs)) <= 0.15
    for s in subs:
        lines = s.content.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 24 or " " not in line for line in lines), s.content
        # a cue never runs on past a sentence end
        assert not any(ch in s.content.rstrip()[:-1] for ch in ".!?") or "Dr." in s.content, s.content
    assert all(a.end <= b.start for a, b in pairwise(subs))
    result = run_cli("transcribe", str(path), "-f", "vtt", "--highlight-words")
    assert result.returncode == 0
    assert result.stdout.decode().count("<u>") >= len(" ".join(texts).split()) * 0.8
    result = run_cli("transcribe", str(path), "--max-line-count", "2")
    assert result.returncode == 1
    assert_one_line_error(result.stderr.decode(), "--max-line-count needs")


def test_clips_end_at_the_longest_pause_and_leftovers_get_another_pass():
    from types import SimpleNamespace

    from voicechat.engines.stt_faster_whisper import leftovers, merge_clips

    speech = [(0, 8), (8.2, 16), (17.5, 25), (25.2, 29), (29.3, 40), (41, 45)]
    clips = merge_clips(speech, 30)
    assert clips == [(0, 16), (17.5, 45)], "cut at the 1.5 s pause, not at the 0.2 s ones"
    assert merge_clips([(0, 5)], 30) == [(0, 5)]

    def seg(a: float, b: float) -> SimpleNamespace:
        return SimpleNamespace(start=a, end=b)

    # the model stopped at 10 s of a clip that talks on until 16 s: decode 10-16 again
    assert leftovers([(0, 16)], [seg(0, 4), seg(4, 10)], speech) == [(10, 16)]
    assert leftovers([(0, 16)], [seg(0, 15)], speech) == []  # close enough to the end
    assert leftovers([(0, 16)], [], speech) == [], "nothing found: the same input would give the same nothing"
