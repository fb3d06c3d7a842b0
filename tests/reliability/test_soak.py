"""A bounded soak over every dialect with random disconnects and cancellations: zero 5xx, no
dropped connection, every slot and queue back to zero and RSS near its baseline afterwards.
``MODELRUNNER_SOAK_SECONDS`` sets the length (default 30); bench/reliability.py runs ten minutes."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.conftest import upload_and_create
from tests.support.runner_process import RunnerProcess
from tests.support.soak import Soak

SECONDS = float(os.environ.get("MODELRUNNER_SOAK_SECONDS", "30"))
RSS_SLACK = 64 << 20  # allocator arenas and caches settle within this much


@pytest.mark.slow
def test_soak_mixed_dialects(tmp_path: Path, tiny_gguf: Path) -> None:
    runner = RunnerProcess(tmp_path / "models", tmp_path / "runner.log").start()
    try:
        with httpx.Client(base_url=runner.url, timeout=60) as http:
            upload_and_create(http, tiny_gguf, "tiny")
        result = Soak(runner, clients=6, seed=15).run(SECONDS)
    finally:
        runner.stop()
    assert result.errors == []
    assert result.server_errors == 0, result.statuses
    assert result.disconnects > 0 and result.cancellations > 0 and result.completed > 50
    assert set(result.by_dialect) == {"ollama", "openai", "anthropic", "dmr"}
    assert result.busy_after == 0
    assert result.rss_after <= result.rss_before * 1.25 + RSS_SLACK, (
        result.rss_before, result.rss_after)  # fmt: skip
