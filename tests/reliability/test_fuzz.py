"""The fuzzer over every route of every dialect against a real runner process with the tiny
model: zero 5xx, every 4xx in its dialect's shape, the store unchanged by every refusal.
``MODELRUNNER_FUZZ_REQUESTS`` sets the count (default 400); ``bench/reliability.py`` runs more."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.support.fuzz import Route, fuzz, mutate, routes, seed_for, unseeded
from tests.support.runner_process import RunnerProcess

COUNT = int(os.environ.get("MODELRUNNER_FUZZ_REQUESTS", "400"))


@pytest.fixture(scope="module")
def all_routes(tmp_path_factory: pytest.TempPathFactory) -> list[Route]:
    root = tmp_path_factory.mktemp("routes")
    return routes(create_app(Settings(models=root, listen=[], prune=False)))


@pytest.fixture
def fuzz_runner(tmp_path: Path) -> Iterator[RunnerProcess]:
    runner = RunnerProcess(tmp_path / "models", tmp_path / "runner.log").start()
    yield runner
    runner.stop()


def test_every_route_family_has_a_seed(all_routes: list[Route]) -> None:
    """A new POST route needs a valid body in SEEDS, or it would only ever see junk."""
    assert len(all_routes) > 100
    assert unseeded(all_routes) == []


def test_mutations_are_deterministic_and_varied(all_routes: list[Route]) -> None:
    seed = seed_for(Route("POST", "/api/chat"))
    assert mutate(seed, random.Random(7)) == mutate(seed, random.Random(7))
    notes = {mutate(seed, random.Random(i))[1].split(" ")[0] for i in range(300)}
    assert {"valid", "drop", "weird", "raw", "nest", "long", "malformed", "top-level"} <= notes


def test_fuzz_every_route(
    fuzz_runner: RunnerProcess, all_routes: list[Route], tiny_gguf: Path
) -> None:
    def reseed(http: httpx.Client) -> None:
        if http.post("/api/show", json={"model": "tiny"}).status_code != 200:
            upload_and_create(http, tiny_gguf, "tiny")

    result = fuzz(fuzz_runner.url, all_routes, COUNT, seed=15, store=fuzz_runner.store,
                  reseed=reseed)  # fmt: skip
    assert result.requests == COUNT, result.failures[:5]
    assert result.failures == []
    assert result.server_errors == sum(  # only 502s from a registry that is not there
        n for status, n in result.statuses.items() if status == 502
    )
    assert sum(n for status, n in result.statuses.items() if status < 300) > COUNT // 20
