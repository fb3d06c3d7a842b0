"""Operator tests: the local cluster, the real registry, real runner processes, and the operator
itself as a subprocess (so it can be killed and restarted like in production)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.support.cluster import KubeCluster, Kubectl
from tests.support.processes import ChildProcess
from tests.support.registry import Registry, run_registry
from tests.support.server import LiveServer, free_port
from tests.support.tiny_model import write_tiny_gguf

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = "1"


@pytest.fixture(scope="session")
def crds(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for name in (
        "models.modelrunner.io",
        "modelrunners.modelrunner.io",
        "modelgateways.modelrunner.io",
    ):
        kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", timeout=60)


@dataclass
class SeededRegistry:
    registry: Registry
    v1: str  # references of two different tiny models
    v2: str
    digests: dict[str, str]


@pytest.fixture(scope="module")
def seeded_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededRegistry]:
    """docker-registry on loopback holding team/tiny:v1 and team/tiny:v2, pushed by a runner."""
    work = tmp_path_factory.mktemp("registry")
    with run_registry(work) as registry:
        host = registry.url.removeprefix("http://")
        refs = {tag: f"{host}/team/tiny:{tag}" for tag in ("v1", "v2")}
        settings = Settings(models=work / "seed", listen=[], prune=False)
        server = LiveServer(create_app(settings)).start()
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for seed, (tag, ref) in enumerate(refs.items()):
                    upload_and_create(client, write_tiny_gguf(work / f"{tag}.gguf", seed=seed), ref)
                    push = client.post(
                        "/api/push", json={"model": ref, "insecure": True, "stream": False}
                    )
                    assert push.status_code == 200, push.text
        finally:
            server.stop()
        digests = {
            tag: registry.manifest("team/tiny", tag).headers["Docker-Content-Digest"]
            for tag in refs
        }
        yield SeededRegistry(registry, refs["v1"], refs["v2"], digests)


class RestartableRunner:
    """A runner process on a fixed loopback port that a test can stop and start again."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: LiveServer | None = None

    def start(self) -> RestartableRunner:
        settings = Settings(models=self.store, listen=[], prune=False)
        self.server = LiveServer(create_app(settings), port=self.port).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def names(self) -> set[str]:
        models = httpx.get(f"{self.url}/api/tags", timeout=10).json()["models"]
        return {m["name"] for m in models}

    def show(self, name: str) -> httpx.Response:
        return httpx.post(f"{self.url}/api/show", json={"model": name}, timeout=10)


@pytest.fixture
def runner_process(tmp_path: Path) -> Iterator[RestartableRunner]:
    runner = RestartableRunner(tmp_path / "runner-store").start()
    yield runner
    runner.stop()


class Operator(ChildProcess):
    """The operator as a subprocess, which ``kill`` ends as a node loss would."""

    def __init__(self, kubeconfig: str, namespace: str, log: Path, env: dict[str, str]) -> None:
        self.kubeconfig, self.namespace, self.log, self.env = kubeconfig, namespace, log, env

    def start(self) -> Operator:
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, MODELOPERATOR_RECONCILE_INTERVAL=INTERVAL,
                   MODELOPERATOR_PROGRESS_INTERVAL="0.2")  # fmt: skip
        env.update(self.env)  # a test may override the defaults above
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modeloperator.cli", "--standalone", "--namespace", self.namespace],
            env=env, stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def operator_factory(
    kube_cluster: KubeCluster, crds: None, namespace: str, tmp_path: Path
) -> Iterator[Any]:
    started: list[Operator] = []

    def start(**env: str) -> Operator:
        op = Operator(kube_cluster.kubeconfig, namespace, tmp_path / "operator.log", env).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


def status_of(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any]:
    obj = kubectl.json("get", kind, name, namespace=namespace)
    status: dict[str, Any] = obj.get("status") or {}
    return status


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def wait_ready(kubectl: Kubectl, kind: str, name: str, namespace: str, timeout: float = 90) -> None:
    kubectl("wait", "--for=condition=Ready", f"{kind}/{name}", f"--timeout={int(timeout)}s",
            namespace=namespace, timeout=timeout + 10)  # fmt: skip


def model(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelrunner.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": spec,
    }


def external_runner(name: str, url: str) -> dict[str, Any]:
    return {"apiVersion": "modelrunner.io/v1alpha1", "kind": "ModelRunner",
            "metadata": {"name": name}, "spec": {"external": {"url": url}}}  # fmt: skip
