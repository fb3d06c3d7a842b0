"""Run ``modeloperator`` with request counters, for bench_operator.py.

    BENCH_COUNTS=/path/counts.json python bench/operator_probe.py --standalone -n NS

Counts every Kubernetes API request (kopf and kubernetes_asyncio both go through aiohttp) and
every runner call (httpx) by host:port, and writes the totals to ``$BENCH_COUNTS`` once a second.
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


def main() -> int:
    _patch()
    target = os.environ.get("BENCH_COUNTS")
    if target:
        threading.Thread(target=_writer, args=(Path(target),), daemon=True).start()
    from modeloperator.cli import main as operator_main

    return operator_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
