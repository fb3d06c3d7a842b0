"""Every example: listed, documented, and accepted by the API server (`kubectl apply
--dry-run=server` with the CRDs installed). Argo CD and Flux kinds, whose CRDs the local cluster
does not have, are checked in Python: the paths they name exist here, the health checks name
objects the example declares; so are the Inference Extension's InferencePool and the Gateway API's
HTTPRoute of 08-inference-pool (the pool selects the runner pods the operator builds).
examples/01-quickstart and 06-clients also run end to end in test_quickstart.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modeloperator import resources
from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.e2e.conftest import CHART, EXAMPLES, ROOT, load_documents
from tests.support.cluster import Kubectl
from tests.support.fake_engine import FakeEngine
from tests.support.server import LiveServer

EXAMPLE_DIRS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())
FOREIGN_GROUPS = (
    "argoproj.io",
    "fluxcd.io",
    "inference.networking.k8s.io",
    "gateway.networking.k8s.io",
)


def foreign(doc: dict[str, Any]) -> bool:
    return any(str(doc.get("apiVersion", "")).split("/")[0].endswith(g) for g in FOREIGN_GROUPS)


def manifests(example: Path) -> list[Path]:
    return sorted(p for p in example.rglob("*.yaml") if p.name != "kustomization.yaml")


def test_examples_are_numbered_documented_and_indexed() -> None:
    names = [p.name for p in EXAMPLE_DIRS]
    assert names == ["01-quickstart", "02-gpu-runner", "03-copy-and-modelfile",
                     "04-external-ollama", "05-gitops", "06-clients", "07-gateway",
                     "08-inference-pool"]  # fmt: skip
    index = (EXAMPLES / "README.md").read_text()
    for example in EXAMPLE_DIRS:
        assert (example / "README.md").is_file()
        assert f"({example.name}/)" in index
        assert manifests(example), example


def test_quickstart_is_what_the_issue_asks_for() -> None:
    docs = {d["kind"]: d for p in manifests(EXAMPLES / "01-quickstart") for d in load_documents(p)}
    assert docs["ModelRunner"]["metadata"]["name"] == "model-runner"
    assert docs["Model"]["metadata"]["name"] == "smollm2"
    assert docs["Model"]["spec"]["source"] == "ai/smollm2"
    script = docs["Job"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "curl" in script and "http://model-runner/engines/v1/chat/completions" in script


def test_gpu_runner_requests_gpus_of_one_product_on_two_replicas() -> None:
    (runner,) = load_documents(EXAMPLES / "02-gpu-runner" / "runner.yaml")
    spec = runner["spec"]
    assert spec["replicas"] == 2 and spec["gpu"]["count"] >= 1
    assert spec["gpu"]["product"] and spec["gpu"]["resourceName"] == "nvidia.com/gpu"
    assert spec["image"].endswith("-cuda")


def test_gateway_fronts_both_runners_and_one_scales_from_zero() -> None:
    gateway = EXAMPLES / "07-gateway"
    docs = [d for p in manifests(gateway) for d in load_documents(p)]
    (gw,) = [d for d in docs if d["kind"] == "ModelGateway"]
    runners = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ModelRunner"}
    selector = gw["spec"]["runnerSelector"]["matchLabels"]
    assert gw["metadata"]["name"] == "model-runner" and "model-runner" not in runners
    assert all(selector.items() <= r["metadata"]["labels"].items() for r in runners.values())
    assert runners["on-demand"]["spec"]["autoscaling"]["minReplicas"] == 0
    served = {d["metadata"]["labels"]["runner"] for d in docs if d["kind"] == "Model"}
    assert served == set(runners)


def test_inference_pool_selects_the_runner_pods_and_reads_gauges_they_serve(
    tmp_path: Path,
) -> None:
    example = EXAMPLES / "08-inference-pool"
    docs = {(d["kind"], d["metadata"]["name"]): d for p in manifests(example)
            for d in load_documents(p)}  # fmt: skip
    runner = docs[("ModelRunner", "pool-runner")]
    pool = docs[("InferencePool", "pool-runner")]["spec"]
    pod_labels = resources.labels(runner["metadata"]["name"])
    assert pool["selector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["number"] for p in pool["targetPorts"]] == [resources.OLLAMA_PORT]
    service = docs[("Service", pool["endpointPickerRef"]["name"])]
    assert [p["port"] for p in service["spec"]["ports"]] == [9002]  # the EPP default port
    deployment = docs[("Deployment", service["metadata"]["name"])]["spec"]
    assert (
        service["spec"]["selector"].items() <= deployment["template"]["metadata"]["labels"].items()
    )
    (epp,) = deployment["template"]["spec"]["containers"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in epp["args"])
    assert flags["pool-name"] == "pool-runner" and flags["grpc-port"] == "9002"
    route = docs[("HTTPRoute", "pool-runner")]["spec"]
    (backend,) = route["rules"][0]["backendRefs"]
    assert (backend["group"], backend["kind"], backend["name"]) == (
        "inference.networking.k8s.io", "InferencePool", "pool-runner")  # fmt: skip
    # The metrics the EPP is told to read, and its defaults (vLLM's names), are served.
    read = [flags[f] for f in ("total-queued-requests-metric", "total-running-requests-metric",
                               "kv-cache-usage-percentage-metric")]  # fmt: skip
    defaults = [
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
    ]
    app = create_app(Settings(models=tmp_path, listen=[], prune=False), engine=FakeEngine())
    server = LiveServer(app).start()
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
    finally:
        server.stop()
    served = {line.split()[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert set(read + defaults) <= served


def test_gitops_paths_and_health_checks_point_at_real_things() -> None:
    gitops = EXAMPLES / "05-gitops"
    apps = [d for p in sorted((gitops / "apps").glob("*.yaml")) for d in load_documents(p)]
    declared = {(d["kind"], d["metadata"]["name"]) for d in apps}
    for path in manifests(gitops):
        for doc in load_documents(path):
            spec = doc.get("spec") or {}
            if doc["kind"] == "Application":
                source = spec["source"]
                assert (ROOT / source["path"]).is_dir(), source["path"]
                if source["path"].startswith("charts/"):
                    assert ROOT / source["path"] == CHART
                assert spec["destination"]["server"] == "https://kubernetes.default.svc"
            elif doc["kind"] == "Kustomization":
                assert (ROOT / spec["path"]).is_dir(), spec["path"]
                checks = {(c["kind"], c["name"]) for c in spec["healthChecks"]}
                assert {c[0] for c in checks} == {"Model", "ModelRunner"}
                assert checks <= declared
                assert all(
                    c["apiVersion"] == "modelrunner.io/v1alpha1" for c in spec["healthChecks"]
                )
            elif doc["kind"] == "HelmRelease":
                assert ROOT / spec["chart"]["spec"]["chart"] == CHART
    (cm,) = load_documents(gitops / "argocd" / "argocd-cm.yaml")
    assert set(cm["data"]) == {"resource.customizations.health.modelrunner.io_Model",
                               "resource.customizations.health.modelrunner.io_ModelRunner"}  # fmt: skip


def test_client_jobs_run_the_scripts_of_the_configmap() -> None:
    clients = EXAMPLES / "06-clients"
    kustomization = yaml.safe_load((clients / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    files = {Path(f).name for f in generator["files"]}
    assert files == {p.name for p in (clients / "scripts").iterdir()}
    for job_file in kustomization["resources"]:
        (job,) = load_documents(clients / job_file)
        pod = job["spec"]["template"]["spec"]
        command = pod["containers"][0]["args"][0]
        script = re.search(r"/scripts/(\S+)", command)
        assert script and script.group(1) in files, command
        assert pod["volumes"][0]["configMap"]["name"] == generator["name"]


@pytest.mark.cluster
@pytest.mark.parametrize("example", EXAMPLE_DIRS, ids=[p.name for p in EXAMPLE_DIRS])
def test_example_passes_server_side_dry_run(
    example: Path, kubectl: Kubectl, namespace: str, crds: None
) -> None:
    if (example / "kustomization.yaml").exists():
        kubectl("apply", "--dry-run=server", "-k", str(example), namespace=namespace)
        return
    checked = 0
    for path in manifests(example):
        for doc in load_documents(path):
            if foreign(doc):
                # No Argo CD / Flux CRDs on the local cluster (kubectl cannot even map the kind):
                # test_gitops_paths_and_health_checks_point_at_real_things checks these (and
                # test_inference_pool_... the InferencePool and HTTPRoute, applied with -n).
                assert doc["metadata"]["name"] and doc["spec"]
                if example.name == "05-gitops":
                    assert doc["metadata"]["namespace"]
                continue
            if doc.get("metadata", {}).get("namespace"):  # e.g. argocd-cm in namespace argocd
                doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
            result = kubectl("apply", "--dry-run=server", "-f", "-", input=doc,
                             namespace=namespace, check=False)  # fmt: skip
            assert result.returncode == 0, f"{path.relative_to(ROOT)}: {result.stderr}"
            checked += 1
    if example.name != "05-gitops":
        assert checked, example
