"""Benchmark: what a tool call adds to a turn, and what the tool definitions add to every prompt.

One turn (question -> reply) through voicechat's conversation with the bundled SmolLM2 in process,
measured three ways, alternated in one process: without tools (the baseline), with a calculator call
(tools.builtin: calculator, tools.force: calculator), and with a Wikipedia call against a loopback MediaWiki API (tools.force:
wikipedia). A tool turn is one more model round: the call is written, the tool runs, the model reads
the result and answers. Tokens: the prompt with and without the tool definitions, as llama.cpp reads
it (voicechat's tool format in the model's template) and as an OpenAI-compatible server is sent it
(the JSON tool list, counted with o200k_base).

    python bench/tools.py [--runs 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import med

QUESTIONS = {"calculator": "What is 12 times 7?", "wikipedia": "Who was Ada Lovelace?"}
SYSTEM = "You are a helpful assistant."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()

    from tests.mediawiki import MediaWikiServer
    from voicechat import tokens
    from voicechat.config import resolve
    from voicechat.conversation.chat import Conversation
    from voicechat.engines import llama_tools, registry
    from voicechat.engines.base import Message
    from voicechat.tools.box import build

    with MediaWikiServer() as wiki:
        base = {
            "llm.threads": args.threads,
            "llm.temperature": 0.0,
            "llm.max_tokens": args.max_tokens,
            "llm.system_prompt": SYSTEM,
            "tools.wikipedia_url": wiki.url,
            "tools.max_calls": 1,
            "history.enabled": False,
        }
        llm = registry.create("llm", resolve(overrides=base))
        configs = {
            "none": resolve(overrides=base),
            "calculator": resolve(overrides={**base, "tools.enabled": True, "tools.builtin": "calculator", "tools.force": "calculator"}),
            "wikipedia": resolve(overrides={**base, "tools.enabled": True, "tools.builtin": "wikipedia", "tools.force": "wikipedia"}),
        }
        boxes = {name: build(cfg, print) for name, cfg in configs.items() if cfg.tools.enabled}

        def turn(kind: str, question: str) -> tuple[float, float, int, int]:
            session = Conversation(configs[kind], llm, kind="chat", log=False, tools=boxes.get(kind))
            t = time.perf_counter()
            reply = session.stream_reply(question, lambda d: None)
            took = time.perf_counter() - t
            tool_s = sum(r.seconds for r in reply.tools)
            assert kind == "none" or len(reply.tools) == 1, reply.tools
            if reply.tools and reply.tools[0].error:  # the small model's arguments did not compute: said, not hidden
                print(f"  note: {kind} call failed: {reply.tools[0].text}")
            return took, tool_s, reply.usage.prompt_tokens, reply.usage.completion_tokens

        rows: dict[str, list] = {}
        for tool in ("calculator", "wikipedia"):
            turn("none", QUESTIONS[tool]), turn(tool, QUESTIONS[tool])  # warm up: caches, the server, the grammar
        for _ in range(args.runs):
            for tool in ("calculator", "wikipedia"):
                for kind in ("none", tool):
                    rows.setdefault(f"{kind}:{tool}", []).append(turn(kind, QUESTIONS[tool]))

        print(
            f"SmolLM2-135M Q4_1 in process, {args.threads} threads, temperature 0, max_tokens {args.max_tokens}, "
            f"{args.runs} runs alternated, medians ({os.cpu_count()} cores)"
        )
        for tool in ("calculator", "wikipedia"):
            plain, used = rows[f"none:{tool}"], rows[f"{tool}:{tool}"]
            t0, t1 = med([r[0] for r in plain]), med([r[0] for r in used])
            run_tool = med([r[1] for r in used])
            print(
                f"  {tool:<10} turn without tools {t0:6.3f} s   with one call {t1:6.3f} s   added {t1 - t0:+6.3f} s  "
                f"ratio {t1 / t0:5.2f}x   (the tool itself {run_tool * 1000:7.2f} ms; "
                f"tokens in+out {med([r[2] for r in plain]):.0f}+{med([r[3] for r in plain]):.0f} -> "
                f"{med([r[2] for r in used]):.0f}+{med([r[3] for r in used]):.0f})"
            )

        specs = build(resolve(overrides={**base, "tools.enabled": True}), print).specs()  # the default set of built-ins
        messages = [Message("system", SYSTEM), Message("user", QUESTIONS["wikipedia"])]
        plain_prompt = len(llm.llm.tokenize(llama_tools.render(llm.llm, messages, [])[0].encode(), special=True))
        with_tools = len(llm.llm.tokenize(llama_tools.render(llm.llm, messages, specs)[0].encode(), special=True))
        raw_prompt = sum(llm.count_tokens(m.content) + 4 for m in messages)
        enc = "o200k_base"
        listed = tokens.count(json.dumps([s.to_openai() for s in specs]), enc)
        print(f"  tool definitions of the default set ({', '.join(s.name for s in specs)}):")
        print(
            f"    llama.cpp prompt   {raw_prompt} tokens without tools -> {with_tools} with them "
            f"(+{with_tools - raw_prompt}, ratio {with_tools / raw_prompt:.1f}x; the format's own instructions with no tools: "
            f"{plain_prompt} tokens)"
        )
        print(f"    OpenAI tools JSON  {listed} tokens ({enc}) sent with every request")
        for box in boxes.values():
            box.close()
        llm.close()


if __name__ == "__main__":
    main()
