"""A bounded soak of a runner process: concurrent clients of every dialect, some streaming, some
hanging up mid-stream or giving up after a few milliseconds; then the runner must settle back to
its baseline (no request holding a slot or waiting, RSS near where it started). Used by
tests/reliability/test_soak.py (about a minute) and bench/reliability.py (ten minutes or more)."""

from __future__ import annotations

import random
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.runner_process import RunnerProcess

HI = [{"role": "user", "content": "hello there"}]
# (dialect, path, body); the model is "tiny", generation short so requests turn over quickly.
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("ollama", "/api/generate", {"prompt": "hello", "options": {"num_predict": 16}}),
    ("ollama", "/api/chat", {"messages": HI, "options": {"num_predict": 16}}),
    ("ollama", "/api/embed", {"input": ["a b c", "d e f"]}),
    ("openai", "/v1/chat/completions", {"messages": HI, "max_tokens": 16, "stream": True}),
    ("openai", "/v1/completions", {"prompt": "hello", "max_tokens": 16}),
    ("openai", "/v1/embeddings", {"input": "hello"}),
    ("openai", "/v1/responses", {"input": "hello", "max_output_tokens": 16, "stream": True}),
    ("anthropic", "/v1/messages", {"messages": HI, "max_tokens": 16, "stream": True}),
    ("anthropic", "/v1/messages/count_tokens", {"messages": HI}),
    ("dmr", "/engines/llama.cpp/v1/chat/completions", {"messages": HI, "max_tokens": 16}),
    ("dmr", "/models", {}),
]


@dataclass
class SoakResult:
    seconds: float = 0.0
    requests: int = 0
    completed: int = 0
    disconnects: int = 0
    cancellations: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    by_dialect: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rss_before: int = 0
    rss_after: int = 0
    busy_after: float = -1.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def percentile(self, q: float) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[int(q) - 1]


def busy(http: httpx.Client) -> float:
    """Requests holding a slot plus requests waiting, from /metrics."""
    text = http.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if re.match(r"modelrunner_(active_requests|queue_depth|requests_waiting)\b", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Soak:
    def __init__(self, runner: RunnerProcess, clients: int, seed: int) -> None:
        self.runner, self.clients = runner, clients
        self.rng = random.Random(seed)
        self.result = SoakResult()
        self.lock = threading.Lock()

    def _one(self, http: httpx.Client, rng: random.Random) -> None:
        dialect, path, body = rng.choice(REQUESTS)
        fate = rng.random()  # 15% hang up after the first bytes, 10% give up almost at once
        started = time.monotonic()
        method = "GET" if path == "/models" else "POST"
        payload = None if method == "GET" else {"model": "tiny", **body}
        timeout = httpx.Timeout(rng.uniform(0.005, 0.05)) if 0.15 <= fate < 0.25 else None
        outcome, status = "completed", 0
        try:
            kwargs: dict[str, Any] = {"json": payload}
            if timeout is not None:
                kwargs["timeout"] = timeout
            with http.stream(method, path, **kwargs) as response:
                status = response.status_code
                if fate < 0.15:
                    next(response.iter_raw(), None)
                    outcome = "disconnect"  # leaving the block closes the connection
                else:
                    response.read()
        except httpx.TimeoutException:
            outcome = "cancel"
        except httpx.HTTPError as exc:
            outcome = "error"
            with self.lock:
                self.result.errors.append(f"{path}: {type(exc).__name__} {exc}")
        elapsed = time.monotonic() - started
        with self.lock:
            result = self.result
            result.requests += 1
            result.by_dialect[dialect] = result.by_dialect.get(dialect, 0) + 1
            if status:
                result.statuses[status] = result.statuses.get(status, 0) + 1
            if outcome == "completed" and status == 200:
                result.completed += 1
                result.latencies.append(elapsed)
            result.disconnects += outcome == "disconnect"
            result.cancellations += outcome == "cancel"

    def run(self, seconds: float) -> SoakResult:
        with httpx.Client(base_url=self.runner.url, timeout=60) as http:
            for _ in range(3):  # warm: the model loaded in both modes, caches filled
                for _dialect, path, body in REQUESTS:
                    method = "GET" if path == "/models" else "POST"
                    http.request(method, path, json={"model": "tiny", **body} if body else None)
            self.result.rss_before = self.runner.rss()
        deadline = time.monotonic() + seconds
        seeds = [self.rng.randrange(1 << 30) for _ in range(self.clients)]

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=self.runner.url, timeout=60) as http:
                while time.monotonic() < deadline:
                    self._one(http, rng)

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(s,)) for s in seeds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.result.seconds = time.monotonic() - started
        with httpx.Client(base_url=self.runner.url, timeout=60) as http:
            settle = time.monotonic() + 15
            while (load := busy(http)) > 0 and time.monotonic() < settle:
                time.sleep(0.2)
            self.result.busy_after = load
        self.result.rss_after = self.runner.rss()
        return self.result
