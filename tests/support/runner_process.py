"""``modelrunner`` CLI processes (``serve``, ``gateway``) on loopback ports: started, SIGKILLed and
restarted (a runner on the same store), with their RSS readable. Their environment points every
proxy variable at a closed loopback port, so whatever name a fuzzed or interrupted request carries,
the process can reach nothing beyond loopback (the registry client honours the proxy variables)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

from tests.support.processes import ChildProcess
from tests.support.server import free_port

# Outbound traffic to anything but loopback goes to a port where nothing listens.
NO_OUTSIDE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


def loopback_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without the programs' own settings or any proxy, then NO_OUTSIDE and
    ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODEL_RUNNER_", "MODELRUNNER_GATEWAY_"))
           and not k.lower().endswith("_proxy")}  # fmt: skip
    return {**env, **NO_OUTSIDE, "PYTHONUNBUFFERED": "1", **(extra or {})}


class ServerProcess(ChildProcess):
    """``python -m modelrunner.cli ARGS --listen 127.0.0.1:PORT``, ready once /api/version answers."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.log = args, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}

    def start(self, timeout: float = 60) -> Self:
        cmd = [sys.executable, "-m", "modelrunner.cli", *self.args,
               "--listen", f"127.0.0.1:{self.port}"]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                cmd, env=loopback_env(self.env), stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.args[0]} exited with {self.process.returncode}: {tail}")
            try:
                if httpx.get(f"{self.url}/api/version", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.args[0]} did not start within {timeout} s: {self.log}")

    def rss(self) -> int:
        """Resident set size in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


class RunnerProcess(ServerProcess):
    """``modelrunner serve`` on the store ``store``."""

    def __init__(self, store: Path, log: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(["serve", "--models", str(store)], log, env)
        self.store = store
