"""``GET /metrics`` over real HTTP: counters and histograms move with the requests served."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.support.gated import GatedEngine
from tests.support.server import LiveServer

MODEL = "tiny:latest"
CHAT = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 3,
    "temperature": 0,
}


def scrape(http: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(predicate: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


@pytest.fixture
def tiny(http: httpx.Client, tiny_gguf: Path) -> str:
    upload_and_create(http, tiny_gguf, "tiny")
    return "tiny"


def test_counters_and_histograms_follow_requests(http: httpx.Client, tiny: str) -> None:
    before = scrape(http)
    assert value(before, "modelrunner_loaded_models") == 0
    assert value(before, "modelrunner_requests_total", model=MODEL, api="openai", kind="chat") == 0

    chat = http.post("/v1/chat/completions", json=CHAT).json()["usage"]
    completion = http.post(
        "/v1/completions", json={"model": tiny, "prompt": "Once", "max_tokens": 2, "temperature": 0}
    ).json()["usage"]
    embedded = http.post("/v1/embeddings", json={"model": tiny, "input": ["a", "b"]}).json()[
        "usage"
    ]
    ollama = http.post(
        "/api/generate",
        json={
            "model": tiny,
            "prompt": "hi",
            "stream": False,
            "options": {"num_predict": 2, "temperature": 0},
        },
    ).json()

    after = scrape(http)
    requests = "modelrunner_requests_total"
    assert value(after, requests, model=MODEL, api="openai", kind="chat") == 1
    assert value(after, requests, model=MODEL, api="openai", kind="generate") == 1
    assert value(after, requests, model=MODEL, api="openai", kind="embed") == 1
    assert value(after, requests, model=MODEL, api="ollama", kind="generate") == 1
    generated = chat["completion_tokens"] + completion["completion_tokens"] + ollama["eval_count"]
    assert value(after, "modelrunner_generated_tokens_total", model=MODEL) == generated
    prompt = (
        chat["prompt_tokens"]
        + completion["prompt_tokens"]
        + embedded["prompt_tokens"]
        + ollama["prompt_eval_count"]
    )
    assert value(after, "modelrunner_prompt_tokens_total", model=MODEL) == prompt
    assert value(after, "modelrunner_time_to_first_token_seconds_count", model=MODEL) == 3
    assert value(after, "modelrunner_time_to_first_token_seconds_sum", model=MODEL) > 0
    assert value(after, "modelrunner_time_per_output_token_seconds_count", model=MODEL) == 3
    buckets = [
        v
        for (n, labels), v in after.items()
        if n == "modelrunner_time_to_first_token_seconds_bucket" and ("le", "+Inf") in labels
    ]
    assert buckets == [3]
    assert value(after, "modelrunner_loaded_models") == 2  # completion and embedding runners
    assert value(after, "modelrunner_queue_depth", model=MODEL) == 0
    assert value(after, "modelrunner_active_requests", model=MODEL) == 0

    http.post("/v1/chat/completions", json=CHAT | {"stream": True})
    again = scrape(http)
    assert value(again, requests, model=MODEL, api="openai", kind="chat") == 2
    assert value(again, "modelrunner_generated_tokens_total", model=MODEL) == generated + 3


@pytest.fixture
def gated(settings: Settings, tiny_gguf: Path) -> Iterator[tuple[httpx.Client, GatedEngine]]:
    engine = GatedEngine()
    server = LiveServer(create_app(settings, engine=engine)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            upload_and_create(client, tiny_gguf, "tiny")
            yield client, engine
    finally:
        engine.release()
        server.stop()


def test_active_requests_and_queue_depth(gated: tuple[httpx.Client, GatedEngine]) -> None:
    client, engine = gated
    engine.hold()
    threads = [
        threading.Thread(target=lambda: client.post("/v1/chat/completions", json=CHAT), daemon=True)
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()

    # One slot per model by default: one request runs (held at the gate), the other queues.
    def one_queued() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        samples = scrape(client)
        return samples if value(samples, "modelrunner_queue_depth", model=MODEL) == 1 else None

    samples = wait_for(one_queued)
    assert value(samples, "modelrunner_active_requests", model=MODEL) == 1
    assert value(samples, "modelrunner_loaded_models") == 1
    engine.release()
    for thread in threads:
        thread.join(30)
    done = scrape(client)
    assert value(done, "modelrunner_queue_depth", model=MODEL) == 0
    assert value(done, "modelrunner_active_requests", model=MODEL) == 0
    assert value(done, "modelrunner_requests_total", model=MODEL, api="openai", kind="chat") == 2


def test_a_model_loaded_for_generation_and_embeddings_sums_its_gauges(
    gated: tuple[httpx.Client, GatedEngine],
) -> None:
    """The generation and the embedding instance of one model share its label: the gauges add
    up both (each used to overwrite the other, hiding a running generation)."""
    client, engine = gated
    assert client.post("/api/generate", json={"model": "tiny", "prompt": "hi"}).status_code == 200
    assert client.post("/api/embed", json={"model": "tiny", "input": "hi"}).status_code == 200
    loaded = scrape(client)
    assert value(loaded, "modelrunner_loaded_models") == 2
    slots = value(loaded, "modelrunner_slots", model=MODEL)
    engine.hold()
    body = {"model": "tiny", "prompt": "hi", "stream": False}
    thread = threading.Thread(target=lambda: client.post("/api/generate", json=body), daemon=True)
    thread.start()
    running = wait_for(
        lambda: (
            (s := scrape(client))
            and value(s, "modelrunner_active_requests", model=MODEL) == 1
            and s
        ),
        timeout=10,
    )
    assert value(running, "modelrunner_slots", model=MODEL) == slots > 1
    engine.release()
    thread.join(30)
