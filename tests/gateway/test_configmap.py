"""The routing table from a ConfigMap, watched through the real local API server with a service
account that may only get/list/watch that one ConfigMap (the gateway's in-cluster config: the
token and ca.crt files and KUBERNETES_SERVICE_HOST/PORT)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.gateway.procs import Proc, start_gateway, wait_until
from tests.support.cluster import KubeCluster, Kubectl

pytestmark = pytest.mark.cluster
CM = "gateway-routes"


def configmap(table: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CM},
            "data": {"routes.json": json.dumps(table)}}  # fmt: skip


def service_account(
    kubectl: Kubectl, namespace: str, where: Path, server: str, ca: bytes
) -> dict[str, str]:
    """A token whose Role reaches the one ConfigMap, written as a pod's mount would be; the
    environment a pod gets for the API server."""
    kubectl.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "gateway"}},
                   namespace=namespace)  # fmt: skip
    kubectl.create(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "gateway"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [CM],
                    "verbs": ["get", "list", "watch"]}]},
        namespace=namespace,
    )  # fmt: skip
    kubectl.create(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "gateway"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gateway"},
         "subjects": [{"kind": "ServiceAccount", "name": "gateway", "namespace": namespace}]},
        namespace=namespace,
    )  # fmt: skip
    token = kubectl("create", "token", "gateway", "--duration=1h", namespace=namespace).stdout
    where.mkdir()
    (where / "token").write_text(token.strip())
    (where / "ca.crt").write_bytes(ca)
    address = urlsplit(server)
    return {
        "KUBERNETES_SERVICE_HOST": address.hostname or "",
        "KUBERNETES_SERVICE_PORT": str(address.port or 443),
        "MODELRUNNER_GATEWAY_SERVICE_ACCOUNT_DIR": str(where),
    }


def test_the_routing_table_follows_its_configmap(
    tmp_path: Path, kube_cluster: KubeCluster, kubectl: Kubectl, namespace: str, pair: list[Proc]
) -> None:
    config = yaml.safe_load(Path(kube_cluster.kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    if "certificate-authority-data" in cluster:
        ca = base64.b64decode(cluster["certificate-authority-data"])
    else:
        ca = Path(cluster["certificate-authority"]).read_bytes()
    env = service_account(kubectl, namespace, tmp_path / "sa", cluster["server"], ca)
    a, b = pair
    table = {"version": 1,
             "runners": [{"name": "one", "namespace": namespace, "models": ["alpha", "beta"]}],
             "instances": [{"name": "one-0", "runner": "one", "url": a.url, "models": ["alpha"]}]}  # fmt: skip
    kubectl.create(configmap(table), namespace=namespace)
    gateway = start_gateway(tmp_path, "--routes-configmap", f"{namespace}/{CM}", "--hold-timeout", "30",
                            env=env)  # fmt: skip
    try:
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            body = {"model": "alpha", "prompt": "x", "stream": False, "options": {"num_predict": 2}}
            wait_until(lambda: http.post("/api/generate", json=body).status_code == 200, timeout=30)
            assert (
                http.post("/api/generate", json=body).headers["x-model-runner-instance"] == "one-0"
            )
            assert sorted(m["name"] for m in http.get("/api/tags").json()["models"]) == [
                "alpha:latest",
                "shared:latest",
            ]
            # The operator adds an instance holding beta: the watch brings it in.
            table["instances"].append(
                {"name": "one-1", "runner": "one", "url": b.url, "models": ["beta"]}
            )
            kubectl.apply(configmap(table), namespace=namespace)
            beta = body | {"model": "beta"}
            response = http.post("/api/generate", json=beta)  # held until the watch delivers
            assert (
                response.status_code == 200
                and response.headers["x-model-runner-instance"] == "one-1"
            )
            demand = http.get("/gateway/v1/demand").json()
            assert set(demand["instances"]) == {"one-0", "one-1"} and "one" in demand["runners"]
    finally:
        gateway.stop()
