"""Pure parts of the ModelGateway: the objects it owns, its routing table, its Service check."""

from __future__ import annotations

import json
from typing import Any

from modeloperator.gateway_handlers import runner_fingerprint
from modeloperator.gateway_resources import (
    deployment,
    gateway_service,
    role,
    role_binding,
    routes_config_map,
    service_account,
    token_file,
)
from modeloperator.gateways import service_conflict, token_secrets
from modeloperator.refs import canonical
from modeloperator.routes_table import (
    InstanceView,
    RunnerView,
    build,
    fronted,
    render,
    selected_models,
    served_names,
    summary,
)


def obj(kind: str, name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": "team", "uid": f"uid-{name}",
                                       "labels": labels or {}}, "spec": spec}  # fmt: skip


def test_deployment_runs_the_gateway_with_its_flags_mounts_and_hardening() -> None:
    spec = {"policy": "leastRequests", "holdTimeoutSeconds": 30, "replicas": 2,
            "auth": {"apiKeysSecretRef": {"name": "keys"}}}  # fmt: skip
    tokens = {"small": ("small-management", "token"), "big": ("vault", "tok")}
    dep = deployment("front", "team", spec, "reg/runner:1", tokens)
    assert dep["metadata"]["name"] == "front-gateway" and dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "reg/runner:1"
    args = container["args"]
    assert args[0] == "gateway"
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert flags == {"--listen": "0.0.0.0:11434", "--routes-configmap": "team/front-gateway-routes",
                     "--hold-timeout": "30", "--policy": "least",
                     "--api-keys-file": "/etc/modelrunner/api-keys/keys"}  # fmt: skip
    assert pod["serviceAccountName"] == "front-gateway" and pod["automountServiceAccountToken"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    small = volumes[mounts["/var/run/modelrunner/runners/small"]]["secret"]
    assert small == {"secretName": "small-management", "optional": True,
                     "items": [{"key": "token", "path": "token"}]}  # fmt: skip
    big = volumes[mounts["/var/run/modelrunner/runners/big"]]["secret"]
    assert big["secretName"] == "vault" and big["items"] == [{"key": "tok", "path": "token"}]
    assert token_file("small") == "/var/run/modelrunner/runners/small/token"
    assert volumes[mounts["/etc/modelrunner/api-keys"]]["secret"]["secretName"] == "keys"
    assert all(len(v) <= 63 for v in volumes)
    # Gateway pods are not runner pods: the operator's runner-pod watch filters on managed-by.
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert "app.kubernetes.io/managed-by" not in labels
    assert labels["app.kubernetes.io/name"] == "model-gateway"
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}


def test_gateway_container_and_pod_render_exactly() -> None:
    """The Deployment's pod pieces it shares with the runner StatefulSet, to the key (key order
    too: see test_runner_container_and_pod_render_exactly)."""
    spec = {"image": "reg/runner:2", "imagePullPolicy": "Always",
            "resources": {"limits": {"memory": "1Gi"}}}  # fmt: skip
    pod = deployment("front", "team", spec, "img", {})["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert list(container) == [
        "name", "image", "args", "ports", "env", "resources", "volumeMounts", "readinessProbe",
        "livenessProbe", "securityContext", "imagePullPolicy",
    ]  # fmt: skip
    assert (container["image"], container["imagePullPolicy"]) == ("reg/runner:2", "Always")
    assert json.dumps(container["securityContext"]) == json.dumps(
        {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
         "capabilities": {"drop": ["ALL"]}}
    )  # fmt: skip
    # A memory limit alone is a memory request to Kubernetes: only CPU gets the default.
    assert json.dumps(container["resources"]) == json.dumps(
        {"limits": {"memory": "1Gi"}, "requests": {"cpu": "100m"}}
    )
    probe = {"httpGet": {"path": "/", "port": "http"}, "timeoutSeconds": 5}
    assert json.dumps([container["readinessProbe"], container["livenessProbe"]]) == json.dumps(
        [{**probe, "periodSeconds": 2, "failureThreshold": 3},
         {**probe, "periodSeconds": 10, "failureThreshold": 6}]
    )  # fmt: skip
    assert list(pod) == [
        "serviceAccountName", "automountServiceAccountToken", "containers", "volumes",
        "securityContext", "terminationGracePeriodSeconds",
    ]  # fmt: skip
    assert json.dumps(pod["securityContext"]) == json.dumps(
        {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
         "seccompProfile": {"type": "RuntimeDefault"}}
    )  # fmt: skip
    default = deployment("front", "team", {}, "img", {})["spec"]["template"]["spec"]
    assert default["containers"][0]["image"] == "img"
    assert "imagePullPolicy" not in default["containers"][0]


def test_defaults_prefix_affinity_and_two_minute_hold() -> None:
    args = deployment("front", "team", {}, "img", {})["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert flags["--policy"] == "prefix" and flags["--hold-timeout"] == "120"
    assert "--api-keys-file" not in flags


def test_service_maps_the_three_ports_onto_the_gateway() -> None:
    svc = gateway_service("front", "team", {})
    assert svc["metadata"]["name"] == "front"
    assert {p["port"]: p["targetPort"] for p in svc["spec"]["ports"]} == {
        80: "http", 11434: "http", 12434: "http"}  # fmt: skip
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "model-gateway",
                                       "app.kubernetes.io/instance": "front"}  # fmt: skip
    assert gateway_service("front", "team", {"serviceName": "model-runner"})["metadata"][
        "name"] == "model-runner"  # fmt: skip


def test_role_reads_only_the_routes_config_map() -> None:
    (rule,) = role("front", "team")["rules"]
    assert rule == {"apiGroups": [""], "resources": ["configmaps"],
                    "resourceNames": ["front-gateway-routes"], "verbs": ["get", "list", "watch"]}  # fmt: skip
    binding = role_binding("front", "team")
    assert binding["roleRef"]["name"] == "front-gateway"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "front-gateway",
                                    "namespace": "team"}]  # fmt: skip
    assert service_account("front", "team")["metadata"]["name"] == "front-gateway"
    cm = routes_config_map("front", "team", "{}")
    assert cm["metadata"]["name"] == "front-gateway-routes" and cm["data"] == {"routes.json": "{}"}


def test_service_conflict_names_the_owner() -> None:
    assert service_conflict(None, "g") is None
    mine = {"metadata": {"name": "s", "ownerReferences": [{"uid": "g", "kind": "ModelGateway"}]}}
    assert service_conflict(mine, "g") is None
    theirs = {"metadata": {"name": "model-runner", "ownerReferences": [
        {"uid": "r", "kind": "ModelRunner", "name": "model-runner"}]}}  # fmt: skip
    assert service_conflict(theirs, "g") == (
        "Service 'model-runner' belongs to ModelRunner 'model-runner'"
    )
    assert "another owner" in str(service_conflict({"metadata": {"name": "x"}}, "g"))


def test_token_secrets_for_pod_runners_and_external_ones_that_name_one() -> None:
    runners = [obj("ModelRunner", "pods"),
               obj("ModelRunner", "own", auth={"managementSecretRef": {"name": "mine", "key": "k"}}),
               obj("ModelRunner", "ollama", external={"url": "http://o:11434"}),
               obj("ModelRunner", "dmr", external={"url": "http://d", "managementSecretRef": {"name": "d"}})]  # fmt: skip
    assert token_secrets(runners) == {"pods": ("pods-management", "token"),
                                      "own": ("mine", "k"), "dmr": ("d", "token")}  # fmt: skip


def test_selectors_pick_runners_and_models() -> None:
    runners = [obj("ModelRunner", "b", {"tier": "gpu"}), obj("ModelRunner", "a", {"tier": "cpu"})]
    gone = obj("ModelRunner", "c")
    gone["metadata"]["deletionTimestamp"] = "now"
    assert [r["metadata"]["name"] for r in fronted(None, [*runners, gone])] == ["a", "b"]
    assert [r["metadata"]["name"] for r in fronted({"matchLabels": {"tier": "gpu"}}, runners)] == [
        "b"]  # fmt: skip
    small = obj("ModelRunner", "small", modelSelector={"matchLabels": {"size": "small"}})
    models = [obj("Model", "m1", {"size": "small"}), obj("Model", "m2", {"size": "big"})]
    assert [m["metadata"]["name"] for m in selected_models(small, models)] == ["m1"]


def table_of() -> dict[str, Any]:
    gemma = obj("Model", "gemma3", source="gemma3:270m")
    smol = obj("Model", "smollm2", source="10.250.0.1:5000/ai/smollm2")
    chat = obj("Model", "helper", modelfile="FROM gemma3\nSYSTEM hi")
    small = RunnerView("small", "team", 2, [gemma, smol, chat], [
        InstanceView("small-1", "http://10.0.0.2:11434", frozenset({canonical("gemma3")})),
        InstanceView("small-0", "http://10.0.0.1:11434", frozenset(
            {canonical("gemma3"), canonical("gemma3:270m"), canonical("10.250.0.1:5000/ai/smollm2"),
             canonical("smollm2"), canonical("other")})),
    ], token_file("small"))  # fmt: skip
    idle = RunnerView("idle", "team", 0, [chat])
    return build([small, idle])


def test_routing_table_declares_every_model_and_lists_only_what_each_instance_holds() -> None:
    table = table_of()
    assert table["version"] == 1
    idle, small = table["runners"]
    assert idle == {"name": "idle", "namespace": "team", "models": ["helper:latest"], "replicas": 0}
    assert small["tokenFile"] == "/var/run/modelrunner/runners/small/token"
    # Each Model under its own name, a pulled one also under its source reference.
    assert small["models"] == ["10.250.0.1:5000/ai/smollm2:latest", "gemma3:270m", "gemma3:latest",
                               "helper:latest", "smollm2:latest"]  # fmt: skip
    first, second = table["instances"]
    assert (first["name"], first["runner"], first["url"]) == ("small-0", "small",
                                                             "http://10.0.0.1:11434")  # fmt: skip
    # "other" is on the instance but no Model declares it; helper is declared but absent.
    assert first["models"] == ["10.250.0.1:5000/ai/smollm2:latest", "gemma3:270m",
                               "gemma3:latest", "smollm2:latest"]  # fmt: skip
    assert second["models"] == ["gemma3:latest"]


def test_rendering_is_stable_and_the_summary_counts_instances() -> None:
    assert render(table_of()) == render(table_of())
    assert json.loads(render(table_of())) == table_of()
    assert summary(table_of()) == [
        {"name": "idle", "replicas": 0, "readyInstances": 0, "models": ["helper:latest"]},
        {"name": "small", "replicas": 2, "readyInstances": 2,
         "models": table_of()["runners"][1]["models"]},
    ]  # fmt: skip


def test_served_names_do_not_repeat() -> None:
    assert served_names(obj("Model", "gemma3", source="gemma3")) == ["gemma3:latest"]
    assert served_names(obj("Model", "x", copyFrom="y")) == ["x:latest"]


def test_runner_fingerprint_ignores_the_autoscalers_status() -> None:
    runner = obj("ModelRunner", "r", replicas=1)
    runner["status"] = {"readyReplicas": 1, "instances": [{"name": "r-0"}]}
    before = runner_fingerprint(runner)
    runner["status"]["autoscaling"] = {"inFlight": 3}
    assert runner_fingerprint(runner) == before
    runner["status"]["instances"] = []
    assert runner_fingerprint(runner) != before
