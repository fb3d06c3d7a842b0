"""The model-server gauges the Gateway API Inference Extension routes on (queued requests, running
requests, KV-cache utilisation), under our names and vLLM's, moving with real load over real HTTP
on the real engine and the tiny GGUF."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import upload_and_create

# One slot, so requests beyond the first queue. A long context and a long generation keep the
# first request running until the test closes it (greedy decoding of the tiny model never ends).
LONG = {"num_ctx": 32768, "num_predict": 20000, "temperature": 0}
OURS = ("modelrunner_requests_waiting", "modelrunner_requests_running",
        "modelrunner_kv_cache_usage_perc")  # fmt: skip
VLLM = ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc")


def gauges(http: httpx.Client) -> dict[str, float]:
    text = http.get("/metrics").text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def wait_for(predicate: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def test_queued_running_and_kv_cache_gauges_follow_the_load(
    make_runner: Callable[..., Any], tiny_gguf: Path
) -> None:
    server = make_runner(num_parallel=1)
    http = httpx.Client(base_url=server.url, timeout=120)
    upload_and_create(http, tiny_gguf, "tiny")
    idle = gauges(http)
    assert [idle[n] for n in OURS + VLLM] == [0.0] * 6
    assert idle["vllm:gpu_cache_usage_perc"] == 0.0

    stop, streaming = threading.Event(), threading.Event()
    results: list[int] = []

    def long_stream() -> None:
        body = {"model": "tiny", "prompt": "hi", "options": LONG}
        with httpx.Client(base_url=server.url, timeout=120) as client:
            with client.stream("POST", "/api/generate", json=body) as response:
                for _ in response.iter_lines():
                    streaming.set()
                    if stop.is_set():
                        break  # closing the connection cancels the generation
            results.append(response.status_code)

    def short() -> None:
        body = {"model": "tiny", "prompt": "hi", "stream": False,
                "options": {**LONG, "num_predict": 1}}  # fmt: skip
        with httpx.Client(base_url=server.url, timeout=120) as client:
            results.append(client.post("/api/generate", json=body).status_code)

    threads = [threading.Thread(target=long_stream)]
    threads[0].start()
    wait_for(streaming.is_set)
    threads += [threading.Thread(target=short) for _ in range(2)]
    for thread in threads[1:]:
        thread.start()
    try:
        busy = wait_for(lambda: (g := gauges(http))["modelrunner_requests_waiting"] == 2 and g)
        assert busy["modelrunner_requests_running"] == 1
        assert 0 < busy["modelrunner_kv_cache_usage_perc"] <= 1
        for ours, theirs in zip(OURS, VLLM, strict=True):
            assert busy[ours] == busy[theirs]
        assert busy["vllm:gpu_cache_usage_perc"] == busy["vllm:kv_cache_usage_perc"]
        per_model = http.get("/metrics").text
        assert 'modelrunner_model_kv_cache_usage_perc{model="tiny:latest"}' in per_model
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    assert sorted(results) == [200, 200, 200]
    settled = wait_for(lambda: (g := gauges(http))["modelrunner_requests_running"] == 0 and g)
    assert [settled[n] for n in OURS + VLLM] == [0.0] * 6
    http.close()
