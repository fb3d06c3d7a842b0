"""The gateway (issue 16) on Gemma 3 270M, all ratios from one run:

1. **Overhead**: the same streamed ``/api/generate`` requests sent to a runner directly and
   through ``modelrunner gateway`` in front of it, alternating run by run: aggregate tokens/s
   (ratio gateway/direct) and time to first token (added ms), at 1 and 4 concurrent streams.
2. **Prefix affinity vs round-robin** (what a Service does): multi-turn chats, each with a long
   history of its own (a reference document, then every earlier turn), over 2 and 4 runner
   replicas (processes on loopback, one store, the same model): time to first token p50/p95 over
   all turns, aggregate generated tokens/s over the workload, and the share of prompt tokens the
   runners served from their KV cache. Every run's conversations are new, so no policy inherits
   another's caches.

Run: ``.venv/bin/python -m bench.bench_gateway [--runs N] [--conversations N] [--turns N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.report import machine, parse_args, publish
from bench.servers import free_port, json_events, process, runner_cmd, wait_ready

MODEL = "gemma3:270m"
WORDS = ["river", "mountain", "lantern", "harbor", "copper", "violet", "engine", "meadow", "signal", "archive", "orbit", "granite", "willow", "beacon", "canyon", "marble", "falcon", "cedar", "prism", "tundra", "ember", "glacier", "compass", "thicket", "quarry", "saffron", "delta", "nimbus", "ferry", "atlas"]  # fmt: skip


@dataclass
class Turn:
    ttft: float
    tokens: int


@dataclass
class Workload:
    turns: list[Turn] = field(default_factory=list)
    wall: float = 0.0
    prompt: float = 0.0
    cached: float = 0.0

    def p(self, q: float) -> float:
        values = sorted(t.ttft for t in self.turns)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    @property
    def rate(self) -> float:
        return sum(t.tokens for t in self.turns) / self.wall


async def stream(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> tuple[Turn, str]:
    start = time.perf_counter()
    first, text, count = 0.0, "", 0
    async for event in json_events(client, path, body):
        piece = event.get("response") or (event.get("message") or {}).get("content") or ""
        if piece and not first:
            first = time.perf_counter()
        text += piece
        if event.get("done"):
            count = int(event.get("eval_count", 0))
    return Turn((first or time.perf_counter()) - start, count), text


# ---------------------------------------------------------------------------- overhead
async def overhead_level(client: httpx.AsyncClient, n: int, tag: str, tokens: int) -> Workload:
    async def one(i: int) -> Turn:
        body = {"model": MODEL, "prompt": f"Story {tag}-{i}. Write about {WORDS[i]}.\n\n",
                "raw": True, "options": {"temperature": 0, "seed": i, "num_predict": tokens}}  # fmt: skip
        return (await stream(client, "/api/generate", body))[0]

    start = time.perf_counter()
    turns = await asyncio.gather(*(one(i) for i in range(n)))
    return Workload(list(turns), time.perf_counter() - start)


async def round_trips(
    direct: httpx.AsyncClient, via: httpx.AsyncClient, n: int
) -> tuple[list[float], list[float]]:
    """``POST /api/show`` (no inference: what the gateway itself adds to a request), alternating."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(n):
        for side, client in enumerate((direct, via)):
            start = time.perf_counter()
            (await client.post("/api/show", json={"model": MODEL})).raise_for_status()
            times[side].append((time.perf_counter() - start) * 1000)
    return times


# ---------------------------------------------------------------------------- conversations
def document(seed: str, words: int) -> str:
    rng = random.Random(seed)
    sentences: list[str] = []
    while sum(len(s.split()) for s in sentences) < words:
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + ".")
    return " ".join(sentences)


async def conversation(
    client: httpx.AsyncClient, tag: str, c: int, args: argparse.Namespace
) -> list[Turn]:
    history = [{"role": "system", "content": f"Conversation {tag}-{c}. Answer from this document:\n"
                + document(f"{tag}-{c}", args.history_words)}]  # fmt: skip
    out = []
    for t in range(args.turns):
        history.append(
            {
                "role": "user",
                "content": f"Question {t}: what comes after {WORDS[(c + t) % len(WORDS)]}?",
            }
        )
        body = {"model": MODEL, "messages": history, "stream": True,
                "options": {"temperature": 0, "seed": c, "num_predict": args.reply_tokens}}  # fmt: skip
        turn, text = await stream(client, "/api/chat", body)
        history.append({"role": "assistant", "content": text})
        out.append(turn)
    return out


async def cache_counts(urls: list[str]) -> tuple[float, float]:
    prompt = cached = 0.0
    async with httpx.AsyncClient(timeout=30) as client:
        for url in urls:
            for line in (await client.get(f"{url}/metrics")).text.splitlines():
                name, _, value = line.partition(" ")
                if name.startswith("modelrunner_prompt_tokens_total"):
                    prompt += float(value.split()[0])
                elif name.startswith("modelrunner_prompt_cached_tokens_total"):
                    cached += float(value.split()[0])
    return prompt, cached


async def chats(url: str, replicas: list[str], tag: str, args: argparse.Namespace) -> Workload:
    before = await cache_counts(replicas)
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(conversation(client, tag, c, args) for c in range(args.conversations))
        )
        wall = time.perf_counter() - start
    after = await cache_counts(replicas)
    return Workload([t for turns in results for t in turns], wall,
                    after[0] - before[0], after[1] - before[1])  # fmt: skip


# ---------------------------------------------------------------------------- processes
@contextlib.contextmanager
def gateway(tmp: Path, backends: list[str], policy: str) -> Any:
    port = free_port()
    cmd = [sys.executable, "-m", "modelrunner.cli", "gateway", "--listen", f"127.0.0.1:{port}",
           "--policy", policy, *[f for b in backends for f in ("--backend", b)]]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_GATEWAY_")}
    with process(
        cmd, env | {"MODELRUNNER_GATEWAY_LOG_LEVEL": "warning"}, tmp / f"gateway-{port}.log"
    ) as proc:
        yield f"http://127.0.0.1:{port}", proc


async def run(args: argparse.Namespace) -> str:
    from modelrunner.core.defaults import ensure_default_model
    from modelrunner.store.models import ModelStore

    setting = machine()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    store = tmp / "models"
    ensure_default_model(ModelStore(store))
    replicas_max = max(args.replicas)
    threads = max(1, (os.cpu_count() or 2) // 2)
    stack = contextlib.ExitStack()
    urls: list[str] = []
    loads: list[float] = []
    try:
        for r in range(replicas_max):
            port = free_port()
            cmd, env = runner_cmd(store, port, 4, args.ctx, threads)
            proc = stack.enter_context(process(cmd, env, tmp / f"runner-{r}.log"))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:
                await wait_ready(c, "/api/version", proc)
                await stream(
                    c,
                    "/api/generate",
                    {"model": MODEL, "prompt": "Hi", "options": {"num_predict": 2}},
                )
            urls.append(f"http://127.0.0.1:{port}")
        # 1. overhead: one runner, direct and through a gateway, alternating.
        over: dict[tuple[str, int], list[Workload]] = {}
        url, gw_proc = stack.enter_context(gateway(tmp, urls[:1], "least"))
        async with httpx.AsyncClient(base_url=url, timeout=600) as via, \
                httpx.AsyncClient(base_url=urls[0], timeout=600) as direct:  # fmt: skip
            await wait_ready(via, "/api/version", gw_proc)
            trips = await round_trips(direct, via, args.round_trips)
            for r in range(args.overhead_runs):
                for n in (1, 4):
                    for name, client in (("direct", direct), ("gateway", via)):
                        w = await overhead_level(client, n, f"o{r}{name}{n}", args.tokens)
                        over.setdefault((name, n), []).append(w)
                        loads.append(os.getloadavg()[0])
                        print(f"overhead run {r} {name:>7} x{n}: {w.rate:6.1f} tok/s, "
                              f"ttft {statistics.median(t.ttft for t in w.turns) * 1000:5.0f} ms", flush=True)  # fmt: skip
        # 2. conversations over 2 and 4 replicas, prefix affinity vs round-robin, alternating.
        conv: dict[tuple[int, str], list[Workload]] = {}
        for r in range(args.runs):
            for n in args.replicas:
                for policy in ("prefix", "round-robin"):
                    with gateway(tmp, urls[:n], policy) as (url, gw):
                        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
                            await wait_ready(c, "/api/version", gw)
                        w = await chats(url, urls[:n], f"r{r}-{n}-{policy}", args)
                    conv.setdefault((n, policy), []).append(w)
                    loads.append(os.getloadavg()[0])
                    print(f"chats run {r} x{n} {policy:>11}: {w.rate:5.1f} tok/s, ttft p50 {w.p(0.5):5.0f} "
                          f"p95 {w.p(0.95):5.0f} ms, cached {w.cached / max(w.prompt, 1):.0%}", flush=True)  # fmt: skip
    finally:
        stack.close()
    return report(args, over, conv, setting, loads, threads, trips)


def q95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * len(values))]


def _mmm(values: list[float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(args: argparse.Namespace, over: dict[tuple[str, int], list[Workload]],
           conv: dict[tuple[int, str], list[Workload]], setting: str, loads: list[float],
           threads: int, trips: tuple[list[float], list[float]]) -> str:  # fmt: skip
    lines = [
        "## Gateway (issue 16): overhead, and prefix affinity vs round-robin",
        "",
        f"{setting}; load average during the run {min(loads):.1f}–{max(loads):.1f}. The machine is "
        "shared with other work (2 cores), so absolute figures move between runs; ratios compare "
        f"sides measured alternately in the same run. `bench/bench_gateway.py`, {args.overhead_runs} "
        f"overhead runs and {args.runs} chat runs, "
        f"Gemma 3 270M Q4_K_M, runners with 4 slots of {args.ctx} tokens and {threads} thread(s) "
        "each, median (min–max) over runs.",
        "",
        f"**Overhead** (`/api/generate` streams, {args.tokens} tokens each, one runner; the "
        "gateway with `--policy least`):",
        "",
        "| streams | direct tok/s | via gateway tok/s | ratio | TTFT direct ms | TTFT via gateway ms | added ms |",
        "|---|---|---|---|---|---|---|",
    ]
    direct_ms, via_ms = trips
    for n in (1, 4):
        d, g = over[("direct", n)], over[("gateway", n)]
        ratios = [b.rate / a.rate for a, b in zip(d, g, strict=True)]
        td = [statistics.median(t.ttft for t in w.turns) * 1000 for w in d]
        tg = [statistics.median(t.ttft for t in w.turns) * 1000 for w in g]
        added = [b - a for a, b in zip(td, tg, strict=True)]
        lines.append(f"| {n} | {_mmm([w.rate for w in d])} | {_mmm([w.rate for w in g])} | "
                     f"{_mmm(ratios, '{:.2f}')}x | {_mmm(td, '{:.0f}')} | {_mmm(tg, '{:.0f}')} | "
                     f"{_mmm(added, '{:+.0f}')} |")  # fmt: skip
    lines += [
        "",
        f"Forwarding alone ({len(via_ms)} `POST /api/show` round trips each way, alternating, no "
        f"inference): direct median {statistics.median(direct_ms):.2f} ms (p95 {q95(direct_ms):.2f}), "
        f"via the gateway {statistics.median(via_ms):.2f} ms (p95 {q95(via_ms):.2f}): the gateway adds "
        f"{statistics.median(via_ms) - statistics.median(direct_ms):.2f} ms at the median. The "
        "inference rows above are dominated by the shared machine's noise; this row is what the "
        "gateway itself costs a request.",
    ]
    lines += [
        "",
        f"**Multi-turn chats** ({args.conversations} concurrent conversations × {args.turns} turns, "
        f"each with a ~{args.history_words}-word document of its own as history, {args.reply_tokens}-token "
        "replies, `/api/chat` streamed; TTFT over every turn of every conversation):",
        "",
        "| replicas | policy | TTFT p50 ms | TTFT p95 ms | aggregate tok/s | prompt tokens from cache |",
        "|---|---|---|---|---|---|",
    ]
    for n in args.replicas:
        for policy in ("prefix", "round-robin"):
            ws = conv[(n, policy)]
            cached = [w.cached / max(w.prompt, 1) * 100 for w in ws]
            lines.append(f"| {n} | {policy} | {_mmm([w.p(0.5) for w in ws], '{:.0f}')} | "
                         f"{_mmm([w.p(0.95) for w in ws], '{:.0f}')} | {_mmm([w.rate for w in ws])} | "
                         f"{_mmm(cached, '{:.0f}')} % |")  # fmt: skip
    lines += ["", "Round-robin ÷ prefix affinity, per run (same run, alternating; above 1: prefix "
              "affinity is better):", ""]  # fmt: skip
    for n in args.replicas:
        p, rr = conv[(n, "prefix")], conv[(n, "round-robin")]
        p50 = [b.p(0.5) / a.p(0.5) for a, b in zip(p, rr, strict=True)]
        p95 = [b.p(0.95) / a.p(0.95) for a, b in zip(p, rr, strict=True)]
        rate = [a.rate / b.rate for a, b in zip(p, rr, strict=True)]
        lines.append(f"- {n} replicas: TTFT p50 {_mmm(p50, '{:.2f}')}x, p95 "
                     f"{_mmm(p95, '{:.2f}')}x; aggregate tokens/s (prefix ÷ round-robin) "
                     f"{_mmm(rate, '{:.2f}')}x.")  # fmt: skip
    lines += [
        "",
        "Replicas are processes on one 2-core machine, so 4 replicas share the same cores as 2 "
        "(more replicas add KV-cache room and slots, not compute); what affinity saves here is "
        "prompt evaluation of each conversation's history, which round-robin repeats whenever a "
        "turn lands on a replica that did not serve the previous one. p95 is set by first turns "
        "(a new history, evaluated in full under either policy, all conversations at once), so "
        "it barely moves.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--overhead-runs", type=int, default=4)
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=48, help="tokens per overhead stream")
    parser.add_argument("--replicas", type=lambda s: [int(x) for x in s.split(",")], default=[2, 4])
    # Odd, so that round-robin cannot line a conversation up with one replica by accident.
    parser.add_argument("--conversations", type=int, default=7)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--history-words", type=int, default=300)
    parser.add_argument("--reply-tokens", type=int, default=16)
    parser.add_argument("--ctx", type=int, default=4096, help="context per slot")
    args = parse_args(parser)
    return publish("gateway", asyncio.run(run(args)), args)


if __name__ == "__main__":
    raise SystemExit(main())
