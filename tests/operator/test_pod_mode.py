"""Pod mode on the simulated GPU nodes, model healing across replicas, operator restarts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operator.conftest import (
    RestartableRunner,
    SeededRegistry,
    condition,
    external_runner,
    model,
    status_of,
    wait_ready,
)
from tests.support.cluster import Kubectl, wait_for

pytestmark = pytest.mark.cluster
GPU_PRODUCT = "NVIDIA-A100-SXM4-80GB"


def gpu_runner(name: str, replicas: int = 2, gpus: int = 1, **extra: Any) -> dict[str, Any]:
    spec = {"replicas": replicas, "image": "modelrunner/runner:test",
            "gpu": {"count": gpus, "product": GPU_PRODUCT}, "storage": {"ephemeral": True},
            "engine": {"contextSize": 8192, "parallel": 2}, **extra}  # fmt: skip
    return {"apiVersion": "modelrunner.io/v1alpha1", "kind": "ModelRunner",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def test_statefulset_services_and_gpu_placement(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str], operator_factory: Callable[..., Any]
) -> None:
    operator_factory()
    kubectl.apply(gpu_runner("model-runner"), namespace=namespace)
    wait_ready(kubectl, "modelrunner", "model-runner", namespace, timeout=120)
    sts = kubectl.json("get", "statefulset", "model-runner", namespace=namespace)
    owner = sts["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == (
        "ModelRunner",
        "model-runner",
        True,
    )
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "modelrunner/runner:test"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": GPU_PRODUCT}
    assert {e["name"]: e["value"] for e in container["env"]}["MODEL_RUNNER_CONTEXT_SIZE"] == "8192"
    svc = kubectl.json("get", "service", "model-runner", namespace=namespace)
    assert sorted(p["port"] for p in svc["spec"]["ports"]) == [80, 11434, 12434]
    headless = kubectl.json("get", "service", "model-runner-pods", namespace=namespace)
    assert headless["spec"]["clusterIP"] == "None"
    pods = kubectl.json("get", "pods", "-l", "app.kubernetes.io/instance=model-runner",
                        namespace=namespace)["items"]  # fmt: skip
    assert len(pods) == 2 and {p["spec"]["nodeName"] for p in pods} <= set(gpu_nodes)
    status = status_of(kubectl, "modelrunner", "model-runner", namespace)
    assert status["readyReplicas"] == 2
    assert status["endpoint"] == f"http://model-runner.{namespace}.svc.cluster.local"
    # A spec edit rolls out: the StatefulSet follows.
    kubectl("patch", "modelrunner", "model-runner", "--type=merge", "-p",
            json.dumps({"spec": {"engine": {"contextSize": 4096}}}), namespace=namespace)  # fmt: skip

    def rolled() -> bool:
        current = kubectl.json("get", "statefulset", "model-runner", namespace=namespace)
        env = current["spec"]["template"]["spec"]["containers"][0]["env"]
        return {e["name"]: e["value"] for e in env}["MODEL_RUNNER_CONTEXT_SIZE"] == "4096"

    wait_for(rolled, timeout=30, message="the StatefulSet picked up the spec edit")


def test_too_many_gpus_is_reported(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str], operator_factory: Callable[..., Any]
) -> None:
    operator_factory()
    kubectl.apply(gpu_runner("big", replicas=1, gpus=9), namespace=namespace)

    def stalled() -> dict[str, Any] | None:
        cond = condition(status_of(kubectl, "modelrunner", "big", namespace), "Stalled")
        return cond if cond.get("status") == "True" else None

    cond = wait_for(stalled, timeout=60, message="Stalled condition")
    assert cond["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    ready = condition(status_of(kubectl, "modelrunner", "big", namespace), "Ready")
    assert ready["status"] == "False" and "Insufficient nvidia.com/gpu" in ready["message"]


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[RestartableRunner]]:
    runners = [RestartableRunner(tmp_path / f"replica-{i}").start() for i in range(3)]
    yield runners
    for runner in runners:
        runner.stop()


@pytest.mark.registry
def test_every_replica_gets_every_model(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str], operator_factory: Callable[..., Any],
    replicas: list[RestartableRunner], seeded_registry: SeededRegistry,
) -> None:  # fmt: skip
    urls = {f"{namespace}/model-runner-{i}": r.url for i, r in enumerate(replicas)}
    operator_factory(MODELOPERATOR_INSTANCE_URLS=json.dumps(urls))
    kubectl.apply(gpu_runner("model-runner", replicas=2), namespace=namespace)
    # A Model is Ready once every *ready* instance serves it: wait for both pods first.
    wait_ready(kubectl, "modelrunner", "model-runner", namespace, timeout=120)
    kubectl.apply(model("tiny", source=seeded_registry.v1, insecure=True), namespace=namespace)
    wait_ready(kubectl, "model", "tiny", namespace, timeout=120)
    assert all("tiny:latest" in r.names() for r in replicas[:2])
    assert "tiny:latest" not in replicas[2].names()
    states = status_of(kubectl, "model", "tiny", namespace)["runners"]
    assert sorted(s["instance"] for s in states) == ["model-runner-0", "model-runner-1"]
    kubectl("patch", "modelrunner", "model-runner", "--type=merge", "-p",
            '{"spec": {"replicas": 3}}', namespace=namespace)  # fmt: skip
    wait_for(lambda: "tiny:latest" in replicas[2].names(), timeout=90,
             message="the new replica got the model")  # fmt: skip


@pytest.mark.registry
def test_operator_killed_mid_work_neither_duplicates_nor_loses_a_delete(
    kubectl: Kubectl, namespace: str, operator_factory: Callable[..., Any],
    runner_process: RestartableRunner, seeded_registry: SeededRegistry,
) -> None:  # fmt: skip
    op = operator_factory()
    kubectl.apply(external_runner("model-runner", runner_process.url), namespace=namespace)
    kubectl.apply(model("tiny", source=seeded_registry.v1, insecure=True), namespace=namespace)
    wait_for(lambda: status_of(kubectl, "model", "tiny", namespace).get("phase"), timeout=60,
             message="the operator started on the model")  # fmt: skip
    op.kill()
    op.start()
    wait_ready(kubectl, "model", "tiny", namespace)
    names = runner_process.names()
    assert names == {"tiny:latest", seeded_registry.v1}
    events = kubectl.json("get", "events", "--field-selector", "involvedObject.name=tiny",
                          namespace=namespace)["items"]  # fmt: skip
    assert sum(e.get("count", 1) for e in events if e["reason"] == "Ready") == 1
    # A delete issued while no operator runs is carried out by the next one.
    op.kill()
    kubectl("delete", "model", "tiny", "--wait=false", namespace=namespace)
    assert kubectl.exists("model", "tiny", namespace=namespace)
    op.start()
    wait_for(lambda: not kubectl.exists("model", "tiny", namespace=namespace), timeout=60,
             message="the delete finished after the restart")  # fmt: skip
    assert runner_process.names() == set()
