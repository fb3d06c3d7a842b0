"""Runner pods for real: the chart's operator (image built here) runs the quickstart on the real
node, clients in the cluster reach http://model-runner, the store outlives its pod, and neither a
scale-up nor a rolling update loses a request."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.node.conftest import client_jobs, client_scripts, quickstart
from tests.support.cluster import CLUSTER_DIR, Kubectl, wait_for
from tests.support.node import Images, RealNode

pytestmark = pytest.mark.cluster
RUNNER_LABEL = "app.kubernetes.io/instance=model-runner"
REGISTRY_LOG = CLUSTER_DIR / "node" / "logs" / "registry.log"


def runner_pods(kubectl: Kubectl, namespace: str) -> list[dict]:
    return list(kubectl.json("get", "pods", "-l", RUNNER_LABEL, namespace=namespace)["items"])


def job_done(kubectl: Kubectl, namespace: str, name: str) -> bool:
    status = kubectl.json("get", "job", name, namespace=namespace).get("status") or {}
    assert not status.get("failed"), kubectl("logs", f"job/{name}", namespace=namespace,
                                             check=False).stdout  # fmt: skip
    return bool(status.get("succeeded"))


def service_url(kubectl: Kubectl, namespace: str) -> str:
    """The runner's Service from the host: its ClusterIP is routed into the node's namespace."""
    ip = kubectl.json("get", "service", "model-runner", namespace=namespace)["spec"]["clusterIP"]
    return f"http://{ip}"


def blob_fetches(source: str) -> int:
    repository = source.split("/", 1)[1]
    if not REGISTRY_LOG.exists():
        return 0
    return sum(
        f"GET /v2/{repository}/blobs/" in line for line in REGISTRY_LOG.read_text().splitlines()
    )


@pytest.fixture
def ready_quickstart(
    kubectl: Kubectl, namespace: str, operator_release: str, cluster_model: str
) -> Iterator[str]:
    kubectl.apply(quickstart(cluster_model), namespace=namespace)
    kubectl("wait", "--for=condition=Ready", "modelrunner/model-runner", "model/smollm2",
            "--timeout=600s", namespace=namespace, timeout=610)  # fmt: skip
    yield operator_release


def test_quickstart_serves_clients_in_the_cluster(
    kubectl: Kubectl, namespace: str, ready_quickstart: str, local_images: Images,
    real_node: RealNode,
) -> None:  # fmt: skip
    (pod,) = runner_pods(kubectl, namespace)
    assert pod["spec"]["nodeName"] == real_node.name
    assert pod["spec"]["containers"][0]["image"] == local_images.runner
    # The operator reaches the pod by its IP (no instance URL overrides).
    status = kubectl.json("get", "modelrunner", "model-runner", namespace=namespace)["status"]
    assert status["instances"][0]["url"] == f"http://{pod['status']['podIP']}:11434"
    claim = kubectl.json("get", "pvc", "models-model-runner-0", namespace=namespace)
    assert claim["status"]["phase"] == "Bound"

    kubectl.apply([client_scripts(), *client_jobs(local_images)], namespace=namespace)
    names = ["quickstart-client", "ollama-client", "openai-client", "dmr-client"]
    for name in names:
        wait_for(lambda n=name: job_done(kubectl, namespace, n), timeout=300,
                 message=f"Job {name} complete")  # fmt: skip
    logs = {n: kubectl("logs", f"job/{n}", namespace=namespace).stdout for n in names}
    assert '"object":"chat.completion"' in logs["quickstart-client"].replace(" ", "")
    assert "smollm2:latest" in logs["ollama-client"] and "stream:" in logs["ollama-client"]
    assert "chat:" in logs["openai-client"] and "stream:" in logs["openai-client"]
    assert "chat.completion" in logs["dmr-client"]
    operator_logs = kubectl("logs", f"deployment/{ready_quickstart}", namespace=namespace).stdout
    assert "Forbidden" not in operator_logs, operator_logs[-3000:]


def test_the_store_outlives_its_pod(
    kubectl: Kubectl, namespace: str, ready_quickstart: str, cluster_model: str
) -> None:
    (pod,) = runner_pods(kubectl, namespace)
    fetched = blob_fetches(cluster_model)
    kubectl("delete", "pod", pod["metadata"]["name"], "--wait=true", namespace=namespace,
            timeout=120)  # fmt: skip
    wait_for(lambda: [p for p in runner_pods(kubectl, namespace)
                      if p["metadata"]["uid"] != pod["metadata"]["uid"]
                      and any(c["type"] == "Ready" and c["status"] == "True"
                              for c in p["status"].get("conditions", []))],
             timeout=300, message="the StatefulSet's new pod Ready")  # fmt: skip
    reply = httpx.post(f"{service_url(kubectl, namespace)}/api/generate", timeout=120,
                       json={"model": "smollm2", "prompt": "hi", "stream": False,
                             "options": {"num_predict": 4}})  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert blob_fetches(cluster_model) == fetched, "the model was pulled again"


class ClientLoop:
    """Steady requests to the Service from the host until stopped; counts outcomes."""

    def __init__(self, url: str) -> None:
        self.url, self.outcomes, self.errors = url, Counter[str](), list[str]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        body = {
            "model": "smollm2",
            "prompt": "count",
            "stream": False,
            "options": {"num_predict": 4},
        }
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set() and sum(self.outcomes.values()) < 5000:
                try:
                    status = client.post(f"{self.url}/api/generate", json=body).status_code
                    self.outcomes["ok" if status == 200 else f"http {status}"] += 1
                except httpx.HTTPError as exc:
                    self.outcomes["error"] += 1
                    self.errors.append(repr(exc))
                time.sleep(0.1)


def ready_pods(kubectl: Kubectl, namespace: str) -> int:
    return sum(
        any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
        for p in runner_pods(kubectl, namespace)
    )


def test_scale_up_and_rolling_update_lose_no_request(
    kubectl: Kubectl, namespace: str, ready_quickstart: str
) -> None:
    with ClientLoop(service_url(kubectl, namespace)) as loop:
        time.sleep(3)
        kubectl("patch", "modelrunner", "model-runner", "--type=merge", "-p",
                '{"spec": {"replicas": 2}}', namespace=namespace)  # fmt: skip
        wait_for(lambda: ready_pods(kubectl, namespace) == 2, timeout=600,
                 message="two ready runner pods")  # fmt: skip
        time.sleep(5)
        scaled = sum(loop.outcomes.values())
        # A spec edit rolls the pods one by one.
        kubectl("patch", "modelrunner", "model-runner", "--type=merge", "-p",
                '{"spec": {"engine": {"keepAlive": "10m"}}}', namespace=namespace)  # fmt: skip
        wait_for(lambda: all(p["metadata"].get("labels", {}).get("controller-revision-hash")
                             == kubectl.json("get", "statefulset", "model-runner",
                                             namespace=namespace)["status"].get("updateRevision")
                             for p in runner_pods(kubectl, namespace))
                 and ready_pods(kubectl, namespace) == 2,
                 timeout=600, message="the rolling update done")  # fmt: skip
        time.sleep(5)
    assert scaled > 10 and sum(loop.outcomes.values()) > scaled + 10, loop.outcomes
    assert set(loop.outcomes) == {"ok"}, (loop.outcomes, loop.errors[:5])


def gpu_runner(name: str, gpus: int) -> dict:
    return {
        "apiVersion": "modelrunner.io/v1alpha1",
        "kind": "ModelRunner",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "gpu": {"count": gpus},
            "nodeSelector": {"modelrunner.io/node": "real"},
            "storage": {"ephemeral": True},
            "modelSelector": {"matchLabels": {"runner": name}},
        },
    }


@pytest.fixture
def fake_gpu(kubectl: Kubectl, real_node: RealNode) -> Iterator[int]:
    """One fake nvidia.com/gpu on the real node, for this test only (the GPU scheduling tests on
    kwok nodes expect the real node to have none)."""
    patch = '[{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "1"}]'
    kubectl("patch", "node", real_node.name, "--subresource=status", "--type=json", "-p", patch)
    wait_for(lambda: kubectl.json("get", "node", real_node.name)["status"]["allocatable"]
             .get("nvidia.com/gpu") == "1", timeout=60, message="GPU allocatable")  # fmt: skip
    yield 1
    remove = '[{"op": "remove", "path": "/status/capacity/nvidia.com~1gpu"}]'
    kubectl("patch", "node", real_node.name, "--subresource=status", "--type=json", "-p", remove,
            check=False)  # fmt: skip


def test_gpu_runner_starts_on_the_real_node_and_overcommit_stays_pending(
    kubectl: Kubectl, namespace: str, operator_release: str, fake_gpu: int, real_node: RealNode
) -> None:
    kubectl.apply([gpu_runner("gpu-runner", 1), gpu_runner("too-big", 2)], namespace=namespace)
    kubectl("wait", "--for=condition=Ready", "modelrunner/gpu-runner", "--timeout=300s",
            namespace=namespace, timeout=310)  # fmt: skip
    (pod,) = kubectl.json("get", "pods", "-l", "app.kubernetes.io/instance=gpu-runner",
                          namespace=namespace)["items"]  # fmt: skip
    assert pod["spec"]["nodeName"] == real_node.name
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    version = httpx.get(f"http://{pod['status']['podIP']}:11434/api/version", timeout=10)
    assert version.status_code == 200 and version.json()["version"]

    def stalled() -> str | None:
        status = (
            kubectl.json("get", "modelrunner", "too-big", namespace=namespace).get("status") or {}
        )
        cond = {c["type"]: c for c in status.get("conditions", [])}
        stall = cond.get("Stalled") or {}
        return stall.get("message") if stall.get("status") == "True" else None

    message = wait_for(stalled, timeout=120, message="too-big Stalled")
    assert "Insufficient nvidia.com/gpu" in message, message
    (big,) = kubectl.json("get", "pods", "-l", "app.kubernetes.io/instance=too-big",
                          namespace=namespace)["items"]  # fmt: skip
    assert big["status"]["phase"] == "Pending"
