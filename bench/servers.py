"""Servers the benchmarks start and talk to over loopback: processes, readiness, SSE streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process(
    cmd: list[str], env: dict[str, str] | None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in its own session (output to ``log``); stop the whole group on exit."""
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


async def json_events(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """The events of a streamed response: SSE ``data:`` lines or NDJSON lines alike."""
    async with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            line = line.removeprefix("data: ").strip()
            if line and line != "[DONE]":
                yield json.loads(line)


def runner_cmd(
    store: Path, port: int, slots: int, ctx: int, threads: int
) -> tuple[list[str], dict[str, str]]:
    """``modelrunner serve`` on loopback ``port`` over ``store`` and its environment: ``slots``
    slots of ``ctx`` tokens each, ``threads`` threads, models kept loaded, no prune at start."""
    env = dict(os.environ, MODEL_RUNNER_MODELS=str(store), MODEL_RUNNER_KEEP_ALIVE="1h",
               MODEL_RUNNER_NUM_PARALLEL=str(slots), MODEL_RUNNER_CONTEXT_SIZE=str(ctx),
               MODEL_RUNNER_NUM_THREAD=str(threads), MODEL_RUNNER_PRUNE="false")  # fmt: skip
    return [sys.executable, "-m", "modelrunner.cli", "serve", "--listen", f"127.0.0.1:{port}"], env


def llama_server_cmd(binary: Path, gguf: Path, port: int, slots: int, ctx: int,
                     threads: tuple[int, int]) -> list[str]:  # fmt: skip
    """llama-server with ``slots`` slots of ``ctx`` tokens each (a KV stream per slot, as the
    runner lays it out), the runner's batch sizes, and the given threads (0: its default)."""
    cmd = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "-np", str(slots), "-c", str(slots * ctx), "-b", "512", "-ub", "512", "--no-webui"]  # fmt: skip
    t, tb = threads
    if t:
        cmd += ["-t", str(t), "-tb", str(tb)]
    return cmd


def shown_cmd(cmd: list[str], gguf: Path) -> str:
    """``cmd`` as the report shows it: no machine paths, no port."""
    shown = ["llama-server", *cmd[1:]]
    shown[shown.index(str(gguf))] = "gemma-3-270m-q4_k_m.gguf"
    shown[shown.index("--port") + 1] = "PORT"
    return " ".join(shown)
