"""The models-ready readiness gate on kwok pods: a new replica is let in (gate True, counted in
readyReplicas) only once its models are on it, promptly on pod events, and a Model added later
never closes a serving replica's gate.

kwok marks every readiness gate True when it starts a pod and never recomputes ``Ready``, so
these tests read the gate condition the operator writes (reason ``ModelsPresent``), which a real
kubelet turns into the pod's ``Ready``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operator.conftest import (
    RestartableRunner,
    SeededRegistry,
    model,
    status_of,
    wait_ready,
)
from tests.operator.test_pod_mode import gpu_runner
from tests.support.cluster import Kubectl, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.registry]
GATE = "modelrunner.io/models-ready"


def gate_of(kubectl: Kubectl, pod: str, namespace: str) -> dict[str, Any]:
    """The pod's gate condition; empty while the pod does not exist (yet)."""
    found = kubectl.json(
        "get", "pods", f"--field-selector=metadata.name={pod}", namespace=namespace
    )
    if not found["items"]:
        return {}
    conditions = (found["items"][0].get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == GATE), {})


def is_open(cond: dict[str, Any]) -> bool:
    return cond.get("status") == "True" and cond.get("reason") == "ModelsPresent"


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[RestartableRunner]]:
    """Runner processes for pods model-runner-0 and -1; the second is started by the test."""
    first = RestartableRunner(tmp_path / "replica-0").start()
    second = RestartableRunner(tmp_path / "replica-1")
    yield [first, second]
    first.stop()
    second.stop()


def test_a_new_replica_joins_only_with_its_models(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str], operator_factory: Callable[..., Any],
    replicas: list[RestartableRunner], seeded_registry: SeededRegistry,
) -> None:  # fmt: skip
    urls = {f"{namespace}/model-runner-{i}": r.url for i, r in enumerate(replicas)}
    # A long timer interval: whatever happens within it comes from the pod event handler.
    operator_factory(
        MODELOPERATOR_INSTANCE_URLS=json.dumps(urls), MODELOPERATOR_RECONCILE_INTERVAL="600"
    )
    kubectl.apply(model("tiny", source=seeded_registry.v1, insecure=True), namespace=namespace)
    kubectl.apply(gpu_runner("model-runner", replicas=1), namespace=namespace)
    first_open = wait_for(
        lambda: (c := gate_of(kubectl, "model-runner-0", namespace)) and is_open(c) and c,
        timeout=60, message="the first replica's gate opened",
    )  # fmt: skip
    assert "tiny:latest" in replicas[0].names()
    wait_ready(kubectl, "modelrunner", "model-runner", namespace, timeout=60)

    # Scale to 2 while the second replica's runner is down: its gate stays closed, it is not
    # counted as ready, and the first keeps serving.
    kubectl("patch", "modelrunner", "model-runner", "--type=merge", "-p",
            '{"spec": {"replicas": 2}}', namespace=namespace)  # fmt: skip
    closed = wait_for(
        lambda: (c := gate_of(kubectl, "model-runner-1", namespace)).get("status") == "False"
        and c.get("reason") == "RunnerUnreachable" and c,
        timeout=30,
        message=lambda: "the new replica's gate closed (kwok had set it True): "
        f"{gate_of(kubectl, 'model-runner-1', namespace)}",
    )  # fmt: skip
    assert closed["message"]
    status = status_of(kubectl, "modelrunner", "model-runner", namespace)
    assert status["readyReplicas"] == 1
    assert {i["name"]: i["ready"] for i in status["instances"]} == {
        "model-runner-0": True,
        "model-runner-1": False,
    }

    # The runner comes up: the operator pulls the model onto it, and only then opens the gate.
    replicas[1].start()
    wait_for(
        lambda: is_open(gate_of(kubectl, "model-runner-1", namespace)),
        timeout=90, message=lambda: f"gate opened: {gate_of(kubectl, 'model-runner-1', namespace)}",
    )  # fmt: skip
    assert "tiny:latest" in replicas[1].names()
    wait_for(
        lambda: status_of(kubectl, "modelrunner", "model-runner", namespace).get("readyReplicas")
        == 2,
        timeout=30, message="readyReplicas 2",
    )  # fmt: skip

    # A Model added later is pulled onto both replicas without closing either gate.
    kubectl.apply(model("tiny2", source=seeded_registry.v2, insecure=True), namespace=namespace)
    wait_ready(kubectl, "model", "tiny2", namespace, timeout=90)
    assert all("tiny2:latest" in r.names() for r in replicas)
    assert gate_of(kubectl, "model-runner-0", namespace) == first_open
    assert is_open(gate_of(kubectl, "model-runner-1", namespace))
