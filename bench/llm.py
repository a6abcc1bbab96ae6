"""Benchmark: time to first token and tokens/s through voicechat's llama-cpp engine against the raw
llama_cpp call, same model (bundled SmolLM2), same settings, same prompts, alternated in one process.
Goal: overhead <= 10 %.

    python bench/llm.py [--runs 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import med

PROMPTS = ["What is the capital of France?", "Give me a tip for sleeping better.", "Describe the sea in two sentences."]
SYSTEM = "You are a helpful assistant."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=96)
    args = ap.parse_args()

    import llama_cpp

    from voicechat import models
    from voicechat.config import resolve
    from voicechat.engines import registry
    from voicechat.engines.base import Message, TextDelta

    cfg = resolve(overrides={"llm.threads": args.threads, "llm.temperature": 0.0, "llm.max_tokens": args.max_tokens})
    engine = registry.create("llm", cfg)
    raw = llama_cpp.Llama(
        model_path=models.smollm2_gguf(),
        n_ctx=cfg.llm.context_size,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_gpu_layers=0,
        verbose=False,
    )

    def run_engine(prompt: str) -> tuple[float, float, int]:
        t = time.perf_counter()
        first, n = None, 0
        for ev in engine.stream([Message("system", SYSTEM), Message("user", prompt)]):
            if isinstance(ev, TextDelta):
                n += 1
                first = first or time.perf_counter() - t
        return first, time.perf_counter() - t, n

    def run_raw(prompt: str) -> tuple[float, float, int]:
        t = time.perf_counter()
        first, n = None, 0
        for chunk in raw.create_chat_completion(
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
            stream=True,
            temperature=0.0,
            max_tokens=args.max_tokens,
        ):
            if chunk["choices"][0]["delta"].get("content"):
                n += 1
                first = first or time.perf_counter() - t
        return first, time.perf_counter() - t, n

    run_engine(PROMPTS[0]), run_raw(PROMPTS[0])  # warm up both
    res = {"voicechat": [], "raw": []}
    for _ in range(args.runs):
        for p in PROMPTS:
            res["voicechat"].append(run_engine(p))
            res["raw"].append(run_raw(p))

    def stats(rows):
        ttft = med([r[0] for r in rows])
        tps = med([(r[2] - 1) / (r[1] - r[0]) for r in rows if r[2] > 1])
        return ttft, tps

    (vt, vs), (rt, rs) = stats(res["voicechat"]), stats(res["raw"])
    print(
        f"SmolLM2-135M Q4_1, {args.threads} threads, temperature 0, {args.runs} x {len(PROMPTS)} prompts alternated, medians ({os.cpu_count()} cores)"
    )
    print(f"  raw llama_cpp      first token {rt * 1000:6.1f} ms   {rs:6.1f} tok/s")
    print(f"  voicechat engine   first token {vt * 1000:6.1f} ms   {vs:6.1f} tok/s")
    print(f"  overhead           first token {100 * (vt / rt - 1):+5.1f} %   throughput {100 * (1 - vs / rs):+5.1f} %   (goal <= 10 %)")


if __name__ == "__main__":
    main()
