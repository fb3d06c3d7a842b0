"""pytest plugin: a Kubernetes test cluster for tests that need one.

Register it with ``pytest_plugins = ["tests.support.cluster"]``. It provides:

- ``kube_cluster`` (session): a reachable cluster. A working ``KUBECONFIG`` is
  used as is; otherwise ``hack/cluster.sh up`` starts the local cluster (building
  its binaries on first use) and ``KUBECONFIG`` is set to ``.cluster/kubeconfig``.
  A cluster that a pytest session started is stopped by the last session using
  it, unless ``MODELRUNNER_KEEP_CLUSTER=1`` (then the next session reuses it at
  once); one started by hand (``make cluster``) is left running.
- ``kubectl``: a :class:`Kubectl` bound to that cluster.
- ``namespace``: a fresh namespace per test, deleted afterwards.
- ``gpu_nodes``: names of the fake GPU nodes; skips the test when there are none.
- :func:`wait_for`: poll a predicate until it holds or a deadline passes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO_ROOT / "hack" / "cluster.sh"
CLUSTER_DIR = Path(os.environ.get("MODELRUNNER_CLUSTER_DIR", REPO_ROOT / ".cluster"))
LOCAL_KUBECONFIG = CLUSTER_DIR / "kubeconfig"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_TOLERATION = {
    "key": "nvidia.com/gpu",
    "operator": "Exists",
    "effect": "NoSchedule",
}
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"

# `up` may have to build everything first (about 20 minutes on 2 cores).
UP_TIMEOUT = float(os.environ.get("MODELRUNNER_CLUSTER_UP_TIMEOUT", 3600))

T = TypeVar("T")


# --------------------------------------------------------------------------- waiting


class WaitTimeout(AssertionError):
    """A :func:`wait_for` deadline passed."""


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.5,
    message: str | Callable[[], str] = "condition",
    ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy; return that value.

    Raises :class:`WaitTimeout` (an AssertionError) naming ``message`` and the
    last value (or ignored exception) once ``timeout`` seconds have passed.
    Exceptions of the types in ``ignore`` count as "not yet"; others propagate.
    ``message`` may be a callable, evaluated only on timeout (to add state).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except ignore as exc:
            last = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = message() if callable(message) else message
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {text}; last: {last!r}")
        time.sleep(min(interval, remaining))


# --------------------------------------------------------------------------- kubectl


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; ``str()`` includes its stderr."""

    def __str__(self) -> str:
        cmd = " ".join(self.cmd) if isinstance(self.cmd, (list, tuple)) else self.cmd
        return f"{cmd!r} exited {self.returncode}: {(self.stderr or '').strip()}"


Manifest = str | dict[str, Any] | Sequence[dict[str, Any]]


def _manifest_text(manifest: Manifest) -> str:
    if isinstance(manifest, str):
        return manifest
    if isinstance(manifest, dict):
        return json.dumps(manifest)
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifest)})


def find_binary(name: str) -> str | None:
    """kubectl/helm: .cluster/bin, then the build cache, then PATH."""
    local = CLUSTER_DIR / "bin" / name
    if local.exists():
        return str(local)
    proc = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "path", name], capture_output=True, text=True, check=False
    )
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.strip()
    return shutil.which(name)


@dataclass
class Kubectl:
    """Runs kubectl against one kubeconfig.

    ``kubectl("get", "pods", "-n", ns)`` returns the CompletedProcess (text);
    with ``check=True`` (the default) a non-zero exit raises :class:`KubectlError`
    carrying stderr. ``input`` may be YAML/JSON text, a dict or a list of dicts.
    """

    kubeconfig: str
    binary: str = field(default_factory=lambda: find_binary("kubectl") or "kubectl")
    default_timeout: float = 60.0

    def __call__(
        self,
        *args: str,
        check: bool = True,
        input: Manifest | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, "--kubeconfig", self.kubeconfig]
        if namespace:
            cmd += ["--namespace", namespace]
        cmd += [str(a) for a in args]
        proc = subprocess.run(
            cmd,
            input=None if input is None else _manifest_text(input),
            capture_output=True,
            text=True,
            timeout=timeout or self.default_timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def json(self, *args: str, namespace: str | None = None, **kwargs: Any) -> Any:
        """``kubectl <args> -o json``, parsed."""
        proc = self(*args, "-o", "json", namespace=namespace, **kwargs)
        return json.loads(proc.stdout)

    def apply(
        self, manifest: Manifest, namespace: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self("apply", "-f", "-", input=manifest, namespace=namespace, check=check)

    def create(
        self, manifest: Manifest, namespace: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self("create", "-f", "-", input=manifest, namespace=namespace, check=check)

    def exists(self, *args: str, namespace: str | None = None) -> bool:
        """True if ``kubectl get <args>`` finds the object, False on NotFound."""
        proc = self("get", *args, "-o", "name", namespace=namespace, check=False)
        if proc.returncode == 0:
            return True
        if "NotFound" in proc.stderr or "not found" in proc.stderr:
            return False
        raise KubectlError(proc.returncode, [self.binary, "get", *args], proc.stdout, proc.stderr)


def run_kubectl(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """kubectl with the current ``KUBECONFIG`` (else .cluster/kubeconfig)."""
    kubeconfig = os.environ.get("KUBECONFIG") or str(LOCAL_KUBECONFIG)
    return Kubectl(kubeconfig)(*args, **kwargs)


# --------------------------------------------------------------------------- cluster


@dataclass
class KubeCluster:
    kubeconfig: str
    kubectl: Kubectl
    #: True when KUBECONFIG named some other cluster than hack/cluster.sh's.
    external: bool
    #: True when this session ran `hack/cluster.sh up` that started it.
    started_here: bool

    @property
    def helm(self) -> str | None:
        return find_binary("helm")

    def gpu_nodes(self) -> list[str]:
        """Ready kwok nodes that offer nvidia.com/gpu."""
        nodes = self.kubectl.json("get", "nodes", "-l", "nvidia.com/gpu.present=true")["items"]
        names = []
        for node in nodes:
            meta, status = node["metadata"], node.get("status", {})
            if (meta.get("annotations") or {}).get(KWOK_NODE_ANNOTATION) != "fake":
                continue
            if int((status.get("allocatable") or {}).get(GPU_RESOURCE, "0")) <= 0:
                continue
            ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
            if ready and ready[0]["status"] == "True":
                names.append(meta["name"])
        return sorted(names)


def _reachable(kubeconfig: str, binary: str | None) -> bool:
    if not binary:
        return False
    try:
        proc = subprocess.run(
            [binary, "--kubeconfig", kubeconfig, "--request-timeout=5s", "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _same_file(a: str, b: Path) -> bool:
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:
        return False


def _cluster_script(*args: str, timeout: float) -> None:
    # Output goes to the (captured) terminal: pytest shows it if setup fails.
    proc = subprocess.run(["bash", str(CLUSTER_SCRIPT), *args], timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"hack/cluster.sh {' '.join(args)} failed (exit {proc.returncode}); "
            f"see the output above and the logs in {CLUSTER_DIR / 'logs'}"
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs a Kubernetes cluster (hack/cluster.sh or KUBECONFIG)"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the cluster binaries before any test runs, when a test needs them.

    A cold build takes about 20 minutes; done here it is not charged to the first
    test's setup (and its pytest-timeout).
    """
    if session.config.option.collectonly:
        return
    if not any("kube_cluster" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    env_kubeconfig = os.environ.get("KUBECONFIG")
    if env_kubeconfig and _reachable(env_kubeconfig, find_binary("kubectl")):
        return
    _cluster_script("build", timeout=UP_TIMEOUT)


# Pytest sessions sharing the local cluster (other terminals, xdist workers) each
# hold a lease file named after their pid in .cluster/run/sessions/. The cluster
# is stopped by the last session to leave, and only if a pytest session started
# it (a cluster from `hack/cluster.sh up` / `make cluster` is left running).
SESSIONS_DIR = CLUSTER_DIR / "run" / "sessions"
STARTED_BY_PYTEST = CLUSTER_DIR / "run" / "started-by-pytest"
_SESSIONS_LOCK = Path(
    os.environ.get("TMPDIR", "/tmp"),
    "modelrunner-cluster-sessions-"
    + hashlib.sha256(str(CLUSTER_DIR).encode()).hexdigest()[:12]
    + ".lock",
)


@contextlib.contextmanager
def _sessions_lock() -> Iterator[None]:
    with _SESSIONS_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _other_live_sessions() -> list[int]:
    if not SESSIONS_DIR.is_dir():
        return []
    pids = [int(p.name) for p in SESSIONS_DIR.iterdir() if p.name.isdigit()]
    return [pid for pid in pids if pid != os.getpid() and _pid_alive(pid)]


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    env_kubeconfig = os.environ.get("KUBECONFIG")
    if (
        env_kubeconfig
        and not _same_file(env_kubeconfig, LOCAL_KUBECONFIG)
        and _reachable(env_kubeconfig, find_binary("kubectl"))
    ):
        yield KubeCluster(
            kubeconfig=env_kubeconfig,
            kubectl=Kubectl(env_kubeconfig),
            external=True,
            started_here=False,
        )
        return

    lease = SESSIONS_DIR / str(os.getpid())
    with _sessions_lock():
        already_up = LOCAL_KUBECONFIG.exists() and _reachable(
            str(LOCAL_KUBECONFIG), find_binary("kubectl")
        )
        _cluster_script("up", timeout=UP_TIMEOUT)
        SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
        lease.touch()
        if not already_up:
            STARTED_BY_PYTEST.touch()
    os.environ["KUBECONFIG"] = str(LOCAL_KUBECONFIG)
    try:
        yield KubeCluster(
            kubeconfig=str(LOCAL_KUBECONFIG),
            kubectl=Kubectl(str(LOCAL_KUBECONFIG)),
            external=False,
            started_here=not already_up,
        )
    finally:
        if env_kubeconfig is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = env_kubeconfig
        keep = os.environ.get("MODELRUNNER_KEEP_CLUSTER", "") not in ("", "0", "false")
        with _sessions_lock():
            lease.unlink(missing_ok=True)
            if not keep and STARTED_BY_PYTEST.exists() and not _other_live_sessions():
                _cluster_script("down", timeout=120)


@pytest.fixture
def kubectl(kube_cluster: KubeCluster) -> Kubectl:
    return kube_cluster.kubectl


def _namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", nodeid.rsplit("::", 1)[-1].lower()).strip("-")
    return f"t-{base[:40].strip('-')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount), deleted after the test."""
    name = _namespace_name(request.node.nodeid)
    kubectl.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"modelrunner.io/test": "true"}},
        }
    )
    try:
        # Pods are refused until the controller manager made the default account.
        wait_for(
            lambda: kubectl.exists("serviceaccount", "default", namespace=name),
            timeout=30,
            message=f"ServiceAccount default in namespace {name}",
        )
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def gpu_nodes(kube_cluster: KubeCluster) -> list[str]:
    """Names of the fake (kwok) GPU nodes; skips when the cluster has none."""
    nodes = kube_cluster.gpu_nodes()
    if not nodes:
        where = "external KUBECONFIG" if kube_cluster.external else "local cluster"
        pytest.skip(
            f"the {where} has no Ready kwok GPU nodes (annotation {KWOK_NODE_ANNOTATION}=fake, "
            f"label nvidia.com/gpu.present=true, allocatable {GPU_RESOURCE}); "
            "these tests need hack/cluster.sh's fake GPU nodes"
        )
    return nodes
