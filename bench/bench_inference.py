"""Runner overhead on Gemma 3 270M: streamed tokens/s and time to first token through
``/api/generate``, ``/api/chat`` and ``/v1/chat/completions``, each as a ratio to calling
llama-cpp-python directly with the same prompt and settings in the same run; plus the runner's
resident memory idle and with the model loaded.

Run: ``.venv/bin/python -m bench.bench_inference [--runs N] [--tokens N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from bench.report import machine, median, write_section

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "List some facts about the moon.",
    "Describe a walk through a forest in autumn.",
    "What makes a good cup of tea?",
]
TEMPLATE = "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sample:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = 0.0
        self.count = 0

    def token(self) -> None:
        if not self.first:
            self.first = time.perf_counter()
        self.count += 1

    def result(self) -> tuple[float, float]:
        end = time.perf_counter()
        rate = (self.count - 1) / (end - self.first) if self.count > 1 else 0.0
        return (self.first - self.start) * 1000, rate


def direct(model: Path, tokens: int, threads: int) -> Callable[[str], tuple[float, float]]:
    """llama-cpp-python's own completion API, streaming, as an application would call it."""
    import llama_cpp

    llm = llama_cpp.Llama(str(model), n_ctx=4096, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)  # fmt: skip

    def run(prompt: str) -> tuple[float, float]:
        sample = Sample()
        ids = llm.tokenize(TEMPLATE.format(prompt).encode(), add_bos=True, special=True)
        for _ in llm.create_completion(ids, max_tokens=tokens, temperature=0, stream=True,
                                       top_k=40, top_p=0.9, min_p=0.0, repeat_penalty=1.0):  # fmt: skip
            sample.token()
        return sample.result()

    return run


def engine_direct(model: Path, tokens: int, threads: int) -> Callable[[str], tuple[float, float]]:
    """The runner's own engine in this process: what the runner adds besides its engine."""
    import asyncio

    from modelrunner.engine.base import LoadOptions, Sampling
    from modelrunner.engine.batched import BatchedLlamaEngine

    options = LoadOptions(model_path=model, num_ctx=4096, num_thread=threads, parallel=1)
    engine_model = BatchedLlamaEngine().load(options)
    sampling = Sampling(temperature=0, top_k=40, top_p=0.9, min_p=0.0, num_predict=tokens)

    def run(prompt: str) -> tuple[float, float]:
        sample = Sample()

        async def consume() -> None:
            ids = engine_model.tokenize(TEMPLATE.format(prompt))
            async for out in engine_model.generate(ids, sampling):
                if out.text:
                    sample.token()

        asyncio.run(consume())
        return sample.result()

    return run


def stream_lines(client: httpx.Client, path: str, body: dict[str, object]) -> Iterator[str]:
    with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        yield from response.iter_lines()


def via_api(client: httpx.Client, route: str, tokens: int) -> Callable[[str], tuple[float, float]]:
    options = {"num_predict": tokens, "temperature": 0, "top_k": 40, "top_p": 0.9, "min_p": 0.0}

    def run(prompt: str) -> tuple[float, float]:
        sample = Sample()
        if route == "/api/generate":
            body: dict[str, object] = {"model": "gemma3:270m", "prompt": prompt, "options": options}
        elif route == "/api/chat":
            body = {"model": "gemma3:270m", "messages": [{"role": "user", "content": prompt}],
                    "options": options}  # fmt: skip
        else:
            body = {"model": "gemma3:270m", "messages": [{"role": "user", "content": prompt}],
                    "stream": True, "max_tokens": tokens, "temperature": 0, "top_p": 0.9}  # fmt: skip
        for line in stream_lines(client, route, body):
            if not line or line == "data: [DONE]":
                continue
            data = json.loads(line.removeprefix("data: "))
            if (
                (route == "/api/generate" and data.get("response"))
                or (route == "/api/chat" and data.get("message", {}).get("content"))
                or (
                    route.startswith("/v1")
                    and data.get("choices")
                    and data["choices"][0]["delta"].get("content")
                )
            ):
                sample.token()
        return sample.result()

    return run


def generated_tokens(client: httpx.Client) -> tuple[float, float]:
    total = active = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("modelrunner_generated_tokens_total{"):
            total += float(line.rsplit(" ", 1)[1])
        if line.startswith("modelrunner_active_requests{"):
            active += float(line.rsplit(" ", 1)[1])
    return total, active


def disconnect_overrun(client: httpx.Client) -> float:
    """Tokens generated after the client went away (what a disconnect costs)."""
    before, _ = generated_tokens(client)
    body = {"model": "gemma3:270m", "prompt": "Tell me a long story.",
            "options": {"num_predict": 400, "temperature": 0}}  # fmt: skip
    with (
        httpx.Client(base_url=str(client.base_url), timeout=60) as own,
        own.stream("POST", "/api/generate", json=body) as response,
    ):
        lines = response.iter_lines()
        for _ in range(5):
            next(lines)
    deadline = time.monotonic() + 30
    while generated_tokens(client)[1] > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    after, _ = generated_tokens(client)
    return after - before - 5


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="for every side"
    )
    args = parser.parse_args()

    from modelrunner.core.defaults import default_gguf, ensure_default_model
    from modelrunner.store.models import ModelStore

    store = Path(tempfile.mkdtemp()) / "models"
    ensure_default_model(ModelStore(store))
    port = free_port()
    env = dict(os.environ, MODEL_RUNNER_MODELS=str(store), MODEL_RUNNER_LISTEN=f"127.0.0.1:{port}",
               MODEL_RUNNER_LOG_LEVEL="warning", MODEL_RUNNER_KEEP_ALIVE="-1",
               MODEL_RUNNER_NUM_THREAD=str(args.threads))  # fmt: skip
    server = subprocess.Popen([sys.executable, "-m", "modelrunner.cli", "serve"], env=env)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.get("/api/version")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        setting = machine()
        idle = rss_mib(server.pid)
        client.post("/api/generate", json={"model": "gemma3:270m"})
        loaded = rss_mib(server.pid)
        baseline = direct(default_gguf(), args.tokens, args.threads)
        routes = ["/api/generate", "/api/chat", "/v1/chat/completions"]
        runners = {"engine": engine_direct(default_gguf(), args.tokens, args.threads)}
        runners.update({r: via_api(client, r, args.tokens) for r in routes})
        results: dict[str, list[tuple[float, float]]] = {"direct": [], **{r: [] for r in runners}}
        for fn in [baseline, *runners.values()]:
            fn("warm up")  # loads, fills caches, compiles nothing twice
        for i in range(args.runs):
            for side, fn in [("direct", baseline), *runners.items()]:
                # Interleaved, so background load hits every side alike; a fresh prompt per side
                # and run, so no side reuses another's prompt cache; a tiny request first, so no
                # side pays for the other process having had the CPU caches.
                fn(f"[warm {side} {i}]")
                results[side].append(fn(f"[{side} {i}] " + PROMPTS[i % len(PROMPTS)]))
        after = rss_mib(server.pid)
        overrun = [disconnect_overrun(client) for _ in range(3)]
    finally:
        server.terminate()
        server.wait(timeout=30)

    d_ttft = median([t for t, _ in results["direct"]])
    d_rate = median([r for _, r in results["direct"]])
    rows = [f"| llama-cpp-python directly | {d_rate:.1f} | 1.00 | {d_ttft:.1f} | 0.0 |"]
    for side in runners:
        ttft = median([t for t, _ in results[side]])
        rate = median([r for _, r in results[side]])
        name = "the runner's engine in process (no HTTP)" if side == "engine" else f"`{side}`"
        rows.append(
            f"| {name} | {rate:.1f} | {rate / d_rate:.2f} | {ttft:.1f} | {ttft - d_ttft:+.1f} |"
        )
    body = "\n".join(
        [
            "## Inference overhead (issue 3)",
            "",
            f"Gemma 3 270M Q4_K_M, CPU, {args.threads} threads on every side, greedy, "
            f"{args.tokens} tokens, {args.runs} runs per route (medians, interleaved), prompts "
            f"rendered with the same Gemma chat template; the runner with its default (batched) "
            f"engine. Time to first token is measured by the client: from sending the request "
            f"(or calling the API) to the first token. {setting}.",
            "",
            "| path | tokens/s | ratio to direct | time to first token (ms) | added (ms) |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Runner resident memory: {idle:.0f} MiB idle (no model loaded), {loaded:.0f} MiB with "
            f"the model loaded, {after:.0f} MiB after the runs.",
            "",
            f"Client disconnect: after reading 5 streamed tokens and closing the connection, the "
            f"runner generated {median(overrun):.0f} more token(s) before stopping (median of 3; "
            f"runs: {', '.join(str(int(o)) for o in overrun)}).",
            "",
            f"Command: `.venv/bin/python -m bench.bench_inference {' '.join(sys.argv[1:])}`",
        ]
    )
    write_section("inference", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
