"""Cold start of a runner pod on the local cluster's real node, from the pod's creation to the first
token: with the model pulled onto the pod's volume claim, and with it already there (pod deleted,
the StatefulSet recreates it on the same claim). Needs `make up` first (cluster with its real node,
images, the chart's operator, the default model in the cluster's registry); runs in namespaces of
its own and removes them. Results in BENCHMARKS.md (section cold-start)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.report import machine, median, write_section

ROOT = Path(__file__).resolve().parent.parent
KUBECTL = [
    str(ROOT / ".cluster" / "bin" / "kubectl"),
    "--kubeconfig",
    str(ROOT / ".cluster" / "kubeconfig"),
]
ROUNDS = 3
GENERATE = {"model": "gemma3", "prompt": "Hello", "stream": False, "options": {"num_predict": 1}}


def kubectl(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([*KUBECTL, *args], input=stdin, capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    return proc.stdout


def registry() -> str:
    env = subprocess.run([str(ROOT / "hack" / "node" / "node.sh"), "env"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return dict(line.split("=", 1) for line in env.split())["MODELRUNNER_REGISTRY"]


def first_token(url: str, started: float, timeout: float = 900) -> float:
    """Seconds from ``started`` until the Service answers a one-token generation."""
    deadline = started + timeout
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                if client.post(f"{url}/api/generate", json=GENERATE).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"no answer from {url} after {timeout}s")


def manifests(source: str) -> str:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "modelrunner.io/v1alpha1", "kind": "ModelRunner",
         "metadata": {"name": "model-runner"},
         "spec": {"replicas": 1, "storage": {"size": "5Gi"}}},
        {"apiVersion": "modelrunner.io/v1alpha1", "kind": "Model", "metadata": {"name": "gemma3"},
         "spec": {"source": source, "insecure": True}},
    ]  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def service_url(namespace: str) -> str:
    for _ in range(100):
        ip = kubectl("get", "service", "model-runner", "-n", namespace, "-o",
                     "jsonpath={.spec.clusterIP}", stdin=None) if _service_exists(namespace) else ""  # fmt: skip
        if ip:
            return f"http://{ip}"
        time.sleep(0.2)
    raise TimeoutError("the operator made no Service")


def _service_exists(namespace: str) -> bool:
    proc = subprocess.run([*KUBECTL, "get", "service", "model-runner", "-n", namespace],
                          capture_output=True, check=False)  # fmt: skip
    return proc.returncode == 0


def new_pod(namespace: str, old_uid: str) -> float:
    """The moment the StatefulSet's replacement pod exists (the old one is gone by then)."""
    while True:
        proc = subprocess.run([*KUBECTL, "get", "pod", "model-runner-0", "-n", namespace, "-o",
                               "jsonpath={.metadata.uid}"], capture_output=True, text=True,
                              check=False)  # fmt: skip
        if proc.returncode == 0 and proc.stdout and proc.stdout != old_uid:
            return time.monotonic()
        time.sleep(0.05)


def one_round(source: str) -> tuple[float, float]:
    namespace = f"bench-cold-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    try:
        started = time.monotonic()
        kubectl("apply", "-n", namespace, "-f", "-", stdin=manifests(source))
        url = service_url(namespace)
        with_pull = first_token(url, started)
        old = kubectl(
            "get", "pod", "model-runner-0", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
        )
        kubectl("delete", "pod", "model-runner-0", "-n", namespace, "--wait=true")
        started = new_pod(namespace, old)
        on_claim = first_token(url, started)
        return with_pull, on_claim
    finally:
        subprocess.run([*KUBECTL, "delete", "-n", namespace, "model,modelrunner", "--all",
                        "--timeout=120s"], capture_output=True, check=False)  # fmt: skip
        subprocess.run([*KUBECTL, "delete", "namespace", namespace, "--wait=false"],
                       capture_output=True, check=False)  # fmt: skip


def main() -> int:
    try:
        kubectl("get", "deployment", "model-runner-operator", "-n", "model-runner-system")
    except (subprocess.CalledProcessError, FileNotFoundError):
        print("bench_cold_start needs `make up` (the operator in model-runner-system): skipped")
        return 0
    source = f"{registry()}/library/gemma3:270m"
    header = machine()
    results = [one_round(source) for _ in range(ROUNDS)]
    pulls, claims = [r[0] for r in results], [r[1] for r in results]

    def row(name: str, values: list[float]) -> str:
        return f"| {name} | {median(values):.1f} s | {min(values):.1f} / {max(values):.1f} s |"

    body = "\n".join([
        "## Cold start of a runner pod (issue 12)",
        "",
        f"`bench/bench_cold_start.py`, {header}; {ROUNDS} rounds, Gemma 3 270M Q4_K_M (253 MB) from "
        "the cluster's registry, the runner image already on the node (pulling it from the local "
        "registry adds about 3 s: 130 MB compressed), one CPU runner pod on the real node, the time "
        "until the Service answers a one-token `/api/generate`.",
        "",
        "| from the pod's creation to the first token | median | min / max |",
        "|---|---|---|",
        row("ModelRunner and Model applied: pod, volume claim, model pulled onto it, loaded", pulls),
        row("pod replaced by the StatefulSet on the same claim (model already there)", claims),
    ])  # fmt: skip
    write_section("cold-start", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
