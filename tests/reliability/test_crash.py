"""kill -9 of a real runner process during pull, push, create, copy, delete and blob upload
(each once by default; ``MODELRUNNER_CRASH_KILLS`` for more, bench/reliability.py runs 60):
after every restart each manifest resolves to verified blobs, no partial blob is visible, the
listing is exactly the manifests, and an interrupted pull completes (resuming its partial)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runner.test_registry import push_random_model
from tests.support.crash import MB, OPERATIONS, CrashLoop
from tests.support.registry import FaultProxy, Registry
from tests.support.runner_process import RunnerProcess

KILLS = int(os.environ.get("MODELRUNNER_CRASH_KILLS", str(len(OPERATIONS))))


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    fault = FaultProxy(registry.host).start()
    yield fault
    fault.stop()


def test_kill_9_at_random_points(
    tmp_path: Path, registry: Registry, proxy: FaultProxy, tiny_gguf: Path
) -> None:
    size = 4 * MB
    push_random_model(registry, "crash/big", "v1", size, seed=15)
    runner = RunnerProcess(tmp_path / "models", tmp_path / "runner.log").start()
    try:
        loop = CrashLoop(runner, registry, proxy, tiny_gguf, f"{proxy.host}/crash/big:v1",
                         size, seed=15)  # fmt: skip
        result = loop.run(KILLS)
    finally:
        runner.stop()
    assert result.problems == []
    assert result.kills == KILLS and set(result.by_operation) == set(OPERATIONS)
