"""Benchmark: voice-to-voice latency of `talk`, against a naive pipeline and the raw critical path.

A recorded conversation (10+ questions spoken by piper, silence between) is played
into the real talk pipeline in real time (the file stands in for the microphone;
replies go to a virtual sound card). Per turn we take the moment the end rule
fires (end of speech + listen.end_silence_ms) to the first reply sample handed to
the output device, and each stage's share. Then, in the same process, on the same
utterances and with the same engines and prompts:
  - naive: transcribe, wait for the whole reply, synthesize all of it, then play;
  - raw critical path: raw faster-whisper on the utterance + raw llama.cpp first token
    + raw piper synthesis of voicechat's first chunk, each timed alone.
Goals: voicechat <= 1.15x raw, <= 0.5x naive. Also the peak RSS of `voicechat talk`
with the default engines (goal <= 800 MB).

    python bench/latency.py [--turns 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import BIN, med, p95, speech  # noqa: E402

from tests.soundcard import AlsaFileCard  # noqa: E402

QUESTIONS = [
    "What is the capital of France?", "How many legs does a spider have?", "What colour is the sky?",
    "Name a fruit that is yellow.", "What is two plus two?", "Where do penguins live?",
    "What do bees make?", "How many days are in a week?", "What is the largest ocean?",
    "Which planet is closest to the sun?", "What do cows drink?", "What is frozen water called?",
]
GAP_S = 12.0
# An assistant that answers in a few sentences, as voice assistants do; a one-word answer leaves nothing to stream.
SYSTEM = "You are a friendly voice assistant. Answer in English, in three or four plain sentences."  # silence after each question: room for the reply, as in a real conversation


def build_conversation(n: int, path: Path) -> None:
    import soundfile as sf

    parts = [np.zeros(8000, dtype=np.float32)]
    for q in QUESTIONS[:n]:
        parts += [speech(q), np.zeros(int(16000 * GAP_S), dtype=np.float32)]
    sf.write(str(path), np.concatenate(parts), 16000, subtype="PCM_16")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vc-latency-"))
    conv = tmp / "conversation.wav"
    build_conversation(args.turns, conv)
    os.environ.update({"VOICECHAT_DATA_DIR": str(tmp / "data"), "VOICECHAT_CONFIG_DIR": str(tmp / "cfg"), "VOICECHAT_CACHE_DIR": str(tmp / "cache")})

    from voicechat.audio import Speaker
    from voicechat.config import resolve
    from voicechat.engines import registry
    from voicechat.engines.base import TextDelta
    from voicechat.session import ChatSession
    from voicechat.talk import events as ev
    from voicechat.talk.pipeline import Pipeline
    from voicechat.talk.sources import FileSource

    cfg = resolve(overrides={"llm.temperature": 0.0, "llm.max_tokens": 96, "llm.system_prompt": SYSTEM})
    with AlsaFileCard(tmp / "card") as card:
        os.environ["VC_SPEAKER_FILE"] = "/dev/null"
        stt, llm, tts = (registry.create(k, cfg, concurrent=True) for k in ("stt", "llm", "tts"))
        utterances: list[np.ndarray] = []
        real_transcribe = stt.transcribe

        def recording_transcribe(audio, **kw):
            utterances.append(audio.copy())
            return real_transcribe(audio, **kw)

        stt.transcribe = recording_transcribe
        stats: list[dict] = []
        turns: list[tuple[str, str]] = []
        pending: dict = {}

        def emit(e: ev.Event) -> None:
            if isinstance(e, ev.UserText):
                pending["user"] = e.text
            elif isinstance(e, ev.ReplyDone):
                turns.append((pending.get("user", ""), e.text))
            elif isinstance(e, ev.TurnStats):
                stats.append(e.latency)

        session = ChatSession(cfg, llm, kind="talk", log=False)
        session.memory.add = lambda user, reply: None  # no memory: each turn sends [system, question] in every pipeline
        with FileSource(conv, cfg.listen.frame_ms) as source, Speaker("vc_speaker", sample_rate=tts.sample_rate) as speaker:
            pipe = Pipeline(cfg, stt, tts, session, source=source, sink=speaker, emit=emit)
            pipe.start()
            while not (source.exhausted and pipe.idle):
                time.sleep(0.05)
            pipe.shutdown()
        stt.transcribe = real_transcribe
        n = min(len(stats), len(utterances))
        vc = [s["first_audio"] for s in stats[:n]]
        share = {k: med([s[k] for s in stats[:n] if k in s]) for k in ("stt", "first_token", "first_chunk")}

        # naive and raw, same turns, same engines
        naive, raw = [], []
        from voicechat import sentences

        def prime(i: int) -> None:
            """Leave llama.cpp's prompt cache as voicechat found it: holding the previous turn, not this one."""
            for _ in llm.stream(session.memory.messages_for(QUESTIONS[(i + 1) % len(QUESTIONS)] + " Briefly.")):
                pass

        with Speaker("vc_speaker", sample_rate=tts.sample_rate) as speaker:
            for i in range(n):
                audio = utterances[i]
                messages = session.memory.messages_for(turns[i][0])
                prime(i)
                t = time.perf_counter()
                text = " ".join(s.text for s in real_transcribe(audio))
                t_stt = time.perf_counter() - t
                reply = "".join(e.text for e in llm.stream(session.memory.messages_for(text)) if isinstance(e, TextDelta))
                chunks = [c for ch in sentences.chunks(reply) for c in tts.synthesize(ch)]
                speaker.reset()
                for c in chunks:
                    speaker.play(c)
                speaker.drain()
                naive.append(speaker.first_audio_at - t)
                if os.environ.get("BENCH_DEBUG"):
                    print(f"turn {i}: stt {t_stt:.2f} naive {naive[-1]:.2f} voicechat {stats[i]} reply {len(reply.split())} words /"
                          f" voicechat reply {len(turns[i][1].split())} words: {turns[i][1][:60]!r}", flush=True)
                # raw engine minimums, each alone
                t = time.perf_counter()
                list(stt.model.transcribe(audio, beam_size=cfg.stt.beam_size, vad_filter=cfg.stt.vad_filter,
                                          condition_on_previous_text=False)[0])
                r_stt = time.perf_counter() - t
                prime(i)
                t = time.perf_counter()
                stream = llm.llm.create_chat_completion(messages=[{"role": m.role, "content": m.content} for m in messages],
                                                        stream=True, temperature=0.0, max_tokens=96)
                for chunk in stream:
                    if chunk["choices"][0]["delta"].get("content"):
                        break
                r_tok = time.perf_counter() - t
                stream.close()
                first_chunk = next(sentences.chunks(turns[i][1] or reply), "Okay.")
                t = time.perf_counter()
                next(iter(tts.voice.synthesize(first_chunk, tts.syn)))
                r_tts = time.perf_counter() - t
                raw.append(r_stt + r_tok + r_tts)
        card_dir = card.dir
    del card_dir
    endpoint = cfg.listen.end_silence_ms / 1000
    print(f"{n} turns played in real time; medians and p95 over turns; endpoint wait (listen.end_silence_ms) {endpoint:.2f} s")
    print(f"  voicechat talk   end rule -> first audio  p50 {med(vc):5.2f} s  p95 {p95(vc):5.2f} s"
          f"   (voice-to-voice incl. endpoint p50 {med(vc) + endpoint:.2f} s)")
    print(f"     stage shares (p50): transcript {share['stt']:.2f} s, first token {share['first_token']:.2f} s,"
          f" rest of the first chunk written {share['first_chunk'] - share['stt'] - share['first_token']:.2f} s,"
          f" its synthesis + device {med(vc) - share['first_chunk']:.2f} s")
    print(f"  naive sequential end rule -> first audio  p50 {med(naive):5.2f} s  p95 {p95(naive):5.2f} s")
    print(f"  raw critical path (STT + first token + first chunk)  p50 {med(raw):5.2f} s  p95 {p95(raw):5.2f} s")
    print(f"  ratio voicechat / raw    p50 {med(vc) / med(raw):.2f}   (goal <= 1.15)")
    print(f"  ratio voicechat / naive  p50 {med(vc) / med(naive):.2f}   (goal <= 0.5)")

    # peak memory of the real command with the default engines, read by a small wrapper process
    # (a child forked from this big process would report this process's pages as its peak)
    short = tmp / "short.wav"
    import soundfile as sf

    audio, _ = sf.read(str(conv), dtype="float32")
    sf.write(str(short), audio[: int(16000 * (3 * GAP_S))], 16000)
    env = {**os.environ, "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"}
    wrapper = ("import resource, subprocess, sys\n"
               "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, str(BIN / "voicechat"), "talk", "--input", str(short), "--fast",
                          "--output", str(tmp / "r.wav"), "--no-log"], check=True, capture_output=True, text=True, env=env)
    peak = int(out.stdout.strip()) / 1024
    print(f"  peak RSS of `voicechat talk` (default config: Whisper + SmolLM2 + Piper, 3 turns)  {peak:.0f} MB   (goal <= 800)")
    env["VOICECHAT_LLM_SYSTEM_PROMPT"] = SYSTEM
    out = subprocess.run([sys.executable, "-c", wrapper, str(BIN / "voicechat"), "talk", "--input", str(short), "--fast",
                          "--output", str(tmp / "r.wav"), "--no-log"], check=True, capture_output=True, text=True, env=env)
    print(f"  peak RSS with the bench's longer replies                                        {int(out.stdout.strip()) / 1024:.0f} MB")


if __name__ == "__main__":
    main()
