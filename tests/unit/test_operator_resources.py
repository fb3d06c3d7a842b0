"""Pure builders of the objects a ModelRunner owns."""

from __future__ import annotations

import json
from typing import Any

from modeloperator.conditions import merge, summary
from modeloperator.instances import Instance, pod_instances
from modeloperator.plan import ModelView
from modeloperator.reconcile import InstanceResult, model_status, scaled_to_zero
from modeloperator.resources import (
    DEFAULT_REQUESTS,
    MODELS_READY,
    external_objects,
    headless_service,
    service,
    statefulset,
)
from modeloperator.runners import unschedulable_reason


def test_service_ports_and_selector() -> None:
    svc = service("model-runner", "ns")
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 80, 11434),
        ("ollama", 11434, 11434),
        ("dmr", 12434, 12434),
    ]
    assert svc["spec"]["selector"] == {
        "app.kubernetes.io/name": "model-runner",
        "app.kubernetes.io/instance": "model-runner",
    }
    assert headless_service("model-runner", "ns")["spec"]["clusterIP"] == "None"


def test_gpu_runner_statefulset() -> None:
    spec = {
        "replicas": 2,
        "gpu": {"count": 1, "product": "NVIDIA-A100-SXM4-80GB"},
        "engine": {"contextSize": 8192, "parallel": 4},
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}},
        "runtimeClassName": "nvidia",
    }
    sts = statefulset("r", "ns", spec, "img:1")
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert sts["spec"]["replicas"] == 2 and sts["spec"]["serviceName"] == "r-pods"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["runtimeClassName"] == "nvidia"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_RUNNER_CONTEXT_SIZE"] == "8192" and env["MODEL_RUNNER_NUM_PARALLEL"] == "4"
    assert (
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    )
    assert container["startupProbe"]["httpGet"]["path"] == "/api/version"


def test_amd_gpus_and_shared_claim() -> None:
    spec = {
        "gpu": {"count": 2, "resourceName": "amd.com/gpu"},
        "storage": {"existingClaim": "shared"},
    }
    sts = statefulset("r", "ns", spec, "img")
    pod = sts["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"amd.com/gpu": 2}
    assert pod["tolerations"][0]["key"] == "amd.com/gpu"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "shared"
    assert "volumeClaimTemplates" not in sts["spec"]


def test_cpu_runner_has_no_gpu_toleration() -> None:
    pod = statefulset("r", "ns", {}, "img")["spec"]["template"]["spec"]
    assert "tolerations" not in pod and "limits" not in pod["containers"][0]["resources"]


def test_spec_edits_change_the_template_hash() -> None:
    a = statefulset("r", "ns", {"engine": {"contextSize": 1}}, "img")
    b = statefulset("r", "ns", {"engine": {"contextSize": 2}}, "img")
    key = "modelrunner.io/spec-hash"
    assert a["metadata"]["annotations"][key] != b["metadata"]["annotations"][key]


def test_external_by_ip_and_by_host() -> None:
    svc, endpoints = external_objects("ext", "ns", "http://10.1.2.3:11434")
    assert svc["spec"]["type"] == "ClusterIP" and "selector" not in svc["spec"]
    assert endpoints["endpoints"][0]["addresses"] == ["10.1.2.3"]
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == "ext"
    (named,) = external_objects("ext", "ns", "https://ollama.example.com")
    assert named["spec"] == {
        **named["spec"],
        "type": "ExternalName",
        "externalName": "ollama.example.com",
    }


def test_pods_with_ready_containers_are_instances_and_overrides_win() -> None:
    containers = {"type": "ContainersReady", "status": "True"}
    opened = {"type": MODELS_READY, "status": "True", "reason": "ModelsPresent"}
    pods = [
        {"metadata": {"name": "r-1"}, "status": {"podIP": "10.0.0.2", "conditions": [containers]}},
        {"metadata": {"name": "r-0"},
         "status": {"podIP": "10.0.0.1", "conditions": [containers, opened]}},
        # Ready without ready containers never happens with a kubelet; Ready alone is not enough.
        {"metadata": {"name": "r-2"},
         "status": {"podIP": "10.0.0.3", "conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "r-3", "deletionTimestamp": "2026-01-01T00:00:00Z"},
         "status": {"podIP": "10.0.0.4", "conditions": [containers, opened]}},
    ]  # fmt: skip
    found = pod_instances("r", "ns", pods, {"ns/r-1": "http://127.0.0.1:9"})
    assert found == [
        Instance("r", "r-0", "http://10.0.0.1:11434", serving=True),
        Instance("r", "r-1", "http://127.0.0.1:9", serving=False),
    ]


def test_unschedulable_reason_is_reported() -> None:
    pod = {"status": {"conditions": [{"type": "PodScheduled", "status": "False",
           "message": "0/3 nodes are available: 2 Insufficient nvidia.com/gpu."}]}}  # fmt: skip
    assert "Insufficient nvidia.com/gpu" in (unschedulable_reason([pod]) or "")


def test_conditions_keep_transition_time_when_unchanged() -> None:
    first = merge(None, summary(False, True, False, "Pulling", "x", 1))
    first[0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    again = merge(first, summary(False, True, False, "Pulling", "y", 2))
    assert again[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    flipped = merge(first, summary(True, False, False, "Ready", "ok", 2))
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_model_status_states() -> None:
    model = ModelView("m", {"source": "reg/a/m:1"}, {})
    inst = Instance("r", "external", "http://x")
    ready = InstanceResult(inst, "Ready", digest="ab", size=291_000_000)
    status = model_status(model, [ready], 3, {"family": "llama"})
    assert status["phase"] == "Ready" and status["source"] == "reg/a/m:1"
    assert status["digest"] == "sha256:ab" and status["details"]["family"] == "llama"
    assert status["size"] == 291_000_000 and status["sizeHuman"] == "291 MB"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Reconciling": "False", "Stalled": "False"}  # fmt: skip
    down = model_status(model, [InstanceResult(inst, "Unreachable", "connection refused")], 3)
    assert down["phase"] == "Pending" and "source" not in down
    ready_cond = next(c for c in down["conditions"] if c["type"] == "Ready")
    assert (
        ready_cond["reason"] == "RunnerUnreachable"
        and "connection refused" in ready_cond["message"]
    )
    failed = model_status(
        model, [InstanceResult(inst, "Failed", "pull model manifest: not found")], 3
    )
    assert next(c for c in failed["conditions"] if c["type"] == "Stalled")["status"] == "True"
    assert model_status(model, [], 3)["conditions"][0]["reason"] == "NoRunner"
    asleep = model_status(model, [], 3, scaled_to_zero_by=["on-demand"])
    assert asleep["phase"] == "Ready" and "appliedHash" not in asleep
    ready_cond = next(c for c in asleep["conditions"] if c["type"] == "Ready")
    assert ready_cond["status"] == "True"
    assert "on-demand scaled to zero; served on demand" in ready_cond["message"]


def test_scaled_to_zero_only_by_an_autoscaler() -> None:
    assert scaled_to_zero({"spec": {"autoscaling": {"minReplicas": 0}, "replicas": 0}})
    assert not scaled_to_zero({"spec": {"autoscaling": {"minReplicas": 0}, "replicas": 1}})
    assert not scaled_to_zero({"spec": {"replicas": 0}})  # stopped by hand: not on demand


def test_loopback_servers_get_no_endpoint_slice() -> None:
    (svc,) = external_objects("ext", "ns", "http://127.0.0.1:11434")
    assert svc["kind"] == "Service"


def test_runner_pod_is_fit_for_a_real_kubelet() -> None:
    sts = statefulset("r", "ns", {}, "img")
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["readinessGates"] == [{"conditionType": "modelrunner.io/models-ready"}]
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["fsGroup"] == 1000
    # preStop sleep (endpoints drop the pod), then up to 30 s of draining inside the grace period.
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    env = {e["name"]: e["value"] for e in container["env"]}
    shutdown = float(env["MODEL_RUNNER_SHUTDOWN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] >= 5 + shutdown + 10
    startup, ready, live = (
        container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")
    )
    assert (
        ready["httpGet"]["path"] == "/api/version" and startup["httpGet"]["path"] == "/api/version"
    )
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert live["periodSeconds"] * live["failureThreshold"] >= 120 and live["timeoutSeconds"] >= 5
    assert container["resources"] == {"requests": DEFAULT_REQUESTS}


def test_user_resources_win_over_default_requests() -> None:
    def resources(given: dict[str, object], gpus: int = 0) -> dict[str, object]:
        spec = {"resources": given, "gpu": {"count": gpus}}
        container = statefulset("r", "ns", spec, "img")["spec"]["template"]["spec"]["containers"][0]
        result: dict[str, object] = container["resources"]
        return result

    assert resources({"requests": {"cpu": "4"}}) == {
        "requests": {"cpu": "4", "memory": DEFAULT_REQUESTS["memory"]}
    }
    # A limit alone means "request the limit" to Kubernetes: no default request below it.
    assert resources({"limits": {"memory": "512Mi"}}, gpus=1) == {
        "requests": {"cpu": DEFAULT_REQUESTS["cpu"]},
        "limits": {"memory": "512Mi", "nvidia.com/gpu": 1},
    }
    given = {"requests": {"cpu": "1"}}
    resources(given)
    assert given == {"requests": {"cpu": "1"}}  # the ModelRunner's spec is not modified


def test_runner_pod_is_hardened() -> None:
    """Read-only root with /tmp and the store writable, no capabilities, the runtime's seccomp
    profile, and no service account token (runners never call the Kubernetes API)."""
    sts = statefulset("r", "ns", {"storage": {"ephemeral": True}}, "img")
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/models", "/tmp"}  # the management token's Secret volume is read-only
    assert {v["name"] for v in pod["volumes"]} == {"models", "tmp", "management"}


def ordered(value: Any) -> str:
    """JSON with the builders' key order kept: the pins below compare that order too."""
    return json.dumps(value)


def test_runner_container_and_pod_render_exactly() -> None:
    """The StatefulSet's pod pieces it shares with the gateway Deployment, to the key: a change to
    them (podspec.py) shows here and in test_operator_gateway.py."""
    spec = {"image": "reg/runner:2", "imagePullPolicy": "Always"}
    pod = statefulset("r", "ns", spec, "img")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert list(container) == [
        "name", "image", "args", "ports", "env", "resources", "volumeMounts", "startupProbe",
        "readinessProbe", "livenessProbe", "lifecycle", "securityContext", "imagePullPolicy",
    ]  # fmt: skip
    assert (container["image"], container["imagePullPolicy"]) == ("reg/runner:2", "Always")
    assert ordered(container["securityContext"]) == ordered(
        {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
         "capabilities": {"drop": ["ALL"]}}
    )  # fmt: skip
    assert ordered(container["resources"]) == ordered(
        {"requests": {"cpu": "500m", "memory": "1Gi"}}
    )
    probe = {"httpGet": {"path": "/api/version", "port": "ollama"}, "timeoutSeconds": 5}
    assert ordered([container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")]) == (
        ordered([{**probe, "periodSeconds": 2, "failureThreshold": 300},
                 {**probe, "periodSeconds": 5, "failureThreshold": 3},
                 {"httpGet": {"path": "/", "port": "ollama"}, "periodSeconds": 10,
                  "timeoutSeconds": 10, "failureThreshold": 12}])
    )  # fmt: skip
    assert list(pod) == [
        "containers", "securityContext", "automountServiceAccountToken", "readinessGates",
        "terminationGracePeriodSeconds", "volumes",
    ]  # fmt: skip
    assert ordered(pod["securityContext"]) == ordered(
        {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
         "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}
    )  # fmt: skip
    default = statefulset("r", "ns", {}, "img")["spec"]["template"]["spec"]["containers"][0]
    assert default["image"] == "img" and "imagePullPolicy" not in default
