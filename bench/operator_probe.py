"""Run ``modeloperator`` with request counters, for bench_operator.py.

    BENCH_COUNTS=/path/counts.json python bench/operator_probe.py --standalone -n NS

Counts every Kubernetes API request (kopf and kubernetes_asyncio both go through aiohttp) and
every runner call (httpx) by host:port, and writes the totals to ``$BENCH_COUNTS`` once a second.
With ``BENCH_TRACEMALLOC=/path/top.txt`` it also writes where Python memory is held, every 20 s.
Works on any version of the operator (the benchmark runs it on the code before and after a change).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import httpx

API: Counter[str] = Counter()
RUNNER: Counter[str] = Counter()


def _patch() -> None:
    request = aiohttp.ClientSession._request

    async def counted(self: aiohttp.ClientSession, method: str, url: Any, *a: Any, **k: Any) -> Any:
        API[method.upper()] += 1
        return await request(self, method, url, *a, **k)

    aiohttp.ClientSession._request = counted  # type: ignore[method-assign,assignment]
    send = httpx.AsyncClient.send

    async def counted_send(self: httpx.AsyncClient, req: httpx.Request, **k: Any) -> Any:
        RUNNER[f"{req.url.host}:{req.url.port}"] += 1
        return await send(self, req, **k)

    httpx.AsyncClient.send = counted_send  # type: ignore[method-assign,assignment]


def _writer(path: Path) -> None:
    while True:
        data = {"t": time.time(), "api": dict(API), "runner": dict(RUNNER)}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
        time.sleep(1)


def _allocations(path: Path) -> None:
    """Every 20 s: the 25 source lines holding the most Python memory (tracemalloc)."""
    import tracemalloc

    tracemalloc.start(1)
    while True:
        time.sleep(20)
        stats = tracemalloc.take_snapshot().statistics("lineno")
        total = sum(s.size for s in stats)
        lines = [f"total {total / 1e6:.1f} MB"] + [str(s) for s in stats[:25]]
        path.write_text("\n".join(lines) + "\n")


def main() -> int:
    _patch()
    target = os.environ.get("BENCH_COUNTS")
    if target:
        threading.Thread(target=_writer, args=(Path(target),), daemon=True).start()
    traced = os.environ.get("BENCH_TRACEMALLOC")
    if traced:
        threading.Thread(target=_allocations, args=(Path(traced),), daemon=True).start()
    from modeloperator.cli import main as operator_main

    return operator_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
