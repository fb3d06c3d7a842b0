"""A runner as its own process (``modelrunner serve``) on a loopback port: started, SIGKILLed and
restarted on the same store, with its RSS readable. Its environment points every proxy variable at
a closed loopback port, so whatever name a fuzzed or interrupted request carries, the runner can
reach nothing beyond loopback (the registry client honours the proxy variables)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.processes import stop_process
from tests.support.server import free_port

# Outbound traffic to anything but loopback goes to a port where nothing listens.
NO_OUTSIDE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


class RunnerProcess:
    def __init__(self, store: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.store, self.log = store, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> RunnerProcess:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MODEL_RUNNER_") and not k.lower().endswith("_proxy")}  # fmt: skip
        env.update(NO_OUTSIDE, PYTHONUNBUFFERED="1", **self.env)
        cmd = [sys.executable, "-m", "modelrunner.cli", "serve",
               "--listen", f"127.0.0.1:{self.port}", "--models", str(self.store)]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runner exited with {self.process.returncode}: {self.log}")
            try:
                if httpx.get(f"{self.url}/api/version", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"runner did not start within {timeout} s: {self.log}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a node loss would: no cleanup runs."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        self.process = None

    def rss(self) -> int:
        """Resident set size in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0
