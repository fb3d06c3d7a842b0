"""The local test cluster does what the operator's tests rely on.

GPU scheduling on kwok fake nodes, CRD features (CEL validation, status
subresource, finalizers), helm, and hack/cluster.sh's own lifecycle.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import (
    CLUSTER_DIR,
    CLUSTER_SCRIPT,
    GPU_RESOURCE,
    GPU_TAINT_TOLERATION,
    KubeCluster,
    Kubectl,
    KubectlError,
    wait_for,
)

pytestmark = pytest.mark.cluster

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # never pulled: kwok runs no containers


# --------------------------------------------------------------------------- helpers


def gpu_deployment(name: str, gpus: int, tolerate: bool) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "runner",
                "image": PAUSE_IMAGE,
                "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
            }
        ]
    }
    if tolerate:
        pod_spec["tolerations"] = [GPU_TAINT_TOLERATION]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }


def only_pod(kubectl: Kubectl, namespace: str, app: str) -> dict[str, Any] | None:
    pods: list[dict[str, Any]] = kubectl.json(
        "get", "pods", "-l", f"app={app}", namespace=namespace
    )["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return live[0] if len(live) == 1 else None


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of that type; an empty dict when there is none."""
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return {}


def unschedulable_pod(kubectl: Kubectl, namespace: str, app: str) -> dict[str, Any] | None:
    pod = only_pod(kubectl, namespace, app)
    if pod is None:
        return None
    cond = condition(pod, "PodScheduled")
    if cond and cond["status"] == "False" and cond.get("reason") == "Unschedulable":
        return pod
    return None


def failed_scheduling_events(kubectl: Kubectl, namespace: str, pod: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = kubectl.json(
        "get",
        "events",
        "--field-selector",
        f"involvedObject.kind=Pod,involvedObject.name={pod},reason=FailedScheduling",
        namespace=namespace,
    )["items"]
    return events


def assert_stays_pending(kubectl: Kubectl, namespace: str, app: str) -> dict[str, Any]:
    """Waits for the scheduler to give up on the pod; returns (pod, events)."""
    pod = wait_for(
        lambda: unschedulable_pod(kubectl, namespace, app),
        timeout=60,
        message=f"pod of {app} to be marked Unschedulable",
    )
    name = pod["metadata"]["name"]
    events = wait_for(
        lambda: failed_scheduling_events(kubectl, namespace, name),
        timeout=60,
        message=f"a FailedScheduling event for pod {name}",
    )
    # Still unbound and Pending after the scheduler reported the failure.
    pod = kubectl.json("get", "pod", name, namespace=namespace)
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")
    return {"pod": pod, "events": events}


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def cluster_script(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def pid_files(cluster_dir: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in sorted((cluster_dir / "run").glob("*.pid"))}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            found.append((int(entry.name), cmdline))
    return found


# --------------------------------------------------------------------------- GPU scheduling


def test_gpu_deployment_runs_on_a_gpu_node(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str]
) -> None:
    kubectl.apply(gpu_deployment("gpu-ok", gpus=1, tolerate=True), namespace=namespace)

    def running_pod() -> dict[str, Any] | None:
        pod = only_pod(kubectl, namespace, "gpu-ok")
        return pod if pod and pod["status"].get("phase") == "Running" else None

    pod = wait_for(running_pod, timeout=60, message="the GPU pod to be Running")
    assert pod["spec"]["nodeName"] in gpu_nodes
    assert condition(pod, "Ready")["status"] == "True"
    wait_for(
        lambda: (
            kubectl.json("get", "deployment", "gpu-ok", namespace=namespace)["status"].get(
                "availableReplicas"
            )
            == 1
        ),
        timeout=60,
        message="deployment gpu-ok to have 1 available replica",
    )


def test_gpu_pod_without_toleration_stays_pending(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str]
) -> None:
    kubectl.apply(gpu_deployment("no-toleration", gpus=1, tolerate=False), namespace=namespace)
    result = assert_stays_pending(kubectl, namespace, "no-toleration")
    message = condition(result["pod"], "PodScheduled")["message"]
    assert "taint" in message, message
    assert all(e["reason"] == "FailedScheduling" for e in result["events"])


def test_pod_asking_for_nine_gpus_stays_pending(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str]
) -> None:
    kubectl.apply(gpu_deployment("too-many", gpus=9, tolerate=True), namespace=namespace)
    result = assert_stays_pending(kubectl, namespace, "too-many")
    message = condition(result["pod"], "PodScheduled")["message"]
    event_messages = " | ".join(e.get("message", "") for e in result["events"])
    assert f"Insufficient {GPU_RESOURCE}" in message, message
    assert f"Insufficient {GPU_RESOURCE}" in event_messages, event_messages


# --------------------------------------------------------------------------- CRDs

CEL_MESSAGE = "minReplicas must not exceed maxReplicas"
FINALIZER = "test.modelrunner.io/hold"


@pytest.fixture(scope="module")
def widget_crd(kube_cluster: KubeCluster) -> Iterator[str]:
    """A throwaway namespaced CRD in a group of its own; yields its resource name."""
    kubectl = kube_cluster.kubectl
    group = f"g{uuid.uuid4().hex[:8]}.test.modelrunner.io"
    name = f"widgets.{group}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["minReplicas", "maxReplicas"],
                                    "properties": {
                                        "minReplicas": {"type": "integer", "minimum": 0},
                                        "maxReplicas": {"type": "integer", "minimum": 0},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.minReplicas <= self.maxReplicas",
                                            "message": CEL_MESSAGE,
                                        }
                                    ],
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    kubectl.create(crd)
    try:
        kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s", timeout=90)
        yield name
    finally:
        kubectl("delete", "crd", name, "--wait=false", "--ignore-not-found", check=False)


def widget(name: str, min_replicas: int, max_replicas: int, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "placeholder",  # set by with_group()
        "kind": "Widget",
        "metadata": {"name": name, **metadata},
        "spec": {"minReplicas": min_replicas, "maxReplicas": max_replicas},
    }


def with_group(obj: dict[str, Any], crd: str) -> dict[str, Any]:
    return {**obj, "apiVersion": crd.split(".", 1)[1] + "/v1"}


def test_cel_rule_rejects_bad_object_with_its_message(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    bad = with_group(widget("bad", min_replicas=3, max_replicas=1), widget_crd)
    proc = kubectl.create(bad, namespace=namespace, check=False)
    assert proc.returncode != 0
    assert CEL_MESSAGE in proc.stderr, proc.stderr
    assert not kubectl.exists(widget_crd, "bad", namespace=namespace)

    good = with_group(widget("good", min_replicas=1, max_replicas=3), widget_crd)
    kubectl.create(good, namespace=namespace)
    # The rule also guards updates.
    with pytest.raises(KubectlError, match=CEL_MESSAGE):
        kubectl(
            "patch", widget_crd, "good", "--type=merge",
            "-p", json.dumps({"spec": {"minReplicas": 5}}),
            namespace=namespace,
        )  # fmt: skip


def test_status_subresource_separates_status_from_spec(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    obj = with_group(widget("w", min_replicas=1, max_replicas=2), widget_crd)
    obj["status"] = {"phase": "FromCreate"}
    kubectl.create(obj, namespace=namespace)

    def get() -> dict[str, Any]:
        obj: dict[str, Any] = kubectl.json("get", widget_crd, "w", namespace=namespace)
        return obj

    created = get()
    assert "status" not in created or "phase" not in created["status"]  # dropped on create
    generation = created["metadata"]["generation"]

    # A main-resource update ignores status (and still applies spec).
    kubectl(
        "patch", widget_crd, "w", "--type=merge",
        "-p", json.dumps({"spec": {"maxReplicas": 4}, "status": {"phase": "FromMain"}}),
        namespace=namespace,
    )  # fmt: skip
    after_main = get()
    assert after_main["spec"]["maxReplicas"] == 4
    assert after_main.get("status", {}).get("phase") is None
    assert after_main["metadata"]["generation"] == generation + 1

    # The /status endpoint updates status and ignores spec; generation stays.
    kubectl(
        "patch", widget_crd, "w", "--subresource=status", "--type=merge",
        "-p", json.dumps({"spec": {"maxReplicas": 9}, "status": {"phase": "Ready"}}),
        namespace=namespace,
    )  # fmt: skip
    after_status = get()
    assert after_status["status"]["phase"] == "Ready"
    assert after_status["spec"]["maxReplicas"] == 4
    assert after_status["metadata"]["generation"] == generation + 1


def test_finalizer_holds_deletion_until_removed(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    obj = with_group(widget("held", 1, 1, finalizers=[FINALIZER]), widget_crd)
    kubectl.create(obj, namespace=namespace)

    kubectl("delete", widget_crd, "held", "--wait=false", namespace=namespace)
    held = wait_for(
        lambda: kubectl.json("get", widget_crd, "held", namespace=namespace)["metadata"].get(
            "deletionTimestamp"
        ),
        timeout=30,
        message="deletionTimestamp on the finalized object",
    )
    assert held
    # Marked for deletion, yet still readable, with the finalizer in place.
    obj_now = kubectl.json("get", widget_crd, "held", namespace=namespace)
    assert obj_now["metadata"]["finalizers"] == [FINALIZER]
    # Writes other than finalizer removal still work while it is held.
    kubectl(
        "patch", widget_crd, "held", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Terminating"}}),
        namespace=namespace,
    )  # fmt: skip
    assert kubectl.exists(widget_crd, "held", namespace=namespace)

    kubectl(
        "patch", widget_crd, "held", "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
        namespace=namespace,
    )  # fmt: skip
    wait_for(
        lambda: not kubectl.exists(widget_crd, "held", namespace=namespace),
        timeout=30,
        message="the object to be gone once its finalizer was removed",
    )


# --------------------------------------------------------------------------- tools


def test_server_reports_a_release_version(kubectl: Kubectl, kube_cluster: KubeCluster) -> None:
    info = kubectl.json("version")
    server = info["serverVersion"]
    assert server["major"] and server["minor"], server
    if not kube_cluster.external:
        assert server["gitVersion"].startswith("v1."), server
        assert server["gitVersion"] == info["clientVersion"]["gitVersion"]


def test_helm_installs_and_uninstalls_a_chart(
    kube_cluster: KubeCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    helm = kube_cluster.helm
    if not helm:
        pytest.skip("helm is not built (hack/cluster.sh build) and not on PATH")
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>=1.28.0-0'\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    env = {
        **os.environ,
        "KUBECONFIG": kube_cluster.kubeconfig,
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
    }

    def helm_run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [helm, *args, "--namespace", namespace],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc

    helm_run("install", "rel", str(chart), "--set", "greeting=hi", "--wait", "--timeout", "60s")
    cm = kubectl.json("get", "configmap", "rel-probe", namespace=namespace)
    assert cm["data"] == {"greeting": "hi"}
    assert "rel" in helm_run("list", "--short").stdout.split()
    helm_run("uninstall", "rel", "--wait")
    assert not kubectl.exists("configmap", "rel-probe", namespace=namespace)


# --------------------------------------------------------------------------- hack/cluster.sh


def test_up_on_a_running_cluster_is_a_fast_no_op(kube_cluster: KubeCluster) -> None:
    if kube_cluster.external:
        pytest.skip("KUBECONFIG names an external cluster, not hack/cluster.sh's")
    before = pid_files(CLUSTER_DIR)
    started = time.monotonic()
    proc = cluster_script("up", timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "already up" in proc.stderr
    assert elapsed < 15, f"idempotent up took {elapsed:.1f}s"
    assert pid_files(CLUSTER_DIR) == before
    assert all(alive(pid) for pid in before.values())
    kube_cluster.kubectl("get", "--raw", "/readyz")


def test_second_cluster_lifecycle_leaves_nothing_behind(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    """A second cluster (own directory and ports): up, up again, status, down."""
    if cluster_script("path", "kube-apiserver").returncode != 0:
        pytest.skip("cluster binaries are not built (hack/cluster.sh build)")
    cluster_dir = tmp_path / "cluster2"
    etcd, etcd_peer, apiserver, kcm, scheduler = free_ports(5)
    env = {
        **os.environ,
        "MODELRUNNER_CLUSTER_DIR": str(cluster_dir),
        # One real node per machine (its namespace and addresses are fixed): the session's.
        "MODELRUNNER_REAL_NODE": "0",
        "CLUSTER_ETCD_PORT": str(etcd),
        "CLUSTER_ETCD_PEER_PORT": str(etcd_peer),
        "CLUSTER_APISERVER_PORT": str(apiserver),
        "CLUSTER_KCM_PORT": str(kcm),
        "CLUSTER_SCHEDULER_PORT": str(scheduler),
    }
    pids: dict[str, int] = {}
    try:
        started = time.monotonic()
        up = cluster_script("up", env=env, timeout=300)
        warm_start = time.monotonic() - started
        assert up.returncode == 0, up.stderr
        assert warm_start < 60, f"warm start took {warm_start:.1f}s"
        pids = pid_files(cluster_dir)
        assert set(pids) == {
            "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
        }  # fmt: skip
        assert all(alive(pid) for pid in pids.values())

        second = Kubectl(str(cluster_dir / "kubeconfig"))
        nodes = second.json("get", "nodes")["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == [
            "cpu-node-0", "gpu-node-0", "gpu-node-1",
        ]  # fmt: skip
        # Only loopback listeners: the server URL is 127.0.0.1.
        assert f"https://127.0.0.1:{apiserver}" in (cluster_dir / "kubeconfig").read_text()

        again = cluster_script("up", env=env, timeout=120)
        assert again.returncode == 0, again.stderr
        assert "already up" in again.stderr
        assert pid_files(cluster_dir) == pids

        status = cluster_script("status", env=env, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "gpu-node-0" in status.stdout
    finally:
        down = cluster_script("down", env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not any(alive(pid) for pid in pids.values())
    assert processes_mentioning(str(cluster_dir)) == []
    assert not cluster_dir.exists()
    # The session's own cluster is untouched.
    kube_cluster.kubectl("get", "--raw", "/readyz")
