"""A ModelGateway on the simulated nodes: the objects the operator creates for it, the routing
table it keeps current as Models come and go, a Service name it may not take, and the
autoscaler's floor when no gateway answers (kwok pods have no network: tests/node has the real
traffic)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.operator.conftest import (
    RestartableRunner,
    SeededRegistry,
    condition,
    model,
    status_of,
    wait_ready,
)
from tests.operator.test_pod_mode import GPU_PRODUCT, gpu_runner
from tests.support.cluster import Kubectl, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.registry]


def gateway(name: str, **spec: Any) -> dict[str, Any]:
    # On the kwok GPU nodes, like the runners (the real node cannot pull the test image).
    placement = {
        "nodeSelector": {"nvidia.com/gpu.product": GPU_PRODUCT},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "image": "modelrunner/runner:test",
    }
    return {"apiVersion": "modelrunner.io/v1alpha1", "kind": "ModelGateway",
            "metadata": {"name": name}, "spec": {**placement, **spec}}  # fmt: skip


def routes(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    cm = kubectl.json("get", "configmap", f"{name}-gateway-routes", namespace=namespace)
    table: dict[str, Any] = json.loads(cm["data"]["routes.json"])
    return table


def test_gateway_objects_routes_and_service_conflict(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str], operator_factory: Callable[..., Any],
    runner_process: RestartableRunner, seeded_registry: SeededRegistry,
) -> None:  # fmt: skip
    operator = operator_factory(
        MODELOPERATOR_INSTANCE_URLS=json.dumps({f"{namespace}/small-0": runner_process.url})
    )
    small = gpu_runner("small", replicas=1, modelSelector={"matchLabels": {"runner": "small"}})
    small["metadata"]["labels"] = {"tier": "front"}
    hidden = gpu_runner("hidden", replicas=0)
    tiny = model("tiny", source=seeded_registry.v1, insecure=True)
    tiny["metadata"]["labels"] = {"runner": "small"}
    kubectl.apply([small, hidden, tiny], namespace=namespace)
    wait_ready(kubectl, "model", "tiny", namespace, timeout=120)
    kubectl.apply(gateway("front", runnerSelector={"matchLabels": {"tier": "front"}},
                          policy="leastRequests", holdTimeoutSeconds=30), namespace=namespace)  # fmt: skip
    wait_ready(kubectl, "modelgateway", "front", namespace, timeout=120)

    status = status_of(kubectl, "modelgateway", "front", namespace)
    assert status["endpoint"] == f"http://front.{namespace}.svc.cluster.local"
    assert (status["runnerCount"], status["modelCount"]) == (1, 2)
    dep = kubectl.json("get", "deployment", "front-gateway", namespace=namespace)
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "ModelGateway"
    pod = dep["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[0] == "gateway" and "--routes-configmap" in args
    assert args[args.index("--routes-configmap") + 1] == f"{namespace}/front-gateway-routes"
    assert args[args.index("--policy") + 1] == "least"
    assert args[args.index("--hold-timeout") + 1] == "30"
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert "/var/run/modelrunner/runners/small" in mounts
    assert "/var/run/modelrunner/runners/hidden" not in mounts
    svc = kubectl.json("get", "service", "front", namespace=namespace)
    assert sorted(p["port"] for p in svc["spec"]["ports"]) == [80, 11434, 12434]

    # The gateway's account reads its routing table and nothing else.
    account = f"--as=system:serviceaccount:{namespace}:front-gateway"

    def can(*what: str) -> bool:
        out = kubectl("auth", "can-i", *what, account, namespace=namespace, check=False)
        return out.stdout.strip() == "yes"

    assert can("get", "configmap/front-gateway-routes")
    assert can("watch", "configmap/front-gateway-routes")
    assert not can("get", "configmap/other")
    assert not can("get", "secrets") and not can("list", "pods")

    table = routes(kubectl, namespace, "front")
    (entry,) = table["runners"]
    assert entry["name"] == "small" and entry["replicas"] == 1
    assert entry["tokenFile"] == "/var/run/modelrunner/runners/small/token"
    assert "tiny:latest" in entry["models"] and len(entry["models"]) == 2
    (instance,) = table["instances"]
    small_pod = kubectl.json("get", "pod", "small-0", namespace=namespace)
    assert instance["url"] == f"http://{small_pod['status']['podIP']}:11434"
    assert instance["runner"] == "small" and "tiny:latest" in instance["models"]

    # A Model deleted: gone from the table within a few seconds (events, not the timer).
    kubectl("delete", "model", "tiny", "--wait=true", namespace=namespace, timeout=120)
    wait_for(lambda: routes(kubectl, namespace, "front")["runners"][0]["models"] == [],
             timeout=20, message="the routing table dropped the deleted Model")  # fmt: skip
    assert routes(kubectl, namespace, "front")["instances"][0]["models"] == []

    # A Service name that a ModelRunner owns is refused, and nothing is taken over.
    kubectl.apply(gateway("thief", serviceName="small"), namespace=namespace)

    def stalled() -> str | None:
        cond = condition(status_of(kubectl, "modelgateway", "thief", namespace), "Stalled")
        return cond.get("message") if cond.get("status") == "True" else None

    message = wait_for(stalled, timeout=60, message="thief Stalled")
    assert "ModelRunner 'small'" in message, message
    owner = kubectl.json("get", "service", "small", namespace=namespace)["metadata"]
    assert owner["ownerReferences"][0]["kind"] == "ModelRunner"
    assert not kubectl.exists("deployment", "thief-gateway", namespace=namespace)

    # No finalizer on gateways or runners (their loops are the operator's, not kopf timers or
    # daemons): with the operator down, deleting them does not hang.
    front = kubectl.json("get", "modelgateway", "front", namespace=namespace)["metadata"]
    assert not front.get("finalizers")
    operator.stop()
    kubectl("delete", "modelgateway", "front", "thief", "--timeout=30s", namespace=namespace)
    kubectl("delete", "modelrunner", "small", "--timeout=30s", namespace=namespace)
    assert not kubectl.exists("modelgateway", "front", namespace=namespace)


def test_autoscaling_keeps_min_replicas_while_no_gateway_answers(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str], operator_factory: Callable[..., Any]
) -> None:
    operator_factory()
    runner = gpu_runner("elastic", replicas=1,
                        autoscaling={"minReplicas": 2, "maxReplicas": 3, "scaleDownDelaySeconds": 1})  # fmt: skip
    kubectl.apply([runner, gateway("front")], namespace=namespace)

    def scaled() -> dict[str, Any] | None:
        found = kubectl.json("get", "modelrunner", "elastic", namespace=namespace)
        auto = (found.get("status") or {}).get("autoscaling") or {}
        return auto if found["spec"].get("replicas") == 2 and auto.get("desiredReplicas") else None

    auto = wait_for(scaled, timeout=60, message="the autoscaler raised replicas to minReplicas")
    assert auto["reason"] == "DemandUnknown" and auto["desiredReplicas"] == 2
    wait_for(lambda: kubectl.json("get", "statefulset", "elastic", namespace=namespace)["spec"][
        "replicas"] == 2, timeout=30, message="the StatefulSet follows")  # fmt: skip
    # Bad bounds are refused by the API server (CEL).
    bad = gpu_runner("bad", autoscaling={"minReplicas": 3, "maxReplicas": 2})
    refused = kubectl("apply", "-f", "-", input=bad, namespace=namespace, check=False)
    assert refused.returncode != 0 and "maxReplicas must be at least minReplicas" in refused.stderr
