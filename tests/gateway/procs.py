"""Runner and gateway processes on loopback ports for the gateway tests: started with the
``modelrunner`` CLI, each with its own store, stopped (or SIGKILLed) by the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import upload_and_create
from tests.support.processes import stop_process
from tests.support.server import free_port

# Outbound traffic to anything but loopback goes to a port where nothing listens.
_NO_OUTSIDE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODEL_RUNNER_", "MODELRUNNER_GATEWAY_"))
        and not k.lower().endswith("_proxy")
    }
    return {**env, **_NO_OUTSIDE, "PYTHONUNBUFFERED": "1", **(extra or {})}


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args, self.log, self.env = args, log, env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Proc:
        cmd = [sys.executable, "-m", "modelrunner.cli", *self.args,
               "--listen", f"127.0.0.1:{self.port}"]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                cmd, env=_env(self.env), stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/api/version", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.args[0]} did not start within {timeout} s: {self.log}")

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a node loss would."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        self.process = None


def start_runner(tmp: Path, name: str, models: dict[str, Path], **env: str) -> Proc:
    """A runner process whose store holds each GGUF of ``models`` under its name."""
    runner = Proc(["serve", "--models", str(tmp / name / "models")], tmp / f"{name}.log", env)
    runner.start()
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
