"""Operator chaos on a private cluster (never the shared one): the operator SIGKILLed and
restarted, the API server and etcd SIGKILLed and started again with the same arguments, the
runner process stopped and started, at random moments while Models are created, their sources
edited and deleted. After every round the system must converge: each Model Ready with its
source's digest, the runner holding exactly the names of the live Models and their sources, every
deleted Model gone (no delete lost), and no more pulls than the changes needed plus one retry per
interrupted one (no duplicate pull). Used by bench/reliability.py and tests/reliability."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.cluster import Kubectl
from tests.support.processes import ChildProcess
from tests.support.runner_process import RunnerProcess
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "chaos"
DISRUPTIONS = ("operator", "apiserver", "etcd", "runner")


class PrivateCluster:
    """``hack/cluster.sh up`` in its own directory on free ports, without the real node."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.env = dict(
            os.environ, MODELRUNNER_CLUSTER_DIR=str(directory), MODELRUNNER_REAL_NODE="0"
        )
        for name in ("ETCD", "ETCD_PEER", "APISERVER", "KCM", "SCHEDULER"):
            self.env[f"CLUSTER_{name}_PORT"] = str(free_port())
        self.env.pop("KUBECONFIG", None)
        self.kubeconfig = str(directory / "kubeconfig")
        self.kubectl = Kubectl(self.kubeconfig)
        self.children: dict[str, subprocess.Popen[bytes]] = {}  # components restarted here

    def _script(self, command: str) -> None:
        subprocess.run([str(ROOT / "hack" / "cluster.sh"), command], env=self.env, check=True,
                       timeout=600, capture_output=True)  # fmt: skip

    def up(self) -> PrivateCluster:
        self._script("up")
        return self

    def down(self) -> None:
        self._script("down")

    def restart(self, component: str) -> None:
        """SIGKILL one control-plane process and start it again with its own arguments."""
        pid_file = self.directory / "run" / f"{component}.pid"
        pid = int(pid_file.read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        os.kill(pid, signal.SIGKILL)
        if component in self.children:  # our own child from an earlier restart: reap it
            self.children.pop(component).wait(timeout=30)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                break
            time.sleep(0.05)
        log = self.directory / "logs" / f"{component}.log"
        for attempt in range(2):  # once more if it does not come up (seen once under load)
            with log.open("ab") as out:
                process = subprocess.Popen([a.decode() for a in argv], stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            self.children[component] = process
            pid_file.write_text(str(process.pid))
            try:
                self.wait_ready(timeout=60 * (attempt + 1))
                return
            except RuntimeError:
                process.kill()
                process.wait(timeout=30)
        tail = log.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{component} did not come back after a restart:\n{tail}")

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0:
                    return
            time.sleep(0.3)
        raise RuntimeError("the private cluster's API server did not come back")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return True


class OperatorProcess(ChildProcess):
    """The operator on the private cluster; ``kill`` (SIGKILL) and ``stop`` as ChildProcess."""

    def __init__(self, kubeconfig: str, log: Path) -> None:
        self.kubeconfig, self.log = kubeconfig, log

    def start(self) -> None:
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, MODELOPERATOR_RECONCILE_INTERVAL="1",
                   MODELOPERATOR_PROGRESS_INTERVAL="0.2")  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modeloperator.cli", "--standalone", "--namespace", NAMESPACE],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip


@dataclass
class ChaosResult:
    rounds: int = 0
    converged: int = 0
    disruptions: dict[str, int] = field(default_factory=dict)
    creates: int = 0
    edits: int = 0
    deletes: int = 0
    pulls: int = 0
    pulls_allowed: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    converge_seconds: list[float] = field(default_factory=list)


def _model(name: str, source: str) -> dict[str, Any]:
    return {"apiVersion": "modelrunner.io/v1alpha1", "kind": "Model", "metadata": {"name": name},
            "spec": {"source": source, "insecure": True}}  # fmt: skip


class Chaos:
    def __init__(self, cluster: PrivateCluster, runner: RunnerProcess, operator: OperatorProcess,
                 sources: dict[str, str], digests: dict[str, str], seed: int) -> None:  # fmt: skip
        self.cluster, self.runner, self.operator = cluster, runner, operator
        self.sources, self.digests = sources, digests  # tag -> reference, tag -> digest
        self.rng = random.Random(seed)
        self.kubectl = cluster.kubectl
        self.live: dict[str, str] = {}  # model name -> tag
        self.deleted: set[str] = set()
        self.result = ChaosResult()
        self.counter = 0

    def setup(self) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        for crd in ("models.modelrunner.io", "modelrunners.modelrunner.io"):
            self.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        self.kubectl("create", "namespace", NAMESPACE)
        runner = {"apiVersion": "modelrunner.io/v1alpha1", "kind": "ModelRunner",
                  "metadata": {"name": "model-runner"},
                  "spec": {"external": {"url": self.runner.url}}}  # fmt: skip
        self.kubectl.apply(runner, namespace=NAMESPACE)
        self.operator.start()

    def _pulls(self) -> int:
        return self.runner.log.read_text(errors="replace").count('"POST /api/pull ')

    def _actions(self) -> list[Callable[[], None]]:
        actions: list[Callable[[], None]] = []
        for _ in range(self.rng.randint(1, 3)):
            choice = self.rng.random()
            if choice < 0.45 or len(self.live) < 2:
                self.counter += 1
                name, tag = f"m{self.counter}", self.rng.choice(sorted(self.sources))
                self.live[name] = tag
                self.result.creates += 1
                actions.append(functools.partial(self._apply, name, tag))
            elif choice < 0.75:
                name = self.rng.choice(sorted(self.live))
                tag = next(t for t in sorted(self.sources) if t != self.live[name])
                self.live[name] = tag
                self.result.edits += 1
                actions.append(functools.partial(self._apply, name, tag))
            else:
                name = self.rng.choice(sorted(self.live))
                del self.live[name]
                self.deleted.add(name)
                self.result.deletes += 1
                actions.append(functools.partial(self._delete, name))
        return actions

    def _apply(self, name: str, tag: str) -> None:
        self._retry(
            lambda: self.kubectl.apply(_model(name, self.sources[tag]), namespace=NAMESPACE)
        )

    def _delete(self, name: str) -> None:
        self._retry(lambda: self.kubectl("delete", "model", name, "--wait=false",
                                         "--ignore-not-found", namespace=NAMESPACE))  # fmt: skip

    @staticmethod
    def _retry(call: Callable[[], object]) -> None:
        """A kubectl call while the API server may be restarting: tried until it goes through."""
        deadline = time.monotonic() + 120
        while True:
            try:
                call()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _disrupt(self, kind: str) -> None:
        self.result.disruptions[kind] = self.result.disruptions.get(kind, 0) + 1
        if kind == "operator":
            self.operator.kill()
            time.sleep(self.rng.uniform(0, 1))
            self.operator.start()
        elif kind == "apiserver":
            self.cluster.restart("kube-apiserver")
        elif kind == "etcd":
            self.cluster.restart("etcd")
        else:
            self.runner.kill()
            time.sleep(self.rng.uniform(0, 2))
            self.runner.start()

    def round(self, index: int) -> None:
        before = self._pulls()
        needed = 0
        for action in self._actions():
            action()
            needed += 1
        kind = DISRUPTIONS[index % len(DISRUPTIONS)]
        time.sleep(self.rng.uniform(0, 1.5))
        problems: list[str] = []
        try:
            self._disrupt(kind)
        except RuntimeError as exc:  # reported, and the round still has to converge
            problems.append(str(exc)[:600])
        started = time.monotonic()
        problems += self._converge(timeout=180)
        self.result.converge_seconds.append(time.monotonic() - started)
        pulls = self._pulls() - before
        # Each change may pull once; an interrupted pull (operator or runner gone) once more.
        allowed = needed + (needed if kind in ("operator", "runner", "apiserver", "etcd") else 0)
        self.result.pulls += pulls
        self.result.pulls_allowed += allowed
        if pulls > allowed:
            problems.append(f"{pulls} pulls for {needed} changes")
        self.result.rounds += 1
        self.result.converged += not problems
        self.result.problems += [f"round {index} ({kind}): {p}" for p in problems]

    def _state(self) -> list[str]:
        """What is still wrong; empty when converged."""
        wrong = []
        items = self.kubectl.json("get", "models", namespace=NAMESPACE, timeout=20)["items"]
        found = {m["metadata"]["name"]: m for m in items}
        for name in self.deleted & set(found):
            wrong.append(f"deleted {name} still exists")
        for name, tag in self.live.items():
            status = (found.get(name) or {}).get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in status.get("conditions") or [])  # fmt: skip
            if not (ready and status.get("digest") == self.digests[tag]
                    and status.get("source") == self.sources[tag]):  # fmt: skip
                wrong.append(f"{name} not Ready with {tag}: {status.get('phase')}")
        with httpx.Client(base_url=self.runner.url, timeout=10) as http:
            names = {m["name"] for m in http.get("/api/tags").json()["models"]}
        want = {f"{n}:latest" for n in self.live} | {
            self.sources[t] for t in set(self.live.values())
        }
        if names != want:
            wrong.append(f"runner holds {sorted(names ^ want)} beyond or short of the live Models")
        return wrong

    def _converge(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        wrong = ["not checked"]
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                wrong = self._state()
                if not wrong:
                    return []
            time.sleep(0.5)
        return wrong

    def run(self, rounds: int) -> ChaosResult:
        started = time.monotonic()
        self.setup()
        for index in range(rounds):
            self.round(index)
        self.result.seconds = time.monotonic() - started
        return self.result


@contextlib.contextmanager
def private_cluster(directory: Path) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(directory)
    try:
        yield cluster.up()
    finally:
        cluster.down()


def seed_registry(registry_host: str, work: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Two different tiny models pushed as ``team/tiny:v1`` and ``:v2`` by a runner process;
    their references and manifest digests."""
    from tests.support.fuzz import reseeder
    from tests.support.tiny_model import write_tiny_gguf

    sources = {tag: f"{registry_host}/team/tiny:{tag}" for tag in ("v1", "v2")}
    digests = {}
    seeder = RunnerProcess(work / "seed", work / "seed.log").start()
    try:
        with httpx.Client(base_url=seeder.url, timeout=120) as http:
            for index, (tag, ref) in enumerate(sources.items()):
                reseeder({ref: write_tiny_gguf(work / f"{tag}.gguf", seed=index)})(http)
                pushed = http.post("/api/push", json={"model": ref, "insecure": True,
                                                      "stream": False})  # fmt: skip
                assert pushed.status_code == 200, pushed.text
                digests[tag] = _registry_digest(registry_host, tag)
    finally:
        seeder.stop()
    return sources, digests


def _registry_digest(host: str, tag: str) -> str:
    accept = ("application/vnd.oci.image.manifest.v1+json, "
              "application/vnd.docker.distribution.manifest.v2+json")  # fmt: skip
    response = httpx.head(f"http://{host}/v2/team/tiny/manifests/{tag}", headers={"Accept": accept})
    return str(response.headers["Docker-Content-Digest"])
