"""Autoscaling from the load a runner's own pods report, on the simulated nodes: clients that call
the runner directly (not through its ModelGateway, whose kwok pods never answer) scale it up, and
while the gateway's demand is unknown nothing scales it back down."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import upload_and_create
from tests.operator.conftest import RestartableRunner
from tests.operator.test_gateway_objects import gateway
from tests.operator.test_pod_mode import gpu_runner
from tests.support.cluster import Kubectl, wait_for
from tests.support.tiny_model import write_tiny_gguf

pytestmark = pytest.mark.cluster
GATE = "modelrunner.io/models-ready"
# Greedy decoding of the tiny model never ends on its own: each stream runs until closed.
LONG = {"num_ctx": 4096, "num_predict": 20000, "temperature": 0}


def held_streams(url: str, count: int) -> tuple[threading.Event, list[threading.Thread]]:
    """``count`` generations straight to ``url``, each running until the event is set."""
    stop, started = threading.Event(), threading.Semaphore(0)

    def stream() -> None:
        body = {"model": "tiny", "prompt": "the", "raw": True, "options": LONG}
        with (
            httpx.Client(base_url=url, timeout=120) as client,
            client.stream("POST", "/api/generate", json=body) as response,
        ):
            for index, _ in enumerate(response.iter_lines()):
                if index == 0:
                    started.release()
                if stop.is_set():
                    break  # closing the connection ends the generation

    threads = [threading.Thread(target=stream) for _ in range(count)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert started.acquire(timeout=60), "a direct stream did not start"
    return stop, threads


@pytest.fixture
def serving(tmp_path: Path, runner_process: RestartableRunner) -> Iterator[RestartableRunner]:
    with httpx.Client(base_url=runner_process.url, timeout=60) as client:
        upload_and_create(client, write_tiny_gguf(tmp_path / "tiny.gguf"), "tiny")
    yield runner_process


def test_direct_clients_scale_a_runner_up_while_its_gateway_is_silent(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str], operator_factory: Callable[..., Any],
    serving: RestartableRunner,
) -> None:  # fmt: skip
    operator_factory(MODELOPERATOR_INSTANCE_URLS=json.dumps({f"{namespace}/busy-0": serving.url}))
    busy = gpu_runner("busy", replicas=1, modelSelector={"matchLabels": {"runner": "busy"}},
                      autoscaling={"minReplicas": 1, "maxReplicas": 2,
                                   "targetConcurrentRequests": 1, "scaleDownDelaySeconds": 1})  # fmt: skip
    busy["metadata"]["labels"] = {"tier": "direct"}
    kubectl.apply([busy, gateway("front", runnerSelector={"matchLabels": {"tier": "direct"}})],
                  namespace=namespace)  # fmt: skip

    def gate_open() -> bool:
        pod = kubectl.json("get", "pods", "--field-selector=metadata.name=busy-0",
                           namespace=namespace)["items"]  # fmt: skip
        conditions = (pod[0].get("status") or {}).get("conditions") or [] if pod else []
        return any(c.get("type") == GATE and c.get("reason") == "ModelsPresent"
                   for c in conditions)  # fmt: skip

    wait_for(gate_open, timeout=90, message="busy-0 serves (its gate opened)")

    def autoscaling() -> dict[str, Any]:
        found = kubectl.json("get", "modelrunner", "busy", namespace=namespace)
        return {**((found.get("status") or {}).get("autoscaling") or {}),
                "replicas": found["spec"].get("replicas")}  # fmt: skip

    stop, threads = held_streams(serving.url, 2)
    try:
        up = wait_for(lambda: (a := autoscaling())["replicas"] == 2 and a, timeout=60,
                      message="two direct requests at one per replica: two replicas")  # fmt: skip
        # Raised by the direct requests (the next pass, at two, reads "DemandUnknown").
        assert up["inFlight"] == 2 and up["lastScaleTime"], up
        assert up["reason"] in ("ScaleUp", "DemandUnknown"), up
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    # Idle now, past the 1 s delay, but the gateway's demand is unknown: no scale-down.
    quiet = wait_for(lambda: (a := autoscaling())["inFlight"] == 0 and a, timeout=60,
                     message="the autoscaler saw the direct requests end")  # fmt: skip
    assert quiet["replicas"] == 2 and quiet["reason"] == "DemandUnknown", quiet
