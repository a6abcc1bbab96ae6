"""Replicas behind HAProxy on one PostgreSQL history: throughput, failover, and history write latency.

    python bench/replicas.py [--rounds 3] [--clients 4] [--requests 3] [--kills 3] [--turns 200]

1. Requests per second and p50/p95 of transcription (a 3 s clip) and chat (a short reply) from
   ``--clients`` concurrent clients through the balancer, with one replica behind it and with two
   (the same two processes; one balancer names one of them, the other both), measured alternately
   round by round; the ratio two/one. On one 2-core machine a second replica adds no cores, so
   the ratio shows the cost of spreading, not a gain; on two machines it would be up to ~2x.
2. Without service: a voice client whose replica is SIGKILLed mid-reply reconnects through the
   balancer with its session id; the time from the kill until the other replica has resumed the
   session (its ``session`` event), and until the first words of the next reply.
3. History write latency per turn (``History.add_turn``: one transaction, committed) on SQLite as
   shipped (WAL, synchronous=NORMAL), SQLite with synchronous=FULL (an fsync per commit, as
   PostgreSQL does), and PostgreSQL over loopback TCP; rounds alternate.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import med, p95, speech
from bench.serve import load, write
from tests.balancer import Balancer
from tests.pgserver import PostgresServer
from tests.serveproc import ServeProcess
from tests.voiceclient import VoiceClient

LONG = "Count from one to fifty, writing every number as a word, separated by commas."


class Via:
    """What bench.serve.load needs of a server: a url and a status."""

    def __init__(self, url: str) -> None:
        self.url = url

    def status(self, path: str) -> int:
        import urllib.request

        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.status


def start(servers: list[ServeProcess]) -> None:
    threads = [threading.Thread(target=s.start) for s in servers if s.proc is None or s.proc.poll() is not None]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def throughput(one: Balancer, two: Balancer, clip: Path, args) -> None:
    print(f"\n== through the balancer: {args.clients} clients x {args.requests} requests, {args.rounds} rounds (medians of the rounds) ==")
    rows: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for route in ("transcribe", "chat"):
            for name, balancer in (("1 replica", one), ("2 replicas", two)):
                rows.setdefault((route, name), []).append(load(Via(balancer.url), clip, args.clients, args.requests, route))
    print(f"{'route':11s} {'behind':11s} {'ok/s':>6s} {'p50 s':>7s} {'p95 s':>7s}  statuses")
    for (route, name), runs in rows.items():
        codes: dict[int, int] = {}
        for r in runs:
            for k, v in r["codes"].items():
                codes[k] = codes.get(k, 0) + v
        print(
            f"{route:11s} {name:11s} {med([r['ok_per_s'] for r in runs]):6.2f} {med([r['p50'] for r in runs]):7.2f} "
            f"{med([r['p95'] for r in runs]):7.2f}  {codes}"
        )
    for route in ("transcribe", "chat"):
        ratio = med([r["ok_per_s"] for r in rows[(route, "2 replicas")]]) / med([r["ok_per_s"] for r in rows[(route, "1 replica")]])
        print(f"{route}: requests/s with two replicas / with one = {ratio:.2f}x (one machine, 2 cores: no cores added)")


def failover(servers: list[ServeProcess], two: Balancer, kills: int) -> None:
    print(f"\n== without service after a SIGKILL mid-reply ({kills} kills) ==")
    to_session, to_reply = [], []
    for _ in range(kills):
        start(servers)
        two.wait_up(2)
        c = VoiceClient(two.url)
        c.wait_for(lambda e: e["type"] == "session")
        c.send({"type": "text", "text": "My name is Ana."})
        c.wait_for(lambda e: e["type"] == "session" and e.get("id"))
        session = c.of("session")[-1]["id"]
        holder = next(s for s in servers if s.metric("voicechat_active_sessions") > 0)
        mark = c.events[-1]
        c.send({"type": "text", "text": LONG})
        c.wait_for(lambda e: e["type"] == "reply_delta", after=mark)
        holder.proc.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        c.closed(30)
        c.close()
        while True:  # what a client does: reconnect at once with its session id, again on a refusal
            again = VoiceClient(two.url, query=f"session={session}")
            try:
                hello = again.wait_for(lambda e: e["type"] == "session", timeout=30)
                break
            except AssertionError:
                again.close()
                time.sleep(0.05)
        to_session.append(time.perf_counter() - killed)
        assert hello["resumed_turns"] == 1, hello
        again.send({"type": "text", "text": "What is my name?"})
        again.wait_for(lambda e: e["type"] == "reply_delta")
        to_reply.append(time.perf_counter() - killed)
        again.close()
        holder.stop()
    print(
        f"kill -> session resumed on the other replica: median {med(to_session) * 1000:.0f} ms "
        f"(each: {', '.join(f'{x * 1000:.0f}' for x in to_session)})"
    )
    print(
        f"kill -> first words of the next reply:        median {med(to_reply) * 1000:.0f} ms "
        f"(each: {', '.join(f'{x * 1000:.0f}' for x in to_reply)}; includes the model's first token)"
    )


def write_latency(pg: PostgresServer, turns: int, rounds: int) -> None:
    from voicechat.conversation.history import History, Turn

    print(f"\n== history write latency per turn ({turns} turns x {rounds} rounds, alternating) ==")
    tmp = Path(tempfile.mkdtemp(prefix="vc-bench-"))
    stores = {
        "sqlite (WAL, synchronous=NORMAL, as shipped)": History(tmp / "h.sqlite3"),
        "sqlite (WAL, synchronous=FULL)": History(tmp / "full.sqlite3"),
        "postgresql (loopback TCP, fsync on)": History(pg.new_database()),
    }
    stores["sqlite (WAL, synchronous=FULL)"].db.execute("PRAGMA synchronous=FULL")
    times: dict[str, list[float]] = {k: [] for k in stores}
    sessions = {k: h.new_session("talk") for k, h in stores.items()}
    text = "a reply of a few sentences, " * 8
    for _ in range(rounds):
        for name, h in stores.items():
            for i in range(turns):
                t = time.perf_counter()
                h.add_turn(sessions[name], Turn(f"question {i}", text, latency={"voice_to_voice": 0.8}))
                times[name].append(time.perf_counter() - t)
    base = med(times["sqlite (WAL, synchronous=NORMAL, as shipped)"])
    for name, values in times.items():
        print(f"{name:46s} p50 {med(values) * 1000:6.2f} ms  p95 {p95(values) * 1000:6.2f} ms  ({med(values) / base:5.1f}x)")
    for h in stores.values():
        h.close()
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--turns", type=int, default=200)
    args = ap.parse_args()
    pg = PostgresServer().start()
    work = Path(tempfile.mkdtemp(prefix="vc-replicas-"))
    try:
        url = pg.new_database()
        env = {"VOICECHAT_HISTORY_URL": url}
        servers = [ServeProcess(work / f"r{n}", config="llm:\n  max_tokens: 32\n", env=env) for n in (1, 2)]
        start(servers)
        clip = write(work / "clip.wav", np.concatenate([speech("What is the capital of France?"), np.zeros(8000, np.float32)]))
        for name in ("one", "two"):
            (work / name).mkdir()
        with Balancer(work / "one", [servers[0].port]) as one, Balancer(work / "two", [s.port for s in servers]) as two:
            one.wait_up(1)
            two.wait_up(2)
            throughput(one, two, clip, args)
            failover(servers, two, args.kills)
        for s in servers:
            s.stop()
        write_latency(pg, args.turns, args.rounds)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
