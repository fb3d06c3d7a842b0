"""Runner and gateway processes on loopback ports for the gateway tests (each runner with its own
store), and reading what they report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import upload_and_create
from tests.support.runner_process import RunnerProcess, ServerProcess
from tests.support.server import free_port

Proc = ServerProcess  # a runner or a gateway


def start_runner(tmp: Path, name: str, models: dict[str, Path], **env: str) -> RunnerProcess:
    """A runner process whose store holds each GGUF of ``models`` under its name."""
    runner = RunnerProcess(tmp / name / "models", tmp / f"{name}.log", env).start()
    with httpx.Client(base_url=runner.url, timeout=60) as client:
        for model, gguf in models.items():
            upload_and_create(client, gguf, model, parameters={"num_ctx": 8192})
    return runner


def start_gateway(tmp: Path, *flags: str, env: dict[str, str] | None = None) -> Proc:
    log = tmp / f"gateway-{free_port()}.log"
    return Proc(["gateway", *flags], log, env).start()


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus series' samples whose labels include ``labels``."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        series, _, rest = head.partition("{")
        if series != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total


def wait_until(check: Any, timeout: float = 15, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        time.sleep(step)
