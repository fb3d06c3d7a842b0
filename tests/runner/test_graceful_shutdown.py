"""``modelrunner serve`` on SIGTERM, over real HTTP with a real subprocess: new connections are
refused at once, in-flight streams go on, those still generating at MODEL_RUNNER_SHUTDOWN_TIMEOUT
end with a whole error line in their dialect, and the process exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import upload_and_create
from tests.support.processes import stop_process
from tests.support.server import free_port

SHUTDOWN = 4.0  # MODEL_RUNNER_SHUTDOWN_TIMEOUT for these tests
FLUSH = 5.0  # drain.FLUSH_SECONDS: what uvicorn allows after the deadline
# Greedy decoding of the tiny model never picks its end token, so without num_predict a stream
# runs to the context's end: 32k tokens, far longer than SHUTDOWN on any machine.
ENDLESS = {"num_ctx": 32768, "temperature": 0}


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


@pytest.fixture
def served(tmp_path: Path, tiny_gguf: Path) -> Iterator[Served]:
    port = free_port()
    env = dict(os.environ, MODEL_RUNNER_SHUTDOWN_TIMEOUT=str(SHUTDOWN), MODEL_RUNNER_PRUNE="false",
               MODEL_RUNNER_NUM_PARALLEL="4")  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelrunner.cli", "serve", "--listen", f"127.0.0.1:{port}",
             "--models", str(tmp_path / "store")],
            env=env, stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/api/version", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "modelrunner serve did not start"
                time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=120) as client:
            upload_and_create(client, tiny_gguf, "tiny")
        yield Served(process, url, log)
    finally:
        stop_process(process)


@dataclass
class Stream:
    """A streamed response read on its own thread; each line with its arrival time."""

    url: str
    path: str
    body: dict[str, Any]
    lines: list[tuple[float, str]] = field(default_factory=list)
    error: BaseException | None = None
    started: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Stream:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.url, timeout=120) as client,
                client.stream("POST", self.path, json=self.body) as response,
            ):
                assert response.status_code == 200, response.read()
                for line in response.iter_lines():  # raises if the body is cut off mid-chunk
                    if line.strip():
                        self.lines.append((time.monotonic(), line))
                        self.started.set()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.started.set()

    def finish(self) -> list[tuple[float, str]]:
        assert self.thread is not None
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), f"{self.path} still streaming"
        assert self.error is None, f"{self.path}: {self.error!r}"
        return self.lines


def refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/api/version", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_sigterm_finishes_streams_then_ends_the_rest_cleanly(served: Served) -> None:
    generate = {"model": "tiny", "prompt": "once upon a time", "stream": True}
    endless = Stream(served.url, "/api/generate", {**generate, "options": ENDLESS}).start()
    bounded = Stream(
        served.url, "/api/generate", {**generate, "options": {**ENDLESS, "num_predict": 12}}
    ).start()
    openai = Stream(
        served.url, "/v1/completions",
        {"model": "tiny", "prompt": "once upon a time", "stream": True, "temperature": 0,
         "num_ctx": ENDLESS["num_ctx"]},
    ).start()  # fmt: skip
    for stream in (endless, bounded, openai):
        assert stream.started.wait(120) and stream.error is None, stream.error
    sent = time.monotonic()
    served.process.send_signal(signal.SIGTERM)

    # The listening socket closes at once, while the streams go on.
    while not refused(served.url):
        assert time.monotonic() - sent < 3, "new connections still accepted after SIGTERM"
        time.sleep(0.05)
    assert served.process.wait(timeout=SHUTDOWN + FLUSH + 20) == 0, served.log.read_text()
    exited = time.monotonic() - sent
    assert exited < SHUTDOWN + FLUSH + 5, exited

    # A stream in flight at SIGTERM completes normally (on a busy machine it is still generating
    # then; 12 tokens take a tiny fraction of SHUTDOWN anywhere).
    last = json.loads(bounded.finish()[-1][1])
    assert last["done"] is True and last["eval_count"] == 12

    # A generation still running at the deadline kept streaming until then, and ends with a
    # whole Ollama error line: every line parses, the last says why.
    lines = endless.finish()
    items = [json.loads(line) for _, line in lines]
    assert all("response" in item for item in items[:-1])
    assert "shutting down" in items[-1]["error"]
    assert any(at > sent + SHUTDOWN / 2 for at, _ in lines[:-1]), "stream stopped at SIGTERM"
    assert lines[-1][0] - sent >= SHUTDOWN - 0.5

    # The OpenAI stream ends with an error event in OpenAI's shape.
    events = [line for _, line in openai.finish()]
    assert all(line.startswith("data: ") for line in events)
    final = json.loads(events[-1].removeprefix("data: "))
    assert "shutting down" in final["error"]["message"]
    assert "data: [DONE]" not in events[:-1]
