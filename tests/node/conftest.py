"""Fixtures for runner pods on the real node: a model in the cluster's registry, the operator
installed by the chart from the image built here, and the example manifests adapted to both."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.e2e.conftest import CHART, EXAMPLES, crds, helm, load_documents
from tests.support.cluster import Kubectl
from tests.support.node import Images, RealNode
from tests.support.server import LiveServer
from tests.support.tiny_model import write_tiny_gguf

__all__ = ["crds"]  # a fixture, shared with tests/e2e
QUICKSTART = EXAMPLES / "01-quickstart"
CLIENTS = EXAMPLES / "06-clients"


@pytest.fixture(scope="session")
def cluster_model(real_node: RealNode, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny model in the cluster's registry as <registry>/ai/smollm2:latest, pushed by a runner
    on the host (the registry is the one the node's pods pull from)."""
    work = tmp_path_factory.mktemp("cluster-model")
    ref = f"{real_node.registry}/ai/smollm2:latest"
    server = LiveServer(create_app(Settings(models=work / "seed", listen=[], prune=False)))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            upload_and_create(client, write_tiny_gguf(work / "smollm2.gguf"), ref)
            push = client.post("/api/push", json={"model": ref, "insecure": True, "stream": False})
            assert push.status_code == 200, push.text
    finally:
        server.stop()
    return f"{real_node.registry}/ai/smollm2"


def split_image(ref: str) -> tuple[str, str]:
    repository, _, tag = ref.rpartition(":")
    assert "/" not in tag, ref
    return repository, tag


@pytest.fixture
def operator_release(
    kubectl: Kubectl, namespace: str, local_images: Images, crds: None
) -> Iterator[str]:
    """The chart installed in the test's namespace with the operator image built here; returns
    the operator Deployment's name once it has rolled out."""
    release = f"mro-{uuid.uuid4().hex[:6]}"
    repository, tag = split_image(local_images.operator)
    helm("install", release, str(CHART), "--namespace", namespace,
         "--set", f"watchNamespaces={{{namespace}}}",
         "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
         "--set", f"operator.runnerImage={local_images.runner}",
         "--set", "operator.reconcileInterval=10",
         kubeconfig=kubectl.kubeconfig)  # fmt: skip
    fullname = f"{release}-model-runner-operator"
    try:
        kubectl("rollout", "status", f"deployment/{fullname}", "--timeout=300s",
                namespace=namespace, timeout=310)  # fmt: skip
        yield fullname
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait=false",
             kubeconfig=kubectl.kubeconfig, check=False)  # fmt: skip


def quickstart(source: str) -> list[dict[str, Any]]:
    """runner.yaml and model.yaml of examples/01-quickstart; the model comes from the cluster's
    registry instead of Docker Hub (the only substitution)."""
    (runner,) = load_documents(QUICKSTART / "runner.yaml")
    (model,) = load_documents(QUICKSTART / "model.yaml")
    assert model["spec"] == {"source": "ai/smollm2"}
    model = copy.deepcopy(model)
    model["spec"] = {"source": source, "insecure": True}
    return [runner, model]


def client_jobs(images: Images) -> list[dict[str, Any]]:
    """examples/01-quickstart's curl Job and the three Jobs of examples/06-clients, on the clients
    image built here (no registry outside the machine; packages preinstalled, so no pip)."""
    jobs = load_documents(QUICKSTART / "client-job.yaml")
    for name in ("ollama-job.yaml", "openai-job.yaml", "dmr-job.yaml"):
        jobs += load_documents(CLIENTS / name)
    out = []
    for job in copy.deepcopy(jobs):
        container = job["spec"]["template"]["spec"]["containers"][0]
        container["image"] = images.clients
        script = container["args"][0]
        if "pip install" in script:
            container["args"] = [script.split("&&", 1)[1].strip()]
        out.append(job)
    return out


def client_scripts() -> dict[str, Any]:
    files = {p.name: p.read_text() for p in sorted((CLIENTS / "scripts").iterdir())}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "model-clients"},
            "data": files}  # fmt: skip
