"""Scheduler behaviour over real HTTP: keep_alive, LRU eviction, queue limit, disconnects."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import upload_and_create
from tests.support.server import LiveServer
from tests.support.tiny_model import write_tiny_gguf

LONG = {"num_predict": 100000, "temperature": 1.0, "seed": 1}


def wait_for(predicate: Callable[[], bool], timeout: float = 10, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(interval)


def loaded(client: httpx.Client) -> list[str]:
    return [m["name"] for m in client.get("/api/ps").json()["models"]]


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def tiny_runner(make_runner: Callable[..., LiveServer], tiny_gguf: Path, tmp_path: Path) -> Any:
    def start(**settings: Any) -> tuple[LiveServer, httpx.Client]:
        server = make_runner(**settings)
        client = httpx.Client(base_url=server.url, timeout=60)
        upload_and_create(client, tiny_gguf, "tiny")
        upload_and_create(client, write_tiny_gguf(tmp_path / "other.gguf", seed=7), "other")
        return server, client

    return start


def test_keep_alive_expiry(tiny_runner: Any) -> None:
    _, client = tiny_runner()
    client.post("/api/generate", json={"model": "tiny", "keep_alive": "1s"})
    assert loaded(client) == ["tiny:latest"]
    started = time.monotonic()
    wait_for(lambda: loaded(client) == [], timeout=5)
    assert time.monotonic() - started >= 0.5
    client.post("/api/generate", json={"model": "tiny", "keep_alive": -1})
    expires = client.get("/api/ps").json()["models"][0]["expires_at"]
    assert expires.startswith("2318-")  # negative keeps it loaded forever
    client.post("/api/generate", json={"model": "tiny", "keep_alive": 0})
    assert loaded(client) == []


def test_default_keep_alive_is_configurable(tiny_runner: Any) -> None:
    _, client = tiny_runner(keep_alive="700ms")
    client.post("/api/generate", json={"model": "tiny"})
    assert loaded(client) == ["tiny:latest"]
    wait_for(lambda: loaded(client) == [], timeout=5)


def test_least_recently_used_idle_model_is_evicted(tiny_runner: Any) -> None:
    _, client = tiny_runner(max_loaded_models=1)
    client.post("/api/generate", json={"model": "tiny"})
    assert loaded(client) == ["tiny:latest"]
    client.post("/api/generate", json={"model": "other"})
    assert loaded(client) == ["other:latest"]


@pytest.mark.slow
def test_full_queue_answers_503(make_runner: Callable[..., LiveServer], store_dir: Path) -> None:
    from modelrunner.core.defaults import ensure_default_model
    from modelrunner.store.models import ModelStore

    ensure_default_model(ModelStore(store_dir), "gemma")
    server = make_runner(max_queue=1, num_parallel=1)  # one slot, one queue place
    client = httpx.Client(base_url=server.url, timeout=60)
    # A grammar that needs at least 60 numbers: the first request holds the slot for seconds.
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 60}
    body = {
        "model": "gemma",
        "prompt": "Numbers:",
        "format": schema,
        "options": {"num_predict": 400},
    }
    with (
        httpx.Client(base_url=server.url, timeout=60) as first,
        first.stream("POST", "/api/generate", json=body) as holding,
    ):
        lines = holding.iter_lines()  # kept referenced: dropping it would close the connection
        next(lines)  # the first request now holds the only slot
        short = {"model": "gemma", "prompt": "x", "options": {"num_predict": 1}}
        waiter = threading.Thread(
            target=lambda: httpx.post(server.url + "/api/generate", json=short, timeout=60)
        )
        waiter.start()
        wait_for(lambda: metric(client, "modelrunner_queue_depth") == 1, timeout=20)
        refused = client.post("/api/generate", json=short)
        assert refused.status_code == 503
        assert refused.json() == {
            "error": "server busy, please try again.  maximum pending requests exceeded"
        }
    waiter.join(timeout=30)
    assert not waiter.is_alive()


def test_disconnect_stops_generation(tiny_runner: Any) -> None:
    server, client = tiny_runner()
    body = {"model": "tiny", "prompt": "hello", "options": LONG}
    with (
        httpx.Client(base_url=server.url, timeout=60) as streamer,
        streamer.stream("POST", "/api/generate", json=body) as response,
    ):
        for index, line in enumerate(response.iter_lines()):
            assert not json.loads(line)["done"]
            if index == 20:
                break
    closed_at = time.monotonic()
    wait_for(lambda: metric(client, "modelrunner_active_requests") == 0, timeout=5)
    stopped_after = time.monotonic() - closed_at
    generated = metric(client, "modelrunner_generated_tokens_total")
    # The tiny model makes thousands of tokens a second: the context (512) would be full long
    # before the deadline if the disconnect were not noticed.
    assert generated < 400, generated
    assert stopped_after < 2
    # The slot is free again: a new request is served at once.
    quick = client.post(
        "/api/generate", json={**body, "stream": False, "options": {"num_predict": 2}}
    )
    assert quick.status_code == 200 and quick.json()["eval_count"] == 2
