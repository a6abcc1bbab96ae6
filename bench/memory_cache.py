"""Benchmark: what a full conversation costs each turn on the local model, by how the memory drops old rounds.

A conversation of --turns questions runs through voicechat's Conversation and the bundled SmolLM2 (llama.cpp),
as `talk` drives it: at the end of each question the chat model reads it (the end-of-turn reading, which also
leaves the prompt evaluated), then the reply is streamed and recorded. llama.cpp keeps the prompt it read last
and reuses the part that did not change, so what matters is where the new prompt first differs from it.

  current   the memory keeps where the rounds sent begin until a limit is passed, then drops to half of it;
  previous  the memory before: the newest rounds that fit, so once full one round goes at every turn and the
            prompt changes right after the system prompt.

Both designs run the same questions with the same settings (memory.max_rounds, memory.max_context_tokens as
configured, or --rounds/--budget), alternated turn by turn in one process, each with its own llama.cpp instance.
Printed per design: prompt tokens evaluated at the reading, the reading's time, and the reply's first token
after the reading, p50/p95 over the turns once the memory is full (and over all turns); and the ratio
current/previous.

    python bench/memory_cache.py [--turns 24] [--rounds 8] [--budget 1536] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import med, p95

QUESTIONS = [
    "What is the capital of France?",
    "How tall is the Eiffel Tower?",
    "Name a good book about the sea.",
    "Why is the sky blue?",
    "Give me a tip for sleeping better.",
    "What do cats eat?",
    "How far away is the moon?",
    "What is a prime number?",
    "Tell me a fact about octopuses.",
    "How do I boil an egg?",
    "What is the largest ocean?",
    "Who painted the Mona Lisa?",
]


def previous_messages(memory, user_text):  # (the rule before, for comparison)
    from voicechat.engines.base import Message

    rounds = memory.rounds[-memory.max_rounds :] if memory.max_rounds > 0 else list(memory.rounds)
    budget = memory.max_context_tokens - memory._cost(memory.system_prompt) - memory._cost(user_text)
    kept = []
    for q, a in reversed(rounds):
        cost = memory._cost(q) + memory._cost(a)
        if cost > budget:
            break
        budget -= cost
        kept.append((q, a))
    kept.reverse()
    messages = [Message("system", memory.system_prompt)] if memory.system_prompt else []
    for q, a in kept:
        messages += [Message("user", q), Message("assistant", a)]
    messages.append(Message("user", user_text))
    return messages


class Counted:
    """Counts the tokens llama.cpp evaluates (those past the prefix it reuses)."""

    def __init__(self, engine) -> None:
        self.engine, self.evaluated = engine, 0
        llm = engine.llm
        original = llm.eval

        def counting(tokens):
            self.evaluated += len(tokens)
            return original(tokens)

        llm.eval = counting


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=None, help="memory.max_rounds (default: the config's)")
    ap.add_argument("--budget", type=int, default=None, help="memory.max_context_tokens (default: the config's)")
    ap.add_argument("--max-tokens", type=int, default=48, help="each reply's length in tokens")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from voicechat.config import resolve
    from voicechat.conversation.chat import Conversation
    from voicechat.engines import registry

    overrides = {"llm.temperature": 0.0, "llm.max_tokens": args.max_tokens, "llm.threads": args.threads}
    if args.rounds is not None:
        overrides["memory.max_rounds"] = args.rounds
    if args.budget is not None:
        overrides["memory.max_context_tokens"] = args.budget
    cfg = resolve(overrides=overrides)
    designs = {}
    for name in ("current", "previous"):
        engine = registry.create("llm", cfg)
        conv = Conversation(cfg, engine, kind="talk", log=False)
        if name == "previous":
            memory = conv.memory
            memory.messages_for = lambda text, memory=memory: previous_messages(memory, text)
        counted = Counted(engine)
        conv.prefill("Hello.")
        designs[name] = {"conv": conv, "counted": counted, "rows": []}
    print(
        f"{args.turns} turns, memory.max_rounds {cfg.memory.max_rounds}, memory.max_context_tokens {cfg.memory.max_context_tokens}, "
        f"replies of at most {args.max_tokens} tokens, {args.threads} threads",
        flush=True,
    )
    for turn in range(args.turns):
        question = QUESTIONS[turn % len(QUESTIONS)]
        for d in designs.values():
            conv, counted = d["conv"], d["counted"]
            sent = len(conv.memory.messages_for(question)) // 2 - 1  # (system, rounds, question)
            counted.evaluated = 0
            t0 = time.perf_counter()
            conv.end_of_turn_probability(question)
            reading = time.perf_counter() - t0
            read_tokens = counted.evaluated
            first: list[float] = []
            t1 = time.perf_counter()
            reply = conv.stream_reply(question, lambda _delta, first=first, t1=t1: first or first.append(time.perf_counter() - t1))
            conv.record(question, reply.text, reply.usage)
            d["rows"].append(
                {"reading_s": reading, "read_tokens": read_tokens, "first_token_s": first[0] if first else None, "rounds": sent}
            )
        print(
            f"  turn {turn + 1:2}: "
            + "   ".join(
                f"{n}: {d['rows'][-1]['rounds']} rounds sent, reading {d['rows'][-1]['read_tokens']:4} tokens {d['rows'][-1]['reading_s']:.3f} s"
                for n, d in designs.items()
            ),
            flush=True,
        )
    full = max(1, cfg.memory.max_rounds) if cfg.memory.max_rounds > 0 else 0
    print(f"\nper design: p50 / p95 over the turns from turn {full + 1} on (the memory full), and over all turns")
    print(f"{'design':9} {'tokens read':>22} {'reading s':>22} {'first token s':>22} {'rounds sent':>12}")
    summary = {}
    for name, d in designs.items():
        rows = d["rows"][full:] or d["rows"]
        cols = []
        for key in ("read_tokens", "reading_s", "first_token_s"):
            values = [r[key] for r in rows if r[key] is not None]
            every = [r[key] for r in d["rows"] if r[key] is not None]
            summary[(name, key)] = med(values)
            cols.append(f"{med(values):.3g} / {p95(values):.3g} ({med(every):.3g})")
        cols.append(f"{min(r['rounds'] for r in rows)}-{max(r['rounds'] for r in rows)}")
        print(f"{name:9} {cols[0]:>22} {cols[1]:>22} {cols[2]:>22} {cols[3]:>12}")
    for key, label in (("read_tokens", "tokens read"), ("reading_s", "reading time")):
        print(f"ratio current/previous, {label} p50 (memory full): {summary[('current', key)] / max(1e-9, summary[('previous', key)]):.2f}")


if __name__ == "__main__":
    main()
