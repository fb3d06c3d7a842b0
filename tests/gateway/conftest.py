"""Gateway fixtures: two runner processes holding different tiny models (and one in common), and
a gateway process in front of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.procs import Proc, start_gateway, start_runner
from tests.support.tiny_model import write_tiny_gguf


@pytest.fixture(scope="session")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ggufs")
    return {name: write_tiny_gguf(root / f"{name}.gguf", seed=i)
            for i, name in enumerate(("alpha", "beta", "shared"))}  # fmt: skip


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory, ggufs: dict[str, Path]) -> Iterator[list[Proc]]:
    """Runner A holds alpha and shared; runner B holds beta and shared."""
    tmp = tmp_path_factory.mktemp("pair")
    runners: list[Proc] = []
    try:
        runners.append(start_runner(tmp, "a", {"alpha": ggufs["alpha"], "shared": ggufs["shared"]}))
        runners.append(start_runner(tmp, "b", {"beta": ggufs["beta"], "shared": ggufs["shared"]}))
        yield runners
    finally:
        for runner in runners:
            runner.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, pair: list[Proc]) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("gateway")
    flags = [f for r in pair for f in ("--backend", r.url)]
    proc = start_gateway(tmp, *flags)
    try:
        yield proc
    finally:
        proc.stop()
