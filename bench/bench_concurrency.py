"""Continuous batching on Gemma 3 270M: aggregate streamed tokens/s and time to first token at
1, 2, 4 and 8 concurrent streams, in one run, against

- the simple engine (``LlamaEngine``: one request at a time) single stream: the baseline;
- the batched engine's own single stream;
- llama.cpp's ``llama-server`` (built from the vendored llama.cpp of the llama-cpp-python sdist,
  cached under ~/.cache/modelrunner/llama-server/; skipped when not built) with ``-np 8``;
- optionally the runner over HTTP (``modelrunner serve``: ``/api/generate`` and
  ``/v1/chat/completions``) with ``MODEL_RUNNER_NUM_PARALLEL=8``.

Every engine samples the same way (temperature 0.8, top_k 40, top_p 0.9, min_p 0) and, where it
can, ignores end-of-generation so each stream yields exactly ``--tokens`` tokens. Runs are
interleaved (every engine at every level, then again) so background load hits all alike.

Run: ``.venv/bin/python -m bench.bench_concurrency [--runs N] [--tokens N] [--http]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.report import machine, write_section
from modelrunner.engine.cpu import default_threads

LLAMA_SERVER = Path.home() / ".cache/modelrunner/llama-server/build/bin/llama-server"
TOPICS = [
    "a lighthouse keeper who finds a message in a bottle",
    "a robot learning to paint",
    "two friends crossing a desert",
    "a city where it always rains",
    "a dragon who is afraid of heights",
    "the last library on Earth",
    "a chef cooking for a king",
    "a ship lost in the arctic",
]
SAMPLING: dict[str, Any] = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0}


def prompt_text(tag: str, i: int) -> str:
    # Distinct from the first words on, so no request reuses another's cached prompt.
    return f"Story {tag}-{i}. Write a long story about {TOPICS[i % len(TOPICS)]}.\n\n"


@dataclass
class Stream:
    ttft: float
    tokens: int
    end: float


@dataclass
class Level:
    streams: list[Stream]
    wall: float

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.streams)

    @property
    def rate(self) -> float:
        return self.tokens / self.wall

    @property
    def ttft_ms(self) -> float:
        return statistics.median(s.ttft for s in self.streams) * 1000


Runner = Callable[[int, str], Awaitable[Level]]


async def gather_level(n: int, one: Callable[[int, float], Awaitable[Stream]]) -> Level:
    start = time.perf_counter()
    streams = await asyncio.gather(*(one(i, start) for i in range(n)))
    return Level(list(streams), max(s.end for s in streams) - start)


# -- engines in process -------------------------------------------------------------------------


def engine_runner(model: Any, tokens: int, *, ignore_eos: bool) -> Runner:
    from modelrunner.engine.base import Sampling

    async def level(n: int, tag: str) -> Level:
        async def one(i: int, start: float) -> Stream:
            sampling = Sampling(**SAMPLING, seed=i, num_predict=tokens)
            ids = model.tokenize(prompt_text(tag, i))
            if ignore_eos:
                gen = model.generate(ids, sampling, ignore_eos=True)
            else:
                gen = model.generate(ids, sampling)
            first = 0.0
            count = 0
            async for _ in gen:
                if not first:
                    first = time.perf_counter()
                count += 1
            return Stream(first - start, count, time.perf_counter())

        return await gather_level(n, one)

    return level


# -- servers over HTTP --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def sse_events(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    async with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            line = line.removeprefix("data: ").strip()
            if line and line != "[DONE]":
                yield json.loads(line)


def llama_server_runner(client: httpx.AsyncClient, tokens: int) -> Runner:
    async def level(n: int, tag: str) -> Level:
        async def one(i: int, start: float) -> Stream:
            body = {"prompt": prompt_text(tag, i), "n_predict": tokens, "stream": True,
                    "ignore_eos": True, "cache_prompt": True, "seed": i, "repeat_penalty": 1.0,
                    **SAMPLING}  # fmt: skip
            first = 0.0
            count = 0
            async for event in sse_events(client, "/completion", body):
                if event.get("content") and not first:
                    first = time.perf_counter()
                if event.get("stop"):
                    count = int(event.get("tokens_predicted") or event["timings"]["predicted_n"])
            return Stream(first - start, count, time.perf_counter())

        return await gather_level(n, one)

    return level


def modelrunner_runner(client: httpx.AsyncClient, tokens: int, route: str) -> Runner:
    async def level(n: int, tag: str) -> Level:
        async def one(i: int, start: float) -> Stream:
            text = prompt_text(tag, i)
            if route == "/api/generate":
                options = {**SAMPLING, "seed": i, "num_predict": tokens}
                body: dict[str, Any] = {"model": "gemma3:270m", "prompt": text, "raw": True,
                                        "options": options}  # fmt: skip
            else:
                body = {"model": "gemma3:270m", "messages": [{"role": "user", "content": text}],
                        "stream": True, "max_tokens": tokens, "temperature": 0.8, "top_p": 0.9,
                        "seed": i, "stream_options": {"include_usage": True}}  # fmt: skip
            first = 0.0
            count = 0
            chunks = 0
            async for event in sse_events(client, route, body):
                if route == "/api/generate":
                    has = bool(event.get("response"))
                    if event.get("done"):
                        count = int(event.get("eval_count", 0))
                else:
                    choices = event.get("choices") or []
                    has = bool(choices and (choices[0].get("delta") or {}).get("content"))
                    if event.get("usage"):
                        count = int(event["usage"].get("completion_tokens", 0))
                if has:
                    chunks += 1
                    if not first:
                        first = time.perf_counter()
            return Stream(first - start, count or chunks, time.perf_counter())

        return await gather_level(n, one)

    return level


@contextlib.contextmanager
def process(
    cmd: list[str], env: dict[str, str] | None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def wait_ready(client: httpx.AsyncClient, path: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get(path)).status_code == 200:
                return
        await asyncio.sleep(0.25)
    raise RuntimeError("server did not become ready")


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Results:
    levels: dict[str, dict[int, list[Level]]] = field(default_factory=dict)

    def add(self, name: str, n: int, level: Level) -> None:
        self.levels.setdefault(name, {}).setdefault(n, []).append(level)

    def rate(self, name: str, n: int) -> float:
        runs = self.levels.get(name, {}).get(n)
        return statistics.median(r.rate for r in runs) if runs else float("nan")

    def ttft(self, name: str, n: int) -> float:
        runs = self.levels.get(name, {}).get(n)
        return statistics.median(r.ttft_ms for r in runs) if runs else float("nan")


def thread_configs(spec: str) -> list[tuple[int, int]]:
    """``"auto,1,2,1/2"`` -> [(0, 0), (1, 1), (2, 2), (1, 2)]: threads for one-token steps / for
    batches; auto (0) is the batched engine's default (measured per step) and llama-server's."""
    out = []
    for item in spec.split(","):
        t, _, tb = item.replace("auto", "0").partition("/")
        out.append((int(t), int(tb) if tb else int(t)))
    return out


def label(threads: tuple[int, int]) -> str:
    t, tb = threads
    if not t:
        return "auto"
    return f"{t}" if t == tb else f"{t}/{tb}"


async def run(args: argparse.Namespace) -> str:
    from modelrunner.core.defaults import default_gguf
    from modelrunner.engine.base import LoadOptions
    from modelrunner.engine.batched import BatchedLlamaEngine, BatchedLlamaModel, BatchTuning
    from modelrunner.engine.llama import LlamaEngine

    gguf = default_gguf()
    levels = [int(x) for x in args.levels.split(",")]
    slots = max(levels)
    setting = machine()
    configs = thread_configs(args.threads)
    simple = LlamaEngine().load(LoadOptions(model_path=gguf, num_ctx=args.ctx))
    runners: dict[str, tuple[Runner, list[int]]] = {
        "simple": (engine_runner(simple, args.tokens, ignore_eos=False), [1]),
    }
    models: list[BatchedLlamaModel] = []
    stack = contextlib.ExitStack()
    clients: list[httpx.AsyncClient] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    notes: list[str] = []
    try:
        for t, tb in configs:
            model = BatchedLlamaEngine(BatchTuning(threads=t, threads_batch=tb)).load(
                LoadOptions(model_path=gguf, num_ctx=args.ctx, parallel=slots)
            )
            models.append(model)
            name = f"batched t={label((t, tb))}"
            runners[name] = (engine_runner(model, args.tokens, ignore_eos=True), levels)
        server_bin = Path(args.llama_server)
        for t, tb in configs if args.server_built and not args.no_server else []:
            port = free_port()
            cmd = [str(server_bin), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
                   "-np", str(slots), "-c", str(slots * args.ctx), "-b", "512", "-ub", "512",
                   "--no-webui"]  # fmt: skip
            if t:
                cmd += ["-t", str(t), "-tb", str(tb)]
            log = tmp / f"llama-server-{t}-{tb}.log"
            proc = stack.enter_context(process(cmd, None, log))
            client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600)
            clients.append(client)
            await wait_ready(client, "/health", proc)
            name = f"llama-server t={label((t, tb))}"
            runners[name] = (llama_server_runner(client, args.tokens), levels)
            shown = ["llama-server", *cmd[1:]]
            shown[shown.index(str(gguf))] = "gemma-3-270m-q4_k_m.gguf"
            shown[shown.index("--port") + 1] = "PORT"
            notes.append(f"`{' '.join(shown)}`")
        if not args.server_built and not args.no_server:
            notes.append(f"llama-server not built at {server_bin}: skipped.")
        if args.http:
            from modelrunner.core.defaults import ensure_default_model
            from modelrunner.store.models import ModelStore

            t, tb = configs[0]  # the runner has no threads_batch setting: only t == tb
            store = tmp / "models"
            ensure_default_model(ModelStore(store))
            port = free_port()
            env = dict(os.environ, MODEL_RUNNER_MODELS=str(store), MODEL_RUNNER_KEEP_ALIVE="1h",
                       MODEL_RUNNER_NUM_PARALLEL=str(slots), MODEL_RUNNER_CONTEXT_SIZE=str(args.ctx),
                       MODEL_RUNNER_NUM_THREAD=str(t), MODEL_RUNNER_PRUNE="false")  # fmt: skip
            cmd = [
                sys.executable,
                "-m",
                "modelrunner.cli",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
            ]
            proc = stack.enter_context(process(cmd, env, tmp / "modelrunner.log"))
            client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600)
            clients.append(client)
            await wait_ready(client, "/api/version", proc)
            for route in ("/api/generate", "/v1/chat/completions"):
                name = f"HTTP {route} t={label((t, tb))}"
                runners[name] = (modelrunner_runner(client, args.tokens, route), levels)

        for name, (runner, _) in runners.items():  # warm up: load, first-touch pages
            await runner(1, f"warm-{name}")
        results = Results()
        for r in range(args.runs):
            for n in levels:
                for name, (runner, its_levels) in runners.items():
                    if n in its_levels:
                        level = await runner(n, f"r{r}n{n}")
                        results.add(name, n, level)
                        print(f"run {r} {name:>34} x{n}: {level.rate:6.1f} tok/s, "
                              f"ttft {level.ttft_ms:7.0f} ms, {level.tokens} tokens, "
                              f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    finally:
        for client in clients:
            await client.aclose()
        stack.close()
        for model in models:
            model.close()
        simple.close()
    end_load = os.getloadavg()
    return report(args, results, levels, configs, setting, notes, end_load)


def report(args: argparse.Namespace, res: Results, levels: list[int],
           configs: list[tuple[int, int]], setting: str, notes: list[str],
           end_load: tuple[float, float, float]) -> str:  # fmt: skip
    simple1 = res.rate("simple", 1)
    rows = [
        f"| simple engine (`LlamaEngine`), its default threads | 1 | {simple1:.1f} | 1.00 | | | "
        f"{res.ttft('simple', 1):.0f} |"
    ]
    summary = []
    for config in configs:
        tag = f"t={label(config)}"
        server_name = f"llama-server {tag}"
        names = [f"batched {tag}", server_name, f"HTTP /api/generate {tag}",
                 f"HTTP /v1/chat/completions {tag}"]  # fmt: skip
        for name in names:
            if name not in res.levels:
                continue
            shown = {f"batched {tag}": f"batched engine, threads {label(config)}",
                     server_name: f"llama-server, threads {label(config)}"}.get(
                         name, f"runner over HTTP `{name.split()[1]}`, threads {label(config)}")  # fmt: skip
            single = res.rate(name, 1)
            for n in levels:
                rate = res.rate(name, n)
                server = res.rate(server_name, n)
                vs = (
                    f"{rate / server:.2f}" if name != server_name and not math.isnan(server) else ""
                )
                rows.append(
                    f"| {shown} | {n} | {rate:.1f} | {rate / simple1:.2f} | {rate / single:.2f} | "
                    f"{vs} | {res.ttft(name, n):.0f} |"
                )
        own = f"batched {tag}"
        if own in res.levels:
            parts = [f"threads {label(config)}: single stream {res.rate(own, 1) / simple1:.2f}× "
                     "the simple engine"]  # fmt: skip
            for n in levels[1:]:
                part = f"{n} streams {res.rate(own, n) / res.rate(own, 1):.2f}× own single"
                if server_name in res.levels:
                    part += f" and {res.rate(own, n) / res.rate(server_name, n):.2f}× llama-server"
                parts.append(part)
            summary.append("- " + "; ".join(parts))
    threads_note = (
        "threads T/TB = T threads for one-token steps, TB for batches (llama.cpp's "
        "n_threads / n_threads_batch; same values given to llama-server as -t / -tb); auto = "
        f"each engine's default: the batched engine (and the runner) one thread per physical "
        f"core ({default_threads()} here), llama-server its own default"
    )
    lines = [
        "## Concurrency (issue 8)",
        "",
        f"Gemma 3 270M Q4_K_M on the CPU, {args.tokens} generated tokens per stream (end of "
        f"generation ignored where the engine allows it: batched engine and llama-server), "
        f"temperature 0.8, top_k 40, top_p 0.9, min_p 0, distinct prompts, {args.runs} "
        f"interleaved runs (medians), {args.ctx} tokens of context per slot, {max(levels)} slots; "
        f"{threads_note}. {setting}; {end_load[0]:.1f} at the end.",
        "",
        "Aggregate rate = all streamed tokens / wall time from sending the requests to the last "
        "token (prompt processing included); TTFT = median time to first token of the streams.",
        "",
        "| engine | streams | tokens/s (aggregate) | × simple engine single stream | "
        "× own single stream | × llama-server same threads & streams | TTFT ms |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        *summary,
        *[f"- {n}" for n in notes],
        "",
        "`/api/generate` cannot ignore end of generation (Ollama has no such option): a stream "
        "that ends early leaves fewer streams for the rest of the run and lowers that row. "
        "What moved these numbers (engine/batched.py, batch_native.py, cpu.py): busy slots are "
        "kept next to each other, because llama.cpp's attention spans every KV stream from the "
        "lowest busy sequence to the highest (4 requests in slots 0, 5, 6, 7 took 1.6x the step "
        "time of slots 1-4); repeat penalties are applied to the few token ids in their window "
        "instead of through llama.cpp's sampler, which looks up all 262k candidates (~1 ms per "
        "token per stream); one thread per physical core beat choosing 1 or 2 threads per step "
        "by measured step time.",
        "",
        "Command: `.venv/bin/python -m bench.bench_concurrency " + " ".join(sys.argv[1:]) + "`",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--ctx", type=int, default=2048, help="context per slot")
    parser.add_argument(
        "--threads",
        default="auto",
        help="comma-separated thread configs: auto (each engine's default), T or T/TB",
    )
    parser.add_argument("--llama-server", default=str(LLAMA_SERVER))
    parser.add_argument("--no-server", action="store_true", help="skip llama-server")
    parser.add_argument("--http", action="store_true", help="also measure the runner over HTTP")
    parser.add_argument("--no-write", action="store_true", help="print only; keep BENCHMARKS.md")
    args = parser.parse_args()
    args.server_built = Path(args.llama_server).is_file()
    body = asyncio.run(run(args))
    if not args.no_write:
        write_section("concurrency", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
