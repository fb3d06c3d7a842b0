"""Pure builders of the Kubernetes objects a ModelGateway owns (plain dicts, no I/O).

The gateway is the runner image's ``modelrunner gateway`` mode: a Deployment behind a Service
on the runner's ports, reading its routing table from one ConfigMap through the API with a
service account that may read only that ConfigMap.
"""

from __future__ import annotations

import hashlib
from typing import Any

from modeloperator.podspec import finish_container, pod_security, with_default_requests
from modeloperator.resources import (
    API_KEYS_DIR,
    DMR_PORT,
    LABEL_APP,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    MANAGER,
    OLLAMA_PORT,
    api_keys_volume,
)

GATEWAY_APP = "model-gateway"
ROUTES_KEY = "routes.json"
TOKENS_DIR = "/var/run/modelrunner/runners"
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "128Mi"}
DEFAULT_HOLD_SECONDS = 120
# spec.policy -> the gateway's --policy.
POLICIES = {"prefixAffinity": "prefix", "leastRequests": "least", "roundRobin": "round-robin"}


def gateway_labels(name: str) -> dict[str, str]:
    """Labels of every object a gateway owns. The pods carry no managed-by label: the
    operator's runner-pod watch (handlers.py) filters on it and must not see gateway pods."""
    return {LABEL_APP: GATEWAY_APP, LABEL_INSTANCE: name, LABEL_MANAGED: MANAGER}


def gateway_selector(name: str) -> dict[str, str]:
    return {LABEL_APP: GATEWAY_APP, LABEL_INSTANCE: name}


def workload_name(name: str) -> str:
    """Deployment, ServiceAccount, Role and RoleBinding."""
    return f"{name}-gateway"


def routes_name(name: str) -> str:
    return f"{name}-gateway-routes"


def service_name(name: str, spec: dict[str, Any]) -> str:
    return str(spec.get("serviceName") or name)


def token_file(runner: str) -> str:
    """Where the gateway finds a fronted runner's management token (the routing table's
    ``tokenFile``)."""
    return f"{TOKENS_DIR}/{runner}/token"


def _volume_name(runner: str) -> str:
    # Volume names are DNS labels of at most 63 characters; runner names may be longer.
    return "runner-" + hashlib.sha256(runner.encode()).hexdigest()[:12]


def service_account(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": workload_name(name), "namespace": namespace,
                     "labels": gateway_labels(name)},
    }  # fmt: skip


def role(name: str, namespace: str) -> dict[str, Any]:
    """Read one ConfigMap, by name: list and watch need a ``metadata.name`` field selector."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": workload_name(name), "namespace": namespace,
                     "labels": gateway_labels(name)},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "resourceNames": [routes_name(name)], "verbs": ["get", "list", "watch"]}],
    }  # fmt: skip


def role_binding(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": workload_name(name), "namespace": namespace,
                     "labels": gateway_labels(name)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": workload_name(name)},
        "subjects": [{"kind": "ServiceAccount", "name": workload_name(name),
                      "namespace": namespace}],
    }  # fmt: skip


def routes_config_map(name: str, namespace: str, content: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": routes_name(name), "namespace": namespace,
                     "labels": gateway_labels(name)},
        "data": {ROUTES_KEY: content},
    }  # fmt: skip


def gateway_service(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    """http://<serviceName>/, :11434 and :12434, all onto the gateway's one port."""
    ports = [
        {"name": port_name, "port": port, "targetPort": "http", "protocol": "TCP"}
        for port_name, port in (("http", 80), ("ollama", OLLAMA_PORT), ("dmr", DMR_PORT))
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(name, spec), "namespace": namespace,
                     "labels": gateway_labels(name)},
        "spec": {"type": "ClusterIP", "selector": gateway_selector(name), "ports": ports},
    }  # fmt: skip


def deployment(
    name: str, namespace: str, spec: dict[str, Any], default_image: str,
    token_secrets: dict[str, tuple[str, str]],
) -> dict[str, Any]:  # fmt: skip
    """The gateway pods. ``token_secrets`` maps each fronted runner to the Secret and key of its
    management token, mounted at :func:`token_file` (optional: a runner's Secret that does not
    exist yet must not keep the gateway from starting)."""
    args = [
        "gateway",
        "--listen", f"0.0.0.0:{OLLAMA_PORT}",
        "--routes-configmap", f"{namespace}/{routes_name(name)}",
        "--hold-timeout", str(int(spec.get("holdTimeoutSeconds") or DEFAULT_HOLD_SECONDS)),
        "--policy", POLICIES[str(spec.get("policy") or "prefixAffinity")],
    ]  # fmt: skip
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    for runner, (secret, key) in sorted(token_secrets.items()):
        volume = _volume_name(runner)
        volumes.append({"name": volume, "secret": {"secretName": secret, "optional": True,
                                                   "items": [{"key": key, "path": "token"}]}})  # fmt: skip
        mounts.append({"name": volume, "mountPath": f"{TOKENS_DIR}/{runner}", "readOnly": True})
    keys = api_keys_volume(spec)
    if keys is not None:
        args += ["--api-keys-file", f"{API_KEYS_DIR}/keys"]
        volumes.append(keys[0])
        mounts.append(keys[1])
    # "/" is the gateway's own answer (no backend, no key): up means serving.
    probe = {"httpGet": {"path": "/", "port": "http"}, "timeoutSeconds": 5}
    container: dict[str, Any] = {
        "name": "gateway",
        "image": spec.get("image") or default_image,
        "args": args,
        "ports": [{"name": "http", "containerPort": OLLAMA_PORT, "protocol": "TCP"}],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": with_default_requests(spec.get("resources") or {}, DEFAULT_REQUESTS),
        "volumeMounts": mounts,
        "readinessProbe": {**probe, "periodSeconds": 2, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": workload_name(name),
        # The gateway reads its routing table through the API: it needs its token (and the
        # Role lets it read that one ConfigMap, nothing else).
        "automountServiceAccountToken": True,
        "containers": [finish_container(container, spec)],
        "volumes": volumes,
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": 30,
    }
    for key in ("nodeSelector", "tolerations"):
        if spec.get(key):
            pod_spec[key] = spec[key]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": workload_name(name), "namespace": namespace,
                     "labels": gateway_labels(name)},
        "spec": {
            "replicas": int(spec.get("replicas", 1)),
            "selector": {"matchLabels": gateway_selector(name)},
            "template": {"metadata": {"labels": gateway_selector(name)}, "spec": pod_spec},
        },
    }  # fmt: skip


def endpoint(name: str, namespace: str, spec: dict[str, Any]) -> str:
    return f"http://{service_name(name, spec)}.{namespace}.svc.cluster.local"
