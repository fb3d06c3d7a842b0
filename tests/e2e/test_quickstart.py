"""examples/01-quickstart end to end, with the operator running under the Helm chart's RBAC.

The chart is installed for one namespace (a Role, a KopfPeering); the operator runs as a local
process authenticated with a token of the chart's ServiceAccount, with peering on, as the
Deployment's pod would. What this test substitutes, because pods on the local cluster's kwok nodes
run no containers and no registry outside the machine is reachable:

- the ModelRunner is in external mode, pointing at a real runner on loopback (not a StatefulSet);
- ``ai/smollm2`` is a tiny random-weight GGUF that a runner pushed to a local docker-registry under
  ``<registry>/ai/smollm2`` (so the Model's source gets that host prefix and ``insecure: true``);
- the client Job's curl command, and the scripts of examples/06-clients, run on this machine with
  ``http://model-runner`` replaced by the runner's address.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.e2e.argocd import health
from tests.e2e.conftest import (
    CHART,
    EXAMPLES,
    OperatorProcess,
    helm,
    load_documents,
    service_account_kubeconfig,
    wait_healthy,
)
from tests.operator.conftest import RestartableRunner
from tests.support.cluster import Kubectl, wait_for
from tests.support.registry import Registry, run_registry
from tests.support.server import LiveServer
from tests.support.tiny_model import write_tiny_gguf

pytestmark = [pytest.mark.cluster, pytest.mark.registry]
QUICKSTART = EXAMPLES / "01-quickstart"
CLIENTS = EXAMPLES / "06-clients" / "scripts"


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str]]:
    """A local registry holding a tiny model as <registry>/ai/smollm2:latest, pushed by a runner."""
    work = tmp_path_factory.mktemp("registry")
    with run_registry(work) as registry:
        ref = f"{registry.host}/ai/smollm2:latest"
        server = LiveServer(create_app(Settings(models=work / "seed", listen=[], prune=False)))
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                upload_and_create(client, write_tiny_gguf(work / "smollm2.gguf"), ref)
                push = client.post(
                    "/api/push", json={"model": ref, "insecure": True, "stream": False}
                )
                assert push.status_code == 200, push.text
        finally:
            server.stop()
        yield registry, f"{registry.host}/ai/smollm2"


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[RestartableRunner]:
    server = RestartableRunner(tmp_path / "runner-store").start()
    yield server
    server.stop()


def adapted_quickstart(runner_url: str, source: str) -> list[dict[str, Any]]:
    """runner.yaml and model.yaml of the example, with the two local substitutions."""
    (runner,) = load_documents(QUICKSTART / "runner.yaml")
    (model,) = load_documents(QUICKSTART / "model.yaml")
    assert (runner["metadata"]["name"], model["metadata"]["name"]) == ("model-runner", "smollm2")
    assert model["spec"] == {"source": "ai/smollm2"}
    runner = copy.deepcopy(runner)
    runner["spec"] = {"external": {"url": runner_url}}
    model = copy.deepcopy(model)
    model["spec"] = {"source": source, "insecure": True}
    return [runner, model]


def job_script(path: Path) -> str:
    (job,) = load_documents(path)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sh", "-c"]
    return str(container["args"][0])


def run(cmd: list[str], env: dict[str, str], timeout: float = 120) -> str:
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_quickstart_is_ready_under_the_charts_rbac(
    kubectl: Kubectl, namespace: str, crds: None, tmp_path: Path, runner: RestartableRunner,
    smollm2: tuple[Registry, str], operator_process: list[OperatorProcess],
) -> None:  # fmt: skip
    release = f"mro-{uuid.uuid4().hex[:6]}"
    fullname = f"{release}-model-runner-operator"
    helm("install", release, str(CHART), "--namespace", namespace,
         "--set", f"watchNamespaces={{{namespace}}}", kubeconfig=kubectl.kubeconfig)  # fmt: skip
    try:
        assert kubectl.exists("role", fullname, namespace=namespace)
        assert kubectl.exists("kopfpeering", "modelrunner", namespace=namespace)

        # -- the operator, as the chart's ServiceAccount --------------------------------------
        sa_config = service_account_kubeconfig(kubectl, namespace, fullname, tmp_path / "sa.yaml")
        whoami = kubectl("--kubeconfig", str(sa_config), "auth", "whoami", "-o", "json")
        assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == (
            f"system:serviceaccount:{namespace}:{fullname}")  # fmt: skip
        op = OperatorProcess(sa_config, ["--namespace", namespace], tmp_path / "operator.log")
        operator_process.append(op.start())
        wait_healthy(op)

        # -- the quickstart ---------------------------------------------------------------------
        _, source = smollm2
        kubectl.apply(adapted_quickstart(runner.url, source), namespace=namespace)
        kubectl("wait", "--for=condition=Ready", "modelrunner/model-runner", "model/smollm2",
                "--timeout=120s", namespace=namespace, timeout=130)  # fmt: skip
        assert {"smollm2:latest", f"{source}:latest"} <= runner.names()
        model = kubectl.json("get", "model", "smollm2", namespace=namespace)
        assert model["status"]["phase"] == "Ready"
        assert "modelrunner.io/finalizer" in model["metadata"]["finalizers"]
        service = kubectl.json("get", "service", "model-runner", namespace=namespace)
        assert sorted(p["port"] for p in service["spec"]["ports"]) == [80, 11434, 12434]

        # Argo CD's health checks on the live objects.
        assert health("Model", model)["status"] == "Healthy"
        live_runner = kubectl.json("get", "modelrunner", "model-runner", namespace=namespace)
        assert health("ModelRunner", live_runner)["status"] == "Healthy"

        # Peering through the chart's KopfPeering: the operator's keep-alive is in its status.
        peering = kubectl.json("get", "kopfpeering", "modelrunner", namespace=namespace)
        assert len(peering.get("status") or {}) == 1, peering

        # -- the client Job's command, then the clients of examples/06-clients --------------------
        script = job_script(QUICKSTART / "client-job.yaml").replace(
            "http://model-runner", runner.url
        )
        reply = json.loads(run(["sh", "-c", script], {}))
        assert (
            reply["object"] == "chat.completion"
            and reply["choices"][0]["message"]["role"] == "assistant"
        )
        env = {"MODEL": "smollm2", "OLLAMA_HOST": runner.url, "MODEL_RUNNER_URL": runner.url,
               "OPENAI_BASE_URL": f"{runner.url}/engines/v1", "OPENAI_API_KEY": "unused"}  # fmt: skip
        out = run([sys.executable, str(CLIENTS / "ollama_client.py")], env)
        assert "smollm2:latest" in out and "chat:" in out and "stream:" in out
        out = run([sys.executable, str(CLIENTS / "openai_client.py")], env)
        assert "smollm2" in out and "chat:" in out and "stream:" in out
        out = run(["sh", str(CLIENTS / "dmr_client.sh")], env)
        assert "smollm2" in out and "chat.completion" in out

        # -- examples/02-gpu-runner in pod mode, under the same identity: StatefulSet, Services,
        # pods. Its store is an emptyDir (the test cluster has no volume provisioner) and it
        # selects no Model, so the operator never calls its pods' (fake, unroutable) addresses.
        (gpu,) = load_documents(EXAMPLES / "02-gpu-runner" / "runner.yaml")
        gpu["spec"]["storage"] = {"ephemeral": True}
        gpu["spec"]["modelSelector"] = {"matchLabels": {"runner": "gpu-runner"}}
        kubectl.apply(gpu, namespace=namespace)
        kubectl("wait", "--for=condition=Ready", "modelrunner/gpu-runner", "--timeout=120s",
                namespace=namespace, timeout=130)  # fmt: skip
        pods = kubectl.json("get", "pods", "-l", "app.kubernetes.io/instance=gpu-runner",
                            namespace=namespace)["items"]  # fmt: skip
        assert len(pods) == 2 and all(p["spec"]["nodeName"].startswith("gpu-node-") for p in pods)
        assert kubectl.exists("statefulset", "gpu-runner", namespace=namespace)

        # -- deletion goes through the finalizer, under the same identity -------------------------
        kubectl("delete", "model", "smollm2", "--wait=false", namespace=namespace)
        wait_for(lambda: not kubectl.exists("model", "smollm2", namespace=namespace), timeout=60,
                 message=lambda: "Model deleted: " + kubectl("get", "model", "smollm2", "-o", "yaml",
                                                            namespace=namespace, check=False).stdout)  # fmt: skip
        wait_for(
            lambda: "smollm2:latest" not in runner.names(), timeout=30, message="model removed"
        )

        logs = op.logs()
        assert "Forbidden" not in logs, logs[-3000:]
        assert "Not enough permissions" not in logs, logs[-3000:]
    finally:
        for op in operator_process:
            op.stop()
        helm("uninstall", release, "--namespace", namespace, "--wait=false",
             kubeconfig=kubectl.kubeconfig, check=False)  # fmt: skip
