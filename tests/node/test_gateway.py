"""examples/07-gateway on the real node, with the chart's operator and the images built here: a
ModelGateway in front of two ModelRunners; a client pod reaches every model through the gateway's
Service in each API; the runner with minReplicas 0 scales from zero on the first request (which
succeeds) and back to zero when idle.

MODELRUNNER_GATEWAY_COLD_ROUNDS (default 0) adds timed scale-from-zero rounds from the host, and
MODELRUNNER_GATEWAY_BENCH_OUT names a JSON file for the timings (bench/bench_scale_from_zero.py)."""

from __future__ import annotations

import copy
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import EXAMPLES, load_documents
from tests.support.cluster import Kubectl, wait_for
from tests.support.node import Images

pytestmark = pytest.mark.cluster
EXAMPLE = EXAMPLES / "07-gateway"
DELAY = 10  # the on-demand runner's scaleDownDelaySeconds here (600 in the example)
ROUNDS = int(os.environ.get("MODELRUNNER_GATEWAY_COLD_ROUNDS", "0"))
BENCH_OUT = os.environ.get("MODELRUNNER_GATEWAY_BENCH_OUT")

# Runs in the clients image (python3, stdlib only): one call per API and port, each printed as a
# JSON line with its status, the instance that served it and its duration.
CLIENT = r"""
import json, time, urllib.request
def call(name, url, body=None):
    started = time.monotonic()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=400) as reply:
            status, text = reply.status, reply.read().decode()
            instance = reply.headers.get("X-Model-Runner-Instance")
    except urllib.error.HTTPError as exc:
        status, text, instance = exc.code, exc.read().decode(), None
    print(json.dumps({"name": name, "status": status, "instance": instance,
                      "seconds": round(time.monotonic() - started, 2), "body": text[:4000]}), flush=True)
chat = [{"role": "user", "content": "Say hi"}]
call("cold-openai", "http://model-runner/engines/v1/chat/completions",
     {"model": "smollm2-360m", "messages": chat, "max_tokens": 4})
call("ollama-chat", "http://model-runner:11434/api/chat",
     {"model": "smollm2", "messages": chat, "stream": False, "options": {"num_predict": 4}})
call("dmr-chat", "http://model-runner:12434/engines/llama.cpp/v1/chat/completions",
     {"model": "smollm2", "messages": chat, "max_tokens": 4})
call("warm-ollama-generate", "http://model-runner:11434/api/generate",
     {"model": "smollm2-360m", "prompt": "hi", "stream": False, "options": {"num_predict": 4}})
call("ollama-tags", "http://model-runner:11434/api/tags")
call("dmr-models", "http://model-runner:12434/models")
"""


def example(source: str) -> list[dict[str, Any]]:
    """The example's objects; models from the cluster's registry, a short scale-down delay, one
    request per replica and small requests so that two on-demand pods fit the node (the only
    substitutions)."""
    docs = [d for name in ("runners.yaml", "models.yaml", "gateway.yaml")
            for d in load_documents(EXAMPLE / name)]  # fmt: skip
    docs = copy.deepcopy(docs)
    for doc in docs:
        if doc["kind"] == "Model":
            doc["spec"] = {"source": source, "insecure": True}
        if doc["kind"] == "ModelRunner" and doc["spec"].get("autoscaling"):
            doc["spec"]["autoscaling"].update(
                scaleDownDelaySeconds=DELAY, targetConcurrentRequests=1, maxReplicas=2
            )
            doc["spec"]["resources"] = {"requests": {"cpu": "100m", "memory": "256Mi"}}
    return docs


def client_job(image: str) -> dict[str, Any]:
    container = {
        "name": "client", "image": image, "command": ["python3", "-c", CLIENT],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }  # fmt: skip
    pod = {"restartPolicy": "Never", "containers": [container],
           "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                               "seccompProfile": {"type": "RuntimeDefault"}}}  # fmt: skip
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "gateway-client"},
            "spec": {"backoffLimit": 0, "template": {"spec": pod}}}  # fmt: skip


def on_demand_pods(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    return list(kubectl.json("get", "pods", "-l", "app.kubernetes.io/instance=on-demand",
                             namespace=namespace)["items"])  # fmt: skip


def at_zero(kubectl: Kubectl, namespace: str) -> bool:
    runner = kubectl.json("get", "modelrunner", "on-demand", namespace=namespace)
    return runner["spec"].get("replicas") == 0 and not on_demand_pods(kubectl, namespace)


def autoscaling(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    runner = kubectl.json("get", "modelrunner", "on-demand", namespace=namespace)
    return dict((runner.get("status") or {}).get("autoscaling") or {})


def job_logs(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]] | None:
    status = kubectl.json("get", "job", "gateway-client", namespace=namespace).get("status") or {}
    if not (status.get("succeeded") or status.get("failed")):
        return None
    out = kubectl("logs", "job/gateway-client", namespace=namespace).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def cold_round(kubectl: Kubectl, namespace: str, url: str) -> float:
    wait_for(lambda: at_zero(kubectl, namespace), timeout=DELAY + 120,
             message="on-demand scaled to zero")  # fmt: skip
    started = time.monotonic()
    reply = httpx.post(f"{url}/api/generate", timeout=400, json={
        "model": "smollm2-360m", "prompt": "hi", "stream": False, "options": {"num_predict": 4}})  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Model-Runner-Instance"] == "on-demand-0"
    return time.monotonic() - started


# The first test to use local_images pays for `make images` (minutes on a busy machine).
@pytest.mark.timeout(1200 + 120 * ROUNDS)
def test_gateway_fronts_two_runners_and_scales_one_from_zero(
    kubectl: Kubectl, namespace: str, operator_release: str, cluster_model: str,
    local_images: Images,
) -> None:  # fmt: skip
    kubectl.apply(example(cluster_model), namespace=namespace)
    kubectl("wait", "--for=condition=Ready", "modelrunner/always-on", "model/smollm2",
            "modelgateway/model-runner", "--timeout=600s", namespace=namespace, timeout=610)  # fmt: skip
    gateway = kubectl.json("get", "deployment", "model-runner-gateway", namespace=namespace)
    assert gateway["spec"]["template"]["spec"]["containers"][0]["image"] == local_images.runner
    # Idle from the start: the autoscaler takes on-demand to zero after the delay.
    wait_for(lambda: at_zero(kubectl, namespace), timeout=DELAY + 300,
             message="on-demand scaled to zero while idle")  # fmt: skip
    auto = autoscaling(kubectl, namespace)
    assert auto["desiredReplicas"] == 0 and auto["lastScaleTime"], auto

    kubectl.apply(client_job(local_images.clients), namespace=namespace)
    calls = wait_for(lambda: job_logs(kubectl, namespace), timeout=600,
                     message="the client Job finished")  # fmt: skip
    by_name = {c["name"]: c for c in calls}
    assert len(by_name) == 6, calls
    assert all(c["status"] == 200 for c in calls), calls
    assert by_name["cold-openai"]["instance"] == "on-demand-0"
    assert '"chat.completion"' in by_name["cold-openai"]["body"].replace(" ", "")
    assert by_name["ollama-chat"]["instance"] == "always-on-0"
    assert by_name["dmr-chat"]["instance"] == "always-on-0"
    assert by_name["warm-ollama-generate"]["instance"] == "on-demand-0"
    assert "smollm2-360m" in by_name["ollama-tags"]["body"]
    assert "smollm2:latest" in by_name["ollama-tags"]["body"]
    cold = [float(by_name["cold-openai"]["seconds"])]

    # Idle again: back to zero after the delay, and the next first request wakes it again.
    url = f"http://{kubectl.json('get', 'service', 'model-runner', namespace=namespace)['spec']['clusterIP']}"
    cold += [cold_round(kubectl, namespace, url) for _ in range(ROUNDS)]

    # A burst of three held requests at zero, one request per replica: straight to maxReplicas.
    wait_for(lambda: at_zero(kubectl, namespace), timeout=DELAY + 120,
             message="on-demand at zero before the burst")  # fmt: skip
    body = {"model": "smollm2-360m", "prompt": "hi", "stream": False, "options": {"num_predict": 4}}
    with ThreadPoolExecutor(3) as pool:
        replies = [pool.submit(httpx.post, f"{url}/api/generate", json=body, timeout=400)
                   for _ in range(3)]  # fmt: skip
        wait_for(lambda: autoscaling(kubectl, namespace).get("desiredReplicas") == 2, timeout=60,
                 message="the autoscaler asked for maxReplicas under the burst")  # fmt: skip
        statuses = [r.result().status_code for r in replies]
    assert statuses == [200, 200, 200]
    sts = kubectl.json("get", "statefulset", "on-demand", namespace=namespace)
    assert sts["spec"]["replicas"] == 2
    wait_for(lambda: at_zero(kubectl, namespace), timeout=DELAY + 180,
             message="on-demand back to zero when idle")  # fmt: skip
    operator_logs = kubectl("logs", f"deployment/{operator_release}", namespace=namespace).stdout
    assert "Forbidden" not in operator_logs, operator_logs[-3000:]
    if BENCH_OUT:
        warm = float(by_name["warm-ollama-generate"]["seconds"])
        Path(BENCH_OUT).write_text(json.dumps({"cold": cold, "warm": warm, "delay": DELAY}))
