"""End-to-end tests of what users install: the Helm chart, the examples, `make up`.

Shared helpers: the repository's CRDs on the cluster, YAML loading, the operator as a subprocess
with a chosen kubeconfig (for example one holding the chart's ServiceAccount token), and a
kubeconfig for a ServiceAccount.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster import KubeCluster, Kubectl, find_binary, wait_for
from tests.support.processes import stop_process
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "model-runner-operator"
EXAMPLES = ROOT / "examples"
CRD_NAMES = (
    "models.modelrunner.io",
    "modelrunners.modelrunner.io",
    "modelgateways.modelrunner.io",
    "kopfpeerings.kopf.dev",
    "clusterkopfpeerings.kopf.dev",
)


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every YAML document of a file that is an object (skips empty documents)."""
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if isinstance(doc, dict)]


def helm_binary() -> str:
    helm = find_binary("helm")
    if helm is None:
        pytest.skip("helm is not built yet (hack/cluster.sh build)")
    return helm


def helm(*args: str, kubeconfig: str | None = None, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cmd = [helm_binary(), *args]
    if kubeconfig:
        cmd += ["--kubeconfig", kubeconfig]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def crds(kube_cluster: KubeCluster) -> None:
    """crds/ applied (server-side, so concurrent sessions do not fight) and established."""
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for name in CRD_NAMES:
        kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", timeout=60)


def service_account_kubeconfig(kubectl: Kubectl, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ``account`` with a bound token from the
    TokenRequest API: the identity an in-cluster pod of that account has."""
    token = kubectl("create", "token", account, "--duration=2h", namespace=namespace).stdout.strip()
    admin = yaml.safe_load(Path(kubectl.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster["cluster"]}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": "sa",
                "context": {"cluster": "cluster", "user": account, "namespace": namespace},
            }
        ],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class OperatorProcess:
    """``modeloperator`` as a subprocess, with its health endpoint on a free loopback port."""

    kubeconfig: Path
    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    health_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    def start(self) -> OperatorProcess:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig),
                   MODELOPERATOR_RECONCILE_INTERVAL="1", MODELOPERATOR_PROGRESS_INTERVAL="0.2",
                   **self.env)  # fmt: skip
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modeloperator.cli", *self.args,
                 "--liveness", self.health_url],
                env=env, stdout=handle, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    def stop(self) -> None:
        stop_process(self.process, timeout=30)
        self.process = None

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def operator_process() -> Iterator[list[OperatorProcess]]:
    """Operators a test starts; all are stopped afterwards."""
    started: list[OperatorProcess] = []
    yield started
    for op in started:
        op.stop()


def wait_healthy(op: OperatorProcess, timeout: float = 60) -> None:
    import httpx

    def healthy() -> bool:
        assert op.process is not None and op.process.poll() is None, op.logs()[-3000:]
        return httpx.get(op.health_url, timeout=2).status_code == 200

    wait_for(healthy, timeout=timeout, ignore=(httpx.HTTPError,), message="operator /healthz")
