"""Pure builders of the Kubernetes objects a ModelRunner owns (plain dicts, no I/O)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from typing import Any
from urllib.parse import urlsplit

from modeloperator.podspec import finish_container, pod_security, with_default_requests

OLLAMA_PORT = 11434
DMR_PORT = 12434
STORE_PATH = "/models"
LABEL_APP = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
MANAGER = "modeloperator"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# The pod condition the operator sets once the pod holds its models (instances.py, gate.py):
# the pod is Ready, and in the Service's endpoints, only when it is True.
MODELS_READY = "modelrunner.io/models-ready"
# Requests when the ModelRunner names neither a request nor a limit for CPU or memory: a floor
# for scheduling (a small model on CPU; no limit, so a pod may use more), small enough that two
# replicas and the cluster's own pods fit on a 2-CPU node for a rolling update.
DEFAULT_REQUESTS = {"cpu": "500m", "memory": "1Gi"}
# SIGTERM comes after the preStop sleep, once endpoints no longer list the pod; the runner then
# finishes in-flight requests for up to SHUTDOWN_SECONDS (MODEL_RUNNER_SHUTDOWN_TIMEOUT), ends
# the generations still running and exits within a few more seconds; the grace period covers all
# of it before the kubelet's SIGKILL.
PRESTOP_SLEEP_SECONDS = 5
SHUTDOWN_SECONDS = 30
TERMINATION_GRACE_SECONDS = 60
# Credentials reach the runner as files of Secret volumes (no subPath: the kubelet then swaps in
# an edited Secret's content, and the runner re-reads a file whose mtime changed).
MANAGEMENT_KEY = "token"
API_KEYS_KEY = "keys"
MANAGEMENT_DIR = "/etc/modelrunner/management"
API_KEYS_DIR = "/etc/modelrunner/api-keys"


def labels(name: str) -> dict[str, str]:
    return {LABEL_APP: "model-runner", LABEL_INSTANCE: name, LABEL_MANAGED: MANAGER}


def selector(name: str) -> dict[str, str]:
    return {LABEL_APP: "model-runner", LABEL_INSTANCE: name}


def headless_name(name: str) -> str:
    return f"{name}-pods"


def endpoint(name: str, namespace: str) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local"


def management_secret_name(name: str) -> str:
    return f"{name}-management"


def secret_ref(ref: dict[str, Any] | None, default_key: str) -> tuple[str, str] | None:
    """``{name, key?}`` as (name, key); None without a ref."""
    if not ref or not ref.get("name"):
        return None
    return str(ref["name"]), str(ref.get("key") or default_key)


def management_ref(name: str, spec: dict[str, Any]) -> tuple[str, str]:
    """The Secret and key holding a ModelRunner's management token: the one its spec names
    (``auth.managementSecretRef``, or ``external.managementSecretRef``), else the one the
    operator creates for a pod-mode runner."""
    external = spec.get("external") or {}
    given = external.get("managementSecretRef") if external else None
    given = given or (spec.get("auth") or {}).get("managementSecretRef")
    return secret_ref(given, MANAGEMENT_KEY) or (management_secret_name(name), MANAGEMENT_KEY)


def management_secret(name: str, namespace: str, token: str) -> dict[str, Any]:
    """The operator's own management Secret for a pod-mode runner (created once, never
    rotated by the operator: delete it to get a new token)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": management_secret_name(name),
            "namespace": namespace,
            "labels": labels(name),
        },
        "data": {MANAGEMENT_KEY: base64.b64encode(token.encode()).decode()},
    }


def secret_value(secret: dict[str, Any], key: str) -> str | None:
    """A Secret's value under ``key``, decoded and stripped; None when absent or empty."""
    encoded = (secret.get("data") or {}).get(key)
    if not encoded:
        return None
    value = base64.b64decode(encoded).decode("utf-8", "replace").strip()
    return value or None


def _auth_mounts(
    name: str, spec: dict[str, Any]
) -> tuple[list[dict[str, str]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Env, volumes and mounts that hand the runner its management token file and, when the
    spec names one, its API keys file."""
    secret, key = management_ref(name, spec)
    env = [{"name": "MODEL_RUNNER_MANAGEMENT_TOKEN_FILE", "value": f"{MANAGEMENT_DIR}/token"}]
    volumes: list[dict[str, Any]] = [
        {"name": "management", "secret": {"secretName": secret,
                                          "items": [{"key": key, "path": "token"}]}},
    ]  # fmt: skip
    mounts = [{"name": "management", "mountPath": MANAGEMENT_DIR, "readOnly": True}]
    keys = api_keys_volume(spec)
    if keys is not None:
        env.append({"name": "MODEL_RUNNER_API_KEYS_FILE", "value": f"{API_KEYS_DIR}/keys"})
        volumes.append(keys[0])
        mounts.append(keys[1])
    return env, volumes, mounts


def api_keys_volume(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The volume and mount that put the Secret of ``auth.apiKeysSecretRef`` at
    ``API_KEYS_DIR/keys`` (runner and gateway alike); None when the spec names none."""
    keys = secret_ref((spec.get("auth") or {}).get("apiKeysSecretRef"), API_KEYS_KEY)
    if keys is None:
        return None
    volume = {"name": "api-keys", "secret": {"secretName": keys[0],
                                             "items": [{"key": keys[1], "path": "keys"}]}}  # fmt: skip
    return volume, {"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True}


def _ports(target: int | None = None) -> list[dict[str, Any]]:
    return [
        {"name": "http", "port": 80, "targetPort": target or OLLAMA_PORT, "protocol": "TCP"},
        {
            "name": "ollama",
            "port": OLLAMA_PORT,
            "targetPort": target or OLLAMA_PORT,
            "protocol": "TCP",
        },
        {"name": "dmr", "port": DMR_PORT, "targetPort": target or DMR_PORT, "protocol": "TCP"},
    ]


def service(name: str, namespace: str) -> dict[str, Any]:
    """The Service callers use: http://<name>/, :11434 for Ollama clients, :12434 for DMR."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {"type": "ClusterIP", "selector": selector(name), "ports": _ports()},
    }


def headless_service(name: str, namespace: str) -> dict[str, Any]:
    """Per-pod DNS names for the StatefulSet (and a stable address per replica)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": headless_name(name), "namespace": namespace, "labels": labels(name)},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector(name),
            "ports": _ports(),
        },
    }


def _engine_env(engine: dict[str, Any]) -> list[dict[str, str]]:
    env = [
        {"name": "MODEL_RUNNER_MODELS", "value": STORE_PATH},
        {"name": "HOME", "value": "/tmp"},  # the image's home is on the read-only root
        {"name": "MODEL_RUNNER_LISTEN", "value": f"0.0.0.0:{OLLAMA_PORT},0.0.0.0:{DMR_PORT}"},
        {"name": "MODEL_RUNNER_SHUTDOWN_TIMEOUT", "value": str(SHUTDOWN_SECONDS)},
    ]
    mapping = {
        "contextSize": "MODEL_RUNNER_CONTEXT_SIZE",
        "parallel": "MODEL_RUNNER_NUM_PARALLEL",
        "maxLoadedModels": "MODEL_RUNNER_MAX_LOADED_MODELS",
        "memoryBudget": "MODEL_RUNNER_MEMORY_BUDGET",
        "keepAlive": "MODEL_RUNNER_KEEP_ALIVE",
    }
    for key, var in mapping.items():
        if engine.get(key) is not None:
            env.append({"name": var, "value": str(engine[key])})
    return env


def _gpu(spec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
    gpu = spec.get("gpu") or {}
    count = int(gpu.get("count") or 0)
    resource = str(gpu.get("resourceName") or "nvidia.com/gpu")
    limits: dict[str, Any] = {resource: count} if count else {}
    tolerations = []
    if count and gpu.get("tolerateTaint", True):
        tolerations.append({"key": resource, "operator": "Exists", "effect": "NoSchedule"})
    node_selector = {GPU_PRODUCT_LABEL: str(gpu["product"])} if gpu.get("product") else {}
    return limits, tolerations, node_selector


def _resources(given: dict[str, Any], gpu_limits: dict[str, Any]) -> dict[str, Any]:
    """The user's requests and limits, DEFAULT_REQUESTS for CPU or memory left unset, GPU limits
    added."""
    resources = with_default_requests(given, DEFAULT_REQUESTS)
    if gpu_limits:
        resources["limits"] = {**(resources.get("limits") or {}), **gpu_limits}
    return resources


def statefulset(
    name: str, namespace: str, spec: dict[str, Any], default_image: str
) -> dict[str, Any]:
    gpu_limits, gpu_tolerations, gpu_selector = _gpu(spec)
    resources = _resources(spec.get("resources") or {}, gpu_limits)
    storage = spec.get("storage") or {}
    auth_env, auth_volumes, auth_mounts = _auth_mounts(name, spec)
    probe = {"httpGet": {"path": "/api/version", "port": "ollama"}, "timeoutSeconds": 5}
    container: dict[str, Any] = {
        "name": "runner",
        "image": spec.get("image") or default_image,
        "args": ["serve"],
        "ports": [
            {"name": "ollama", "containerPort": OLLAMA_PORT, "protocol": "TCP"},
            {"name": "dmr", "containerPort": DMR_PORT, "protocol": "TCP"},
        ],
        "env": _engine_env(spec.get("engine") or {}) + auth_env,
        "resources": resources,
        # The root filesystem is read-only: the store volume and /tmp are the only writable paths.
        "volumeMounts": [
            {"name": "models", "mountPath": STORE_PATH},
            {"name": "tmp", "mountPath": "/tmp"},
            *auth_mounts,
        ],
        # Startup: up to 10 minutes to open the store (a cold start on a slow volume); models
        # load on first use, not at startup. Readiness: /api/version, which touches no model.
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 300},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        # Liveness asks the event loop only (generations run off it), and only after two
        # minutes of silence, so a pod busy with long generations is never killed for it.
        "livenessProbe": {
            "httpGet": {"path": "/", "port": "ollama"},
            "periodSeconds": 10,
            "timeoutSeconds": 10,
            "failureThreshold": 12,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
    }
    pod_spec: dict[str, Any] = {
        "containers": [finish_container(container, spec)],
        "securityContext": pod_security(fs_group=True),  # the store volume is writable
        # Runners never call the Kubernetes API: no token in the pod.
        "automountServiceAccountToken": False,
        "readinessGates": [{"conditionType": MODELS_READY}],
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
    }
    node_selector = {**(spec.get("nodeSelector") or {}), **gpu_selector}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = gpu_tolerations + list(spec.get("tolerations") or [])
    if tolerations:
        pod_spec["tolerations"] = tolerations
    for key in ("affinity", "runtimeClassName"):
        if spec.get(key):
            pod_spec[key] = spec[key]
    sts_spec: dict[str, Any] = {
        "replicas": int(spec.get("replicas", 1)),
        "serviceName": headless_name(name),
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector(name)},
        "template": {"metadata": {"labels": labels(name)}, "spec": pod_spec},
    }
    pod_spec["volumes"] = [{"name": "tmp", "emptyDir": {}}, *auth_volumes]
    if storage.get("ephemeral"):
        pod_spec["volumes"].append({"name": "models", "emptyDir": {}})
    elif storage.get("existingClaim"):
        pod_spec["volumes"].append(
            {"name": "models", "persistentVolumeClaim": {"claimName": storage["existingClaim"]}}
        )
    else:
        claim: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage.get("size", "20Gi")}},
        }
        if storage.get("storageClassName"):
            claim["storageClassName"] = storage["storageClassName"]
        sts_spec["volumeClaimTemplates"] = [{"metadata": {"name": "models"}, "spec": claim}]
    template_hash = hashlib.sha256(json.dumps(sts_spec, sort_keys=True).encode()).hexdigest()[:12]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels(name),
            "annotations": {"modelrunner.io/spec-hash": template_hash},
        },
        "spec": sts_spec,
    }


def external_objects(name: str, namespace: str, url: str) -> list[dict[str, Any]]:
    """A Service with the runner's in-cluster name in front of an existing server: selectorless
    with an EndpointSlice for an IP address, ExternalName for a host name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
                "spec": {"type": "ExternalName", "externalName": host, "ports": _ports(port)},
            }
        ]
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {"type": "ClusterIP", "ports": _ports(port)},
    }
    if address.is_loopback or address.is_link_local:
        # Kubernetes refuses such endpoints (pods could not reach them anyway): the Service
        # keeps the name, the operator still manages the server's models through the URL.
        return [svc]
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-external",
            "namespace": namespace,
            "labels": {**labels(name), "kubernetes.io/service-name": name},
        },
        "addressType": "IPv6" if address.version == 6 else "IPv4",
        "endpoints": [{"addresses": [str(address)], "conditions": {"ready": True}}],
        "ports": [{"name": p, "port": port, "protocol": "TCP"} for p in ("http", "ollama", "dmr")],
    }
    return [svc, slice_]
