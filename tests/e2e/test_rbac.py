"""Least privilege for the operator's ServiceAccount, proven two ways.

1. The chart's rendered rules equal what the operator code calls (:data:`NEEDS`, each entry
   naming its call site; a test checks every kind the operator builds is in it), so a rule
   added for new code needs its entry here, and a rule no code needs fails.
2. On the shared cluster, with the chart installed, ``kubectl auth can-i --as=<the SA>``: every
   needed verb is allowed, and ``--list`` shows nothing beyond the rendered rules (and what every
   authenticated account has), in the release's namespace and in another one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CHART, helm
from tests.e2e.test_chart import release  # noqa: F401  (the installed chart, a fixture)
from tests.support.cluster import Kubectl

OPERATOR = Path(__file__).resolve().parents[2] / "operator" / "modeloperator"
MR = "modelrunner.io"

# (API group, resource, verbs, where the operator calls them). "kopf" means the framework's own
# calls for handlers on that resource: list+watch to follow it, patch for its finalizer and
# progress annotations.
NEEDS: list[tuple[str, str, set[str], str]] = [
    (MR, "models", {"list", "watch", "patch"}, "kopf handlers (handlers.py), kube.models()"),
    (MR, "modelrunners", {"get", "list", "watch", "patch"},
     "kopf handlers; kube.get ModelRunner (runners.py); autoscale spec.replicas (gateways.py)"),
    (MR, "modelgateways", {"list", "watch", "patch"}, "kopf handlers (gateway_handlers.py)"),
    (MR, "models/status", {"patch"}, "kube.patch_status('models') (models.py)"),
    (MR, "modelrunners/status", {"patch"}, "kube.patch_status('modelrunners')"),
    (MR, "modelgateways/status", {"patch"}, "kube.patch_status('modelgateways')"),
    (MR, "models/finalizers", {"update"}, "ownerReferences with blockOwnerDeletion"),
    (MR, "modelrunners/finalizers", {"update"}, "ownerReferences with blockOwnerDeletion"),
    (MR, "modelgateways/finalizers", {"update"}, "ownerReferences with blockOwnerDeletion"),
    ("apps", "statefulsets", {"create", "patch"}, "kube.apply statefulset (server-side apply)"),
    ("", "services", {"get", "create", "patch"}, "kube.apply services; kube.get (gateways.py)"),
    ("discovery.k8s.io", "endpointslices", {"create", "patch"}, "kube.apply external runners"),
    ("apps", "deployments", {"create", "patch"}, "kube.apply the gateway Deployment"),
    # The gateway's Role grants get/list/watch on its ConfigMap: Kubernetes lets the operator
    # grant only what it holds itself.
    ("", "configmaps", {"get", "list", "watch", "create", "patch"}, "kube.apply routes ConfigMap"),
    ("", "serviceaccounts", {"create", "patch"}, "kube.apply the gateway ServiceAccount"),
    ("rbac.authorization.k8s.io", "roles", {"create", "patch"}, "kube.apply the gateway Role"),
    ("rbac.authorization.k8s.io", "rolebindings", {"create", "patch"}, "kube.apply RoleBinding"),
    ("", "pods", {"list", "watch"}, "kopf.on.event pods; kube.list_objects Pod"),
    ("", "pods/status", {"patch"}, "kube.patch_pod_condition (readiness gate)"),
    ("", "events", {"create"}, "kopf posts Events"),
    ("", "secrets", {"get", "create"}, "kube.secret (by name only), kube.create token Secret"),
    ("", "namespaces", {"list", "watch"}, "kopf: which namespaces exist (all-namespaces mode)"),
    ("apiextensions.k8s.io", "customresourcedefinitions", {"list", "watch"},
     "kopf: CRDs added or removed while running"),
    ("kopf.dev", "clusterkopfpeerings", {"get", "list", "watch", "patch"}, "kopf peering"),
]  # fmt: skip
KIND_RESOURCES = {
    "Secret": "secrets", "Service": "services", "StatefulSet": "statefulsets",
    "EndpointSlice": "endpointslices", "ServiceAccount": "serviceaccounts", "Role": "roles",
    "RoleBinding": "rolebindings", "ConfigMap": "configmaps", "Deployment": "deployments",
}  # fmt: skip


def needs() -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for group, resource, verbs, _ in NEEDS for verb in verbs}


def rendered() -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every rule the chart binds to its ServiceAccount."""
    import yaml

    docs = [d for d in yaml.safe_load_all(helm("template", "rel", str(CHART), "--namespace",
                                               "ops").stdout) if isinstance(d, dict)]  # fmt: skip
    account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    bound = {
        d["roleRef"]["name"]
        for d in docs
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
        and any(s.get("name") == account for s in d.get("subjects", []))
    }
    rules: set[tuple[str, str, str]] = set()
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "Role") and doc["metadata"]["name"] in bound:
            for rule in doc.get("rules", []):
                for group in rule.get("apiGroups", []):
                    for resource in rule.get("resources", []):
                        rules |= {(group, resource, verb) for verb in rule["verbs"]}
    return rules


def built_kinds() -> set[str]:
    """Kinds of the objects the operator writes: a manifest dict's ``"kind"`` right after its
    ``"apiVersion"`` (references such as roleRef have no apiVersion)."""
    pattern = re.compile(r'"apiVersion":\s*[^,]+,\s*"kind":\s*"(\w+)"')
    return {kind for path in OPERATOR.glob("*.py") for kind in pattern.findall(path.read_text())}


def test_every_kind_the_operator_writes_has_its_rule() -> None:
    kinds = built_kinds()
    assert {"StatefulSet", "Secret", "Deployment"} <= kinds
    assert kinds <= set(KIND_RESOURCES), f"add the RBAC need of {kinds - set(KIND_RESOURCES)}"
    granted = {(resource, verb) for _, resource, verb in needs()}
    for kind in kinds:
        assert (KIND_RESOURCES[kind], "create") in granted, kind


def test_the_charts_rules_are_exactly_what_the_code_calls() -> None:
    have, want = rendered(), needs()
    assert want - have == set(), "the operator calls these but the chart does not grant them"
    assert have - want == set(), "the chart grants these but no operator code calls them"


def _effective(kubectl: Kubectl, account: str, namespace: str) -> set[tuple[str, str, str]]:
    """``kubectl auth can-i --list`` as (group, resource, verb), resource rules only."""
    out = kubectl("auth", "can-i", "--list", f"--as={account}", namespace=namespace).stdout
    found: set[tuple[str, str, str]] = set()
    for line in out.splitlines()[1:]:
        match = re.match(r"^(\S+)\s+\[\]\s+\[(.*?)\]\s+\[(.*?)\]$", line.strip())
        if not match:
            continue  # non-resource URLs (discovery, health)
        full, _, sub = match.group(1).partition("/")  # models.modelrunner.io/status
        resource, _, group = full.partition(".")
        resource += f"/{sub}" if sub else ""
        found |= {(group, resource, verb) for verb in match.group(3).split()}
    return found


@pytest.mark.cluster
def test_can_i_as_the_service_account(
    kubectl: Kubectl,
    namespace: str,
    release: tuple[str, str],  # noqa: F811
) -> None:
    name, _ = release
    account = f"system:serviceaccount:{namespace}:{name}-model-runner-operator"
    baseline = _effective(kubectl, f"system:serviceaccount:{namespace}:default", namespace)
    want = rendered()
    for where in (namespace, "default"):
        extra = _effective(kubectl, account, where) - baseline - want
        assert extra == set(), f"{account} may do more than the chart grants in {where}"
    for group, resource, verb in sorted(needs()):
        base, _, sub = resource.partition("/")
        target = f"{base}.{group}" if group else base
        args: list[Any] = ["auth", "can-i", verb, target, f"--as={account}"]
        args += [f"--subresource={sub}"] if sub else []
        proc = kubectl(*args, namespace="default", check=False)
        assert proc.stdout.strip() == "yes", f"{account} cannot {verb} {resource} ({group})"
