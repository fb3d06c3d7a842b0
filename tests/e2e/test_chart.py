"""The Helm chart: CRDs identical to crds/, lint, templates for each shape of values, the values
schema, and an install whose RBAC is checked with `kubectl auth can-i` as its ServiceAccount.
(tests/e2e/test_quickstart.py runs the operator under that ServiceAccount's token.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.e2e.conftest import CHART, ROOT, helm
from tests.support.cluster import Kubectl


def render(*args: str, namespace: str = "ops") -> list[dict[str, Any]]:
    out = helm("template", "rel", str(CHART), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if isinstance(doc, dict)]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, [d["kind"] for d in docs]
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def test_chart_crds_are_byte_identical_to_crds() -> None:
    source = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    copies = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert (
        source
        == copies
        == ["modelgateways.yaml", "modelrunners.yaml", "models.yaml", "peering.yaml"]
    )
    for name in source:
        assert (ROOT / "crds" / name).read_bytes() == (CHART / "crds" / name).read_bytes(), (
            f"charts/model-runner-operator/crds/{name} differs from crds/{name}: make chart-sync"
        )


def test_helm_lint_is_clean() -> None:
    proc = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_values_schema_is_a_valid_json_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


def test_default_template_cluster_wide() -> None:
    docs = render()
    assert kinds(docs) == ["ClusterKopfPeering", "ClusterRole", "ClusterRoleBinding",
                           "Deployment", "ServiceAccount"]  # fmt: skip
    deployment = only(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["args"] == ["--liveness=http://0.0.0.0:8080/healthz"]  # all namespaces
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["image"] == "ghcr.io/modelrunner/operator:0.1.0"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELOPERATOR_PEERING"] == "modelrunner"
    assert env["MODELOPERATOR_RUNNER_IMAGE"] == "ghcr.io/modelrunner/runner:0.1.0"
    assert pod["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]

    rules = only(docs, "ClusterRole")["rules"]
    granted = {(g, r): set(rule["verbs"]) for rule in rules
               for g in rule["apiGroups"] for r in rule["resources"]}  # fmt: skip
    assert granted[("", "namespaces")] == {"list", "watch"}
    assert granted[("kopf.dev", "clusterkopfpeerings")] == {"get", "list", "watch", "patch"}
    assert granted[("", "pods")] == {"list", "watch"}
    assert granted[("", "events")] == {"create"}
    assert granted[("modelrunner.io", "models/status")] == {"patch"}
    # Secrets by name (pull and management secrets) and its own management Secrets: created,
    # never listed, watched, updated or deleted.
    assert granted[("", "secrets")] == {"get", "create"}
    # ModelGateways: their routing table ConfigMaps (read too, since the operator can only grant
    # its gateways' Roles what it holds), Deployments, accounts, Roles and bindings; no delete.
    assert granted[("", "configmaps")] == {"get", "list", "watch", "create", "patch"}
    assert granted[("rbac.authorization.k8s.io", "roles")] == {"create", "patch"}
    assert granted[("apps", "deployments")] == {
        "create",
        "patch",
    }  # test_rbac.py: exactly the code's calls
    assert not any(r in ("clusterroles", "clusterrolebindings") for _, r in granted)
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rules)
    assert not any("delete" in verbs for verbs in granted.values())
    binding = only(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-model-runner-operator", "namespace": "ops"}
    ]


def test_template_watching_namespaces() -> None:
    docs = render("--set", "watchNamespaces={team-a,team-b}")
    assert kinds(docs) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "KopfPeering",
                           "KopfPeering", "Role", "Role", "RoleBinding", "RoleBinding",
                           "ServiceAccount"]  # fmt: skip
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    role_resources = {r for rule in roles[0]["rules"] for r in rule["resources"]}
    assert "kopfpeerings" in role_resources and "namespaces" not in role_resources
    # The only cluster-wide permissions left: reading namespace and CRD names (kopf's
    # observation, rbac.observeCluster).
    assert only(docs, "ClusterRole")["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["list", "watch"]}]  # fmt: skip
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][1:] == ["--namespace=team-a", "--namespace=team-b"]
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert {p["metadata"]["namespace"] for p in peerings} == {"team-a", "team-b"}

    docs = render("--set", "watchNamespaces={team-a}", "--set", "rbac.observeCluster=false",
                  "--set", "peering.enabled=false")  # fmt: skip
    assert kinds(docs) == ["Deployment", "Role", "RoleBinding", "ServiceAccount"]
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--standalone" in container["args"]


def test_template_runner_models_and_service_monitor() -> None:
    values = {
        "modelRunner": {"create": True, "spec": {"replicas": 2, "gpu": {"count": 1}}},
        "models": [{"name": "smollm2", "spec": {"source": "ai/smollm2"}},
                   {"name": "chat", "labels": {"tier": "a"}, "spec": {"copyFrom": "smollm2"}}],
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    }  # fmt: skip
    docs = render("--set-json", f"modelRunner={json.dumps(values['modelRunner'])}",
                  "--set-json", f"models={json.dumps(values['models'])}",
                  "--set-json", f"serviceMonitor={json.dumps(values['serviceMonitor'])}",
                  namespace="llm")  # fmt: skip
    runner = only(docs, "ModelRunner")
    assert runner["metadata"]["name"] == "model-runner"
    assert runner["metadata"]["namespace"] == "llm"
    assert runner["spec"] == {"replicas": 2, "gpu": {"count": 1}}
    models = {m["metadata"]["name"]: m for m in docs if m["kind"] == "Model"}
    assert models["chat"]["spec"] == {"copyFrom": "smollm2"}
    assert models["chat"]["metadata"]["labels"]["tier"] == "a"
    monitor = only(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "model-runner", "app.kubernetes.io/managed-by": "modeloperator"}  # fmt: skip
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_template_network_policy_lets_only_the_operator_and_peers_in() -> None:
    assert "NetworkPolicy" not in kinds(render())  # off by default
    docs = [d for d in render("--set", "networkPolicy.enabled=true", "--set",
                              "watchNamespaces={a,b}") if d["kind"] == "NetworkPolicy"]  # fmt: skip
    assert [d["metadata"]["namespace"] for d in docs] == ["a", "b"]
    spec = docs[0]["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "model-runner"
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert sorted(p["port"] for p in rule["ports"]) == [11434, 12434]
    operator, same_namespace = rule["from"]
    assert operator["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ops"}
    assert operator["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "rel"
    assert same_namespace == {"podSelector": {}}
    # Cluster-wide operator: one policy in the release's namespace; `from` replaced.
    (only_peers,) = [d for d in render("--set", "networkPolicy.enabled=true", "--set-json",
                                       'networkPolicy.from=[{"podSelector": {"matchLabels": '
                                       '{"role": "client"}}}]') if d["kind"] == "NetworkPolicy"]  # fmt: skip
    assert only_peers["metadata"]["namespace"] == "ops"
    assert only_peers["spec"]["ingress"][0]["from"][1] == {
        "podSelector": {"matchLabels": {"role": "client"}}
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=-1"], "minimum"),
        (["--set", "unknownKey=1"], "additional properties 'unknownKey' not allowed"),
        (["--set-json", 'models=[{"name": "x", "spec": {"source": "a", "copyFrom": "b"}}]'],
         "oneOf"),
        (["--set-json", 'models=[{"name": "x", "spec": {}}]'], "oneOf"),
        (["--set", "watchNamespaces={Not_A_Namespace}"], "watchNamespaces"),
        (["--set", "healthPort=80"], "minimum"),
    ],
)  # fmt: skip
def test_values_schema_refuses_bad_values(args: list[str], message: str) -> None:
    proc = helm("template", "rel", str(CHART), *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_notes_show_calls_in_each_api() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    for call in ("/engines/v1/chat/completions", "/v1/chat/completions", ":11434/api/chat",
                 ":12434/models", "kubectl -n", "wait --for=condition=Ready"):  # fmt: skip
        assert call in notes


# -------------------------------------------------------------------------- on the cluster


@pytest.fixture
def release(kubectl: Kubectl, namespace: str, crds: None) -> Iterator[tuple[str, str]]:
    """The chart installed with its default values (all namespaces) into ``namespace``; a unique
    peering name so the cluster-scoped ClusterKopfPeering cannot clash with other installs.
    Yields the release name and what `helm install` printed (with NOTES.txt)."""
    name = f"mro-{uuid.uuid4().hex[:6]}"
    # On the fake CPU node (kwok marks the pod Running): this test is about RBAC and rollout, the
    # operator image itself runs in tests/node.
    kwok = '[{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]'
    out = helm("install", name, str(CHART), "--namespace", namespace,
               "--set", f"peering.name={name}", "--set", "nodeSelector.type=kwok",
               "--set-json", f"tolerations={kwok}", kubeconfig=kubectl.kubeconfig).stdout  # fmt: skip
    try:
        yield name, out
    finally:
        helm("uninstall", name, "--namespace", namespace, "--wait=false",
             kubeconfig=kubectl.kubeconfig, check=False)  # fmt: skip


@pytest.mark.cluster
def test_install_creates_the_operator_objects_with_least_privilege(
    kubectl: Kubectl, namespace: str, release: tuple[str, str]
) -> None:
    name, printed = release
    fullname = f"{name}-model-runner-operator"
    notes = printed[printed.index("NOTES:") :]
    for call in ("curl http://model-runner/engines/v1/chat/completions",
                 "curl http://model-runner:11434/api/chat", "curl http://model-runner:12434/models",
                 f"kubectl -n {namespace} wait --for=condition=Ready modelrunner/model-runner model/smollm2",
                 f"rollout status deployment/{fullname}"):  # fmt: skip
        assert call in notes, notes
    for kind in ("deployment", "serviceaccount"):
        assert kubectl.exists(kind, fullname, namespace=namespace)
    for kind in ("clusterrole", "clusterrolebinding"):
        assert kubectl.exists(kind, fullname)
    assert kubectl.exists("clusterkopfpeering", name)
    # kwok marks the pod Running (no container runs): the Deployment rolls out.
    kubectl("rollout", "status", f"deployment/{fullname}", "--timeout=90s",
            namespace=namespace, timeout=100)  # fmt: skip

    account = f"system:serviceaccount:{namespace}:{fullname}"

    def can(verb: str, resource: str, where: str | None = "elsewhere") -> bool:
        resource, _, subresource = resource.partition("/")
        args = ["auth", "can-i", verb, resource, f"--as={account}"]
        args += [f"--subresource={subresource}"] if subresource else []
        args += ["--namespace", where] if where else []
        return kubectl(*args, check=False).stdout.strip() == "yes"

    allowed = [
        ("watch", "models.modelrunner.io"), ("patch", "models.modelrunner.io"),
        ("patch", "models.modelrunner.io/status"), ("patch", "modelrunners.modelrunner.io/status"),
        ("update", "modelrunners.modelrunner.io/finalizers"),
        ("create", "statefulsets.apps"), ("patch", "statefulsets.apps"),
        ("patch", "services"), ("create", "endpointslices.discovery.k8s.io"),
        ("list", "pods"), ("watch", "pods"), ("patch", "pods/status"), ("create", "events"),
        ("get", "secrets"), ("create", "secrets"),
        ("patch", "modelgateways.modelrunner.io/status"), ("create", "deployments.apps"),
        ("patch", "configmaps"), ("create", "serviceaccounts"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
    ]  # fmt: skip
    for verb, resource in allowed:
        assert can(verb, resource), f"{account} cannot {verb} {resource}"
    for verb, resource in [("list", "namespaces"), ("watch", "namespaces"),
                           ("patch", "clusterkopfpeerings.kopf.dev"),
                           ("watch", "customresourcedefinitions.apiextensions.k8s.io")]:  # fmt: skip
        assert can(verb, resource, where=None), f"{account} cannot {verb} {resource}"
    denied = [
        ("list", "secrets"), ("watch", "secrets"), ("update", "secrets"), ("patch", "secrets"),
        ("delete", "secrets"), ("delete", "configmaps"), ("delete", "pods"),
        ("create", "pods"),
        ("delete", "statefulsets.apps"), ("create", "models.modelrunner.io"),
        ("delete", "models.modelrunner.io"), ("delete", "deployments.apps"),
        ("patch", "nodes"), ("escalate", "roles.rbac.authorization.k8s.io"),
        ("bind", "roles.rbac.authorization.k8s.io"), ("delete", "rolebindings.rbac.authorization.k8s.io"),
        ("create", "modelgateways.modelrunner.io"),
    ]  # fmt: skip
    for verb, resource in denied:
        assert not can(verb, resource), f"{account} may {verb} {resource}"
