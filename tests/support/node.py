"""pytest plugin: the local cluster's real node (hack/node/) and the images built here.

- ``real_node`` (session): the node is Ready; its name, the registry its containerd pulls from, its
  network namespace. Skips when the cluster runs without it (not root, or
  ``MODELRUNNER_REAL_NODE=0``), except under CI, where its absence fails the test.
- ``local_images`` (session): ``make images`` into that registry (cached by content, so cheap
  when nothing changed); the runner and operator image references.
- :func:`netns` runs a command in the node's network namespace.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import pytest

from tests.support.cluster import CLUSTER_DIR, REPO_ROOT, KubeCluster

NODE_SCRIPT = REPO_ROOT / "hack" / "node" / "node.sh"
NETWORK_SCRIPT = REPO_ROOT / "hack" / "node" / "network.sh"
IMAGES_ENV = CLUSTER_DIR / "images.env"
IMAGES_TIMEOUT = float(os.environ.get("MODELRUNNER_IMAGES_TIMEOUT", 3600))


@dataclass(frozen=True)
class RealNode:
    name: str
    registry: str
    netns: str


@dataclass(frozen=True)
class Images:
    runner: str
    operator: str
    clients: str


def _script_env() -> dict[str, str]:
    return {**os.environ, "MODELRUNNER_CLUSTER_DIR": str(CLUSTER_DIR)}


def _shell_vars(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            out[key.strip()] = value.strip().strip("'\"")
    return out


def netns(node: RealNode, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", node.netns, *cmd], capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


@pytest.fixture(scope="session")
def real_node(kube_cluster: KubeCluster) -> RealNode:
    if kube_cluster.external:
        pytest.skip("KUBECONFIG names an external cluster, not hack/cluster.sh's")
    status = subprocess.run([str(NODE_SCRIPT), "status"], capture_output=True, text=True,
                            env=_script_env(), timeout=60, check=False)  # fmt: skip
    if status.returncode != 0:
        message = f"the local cluster has no Ready real node:\n{status.stdout}{status.stderr}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + "\n(it needs root; hack/cluster.sh up starts it)")
    env = subprocess.run([str(NODE_SCRIPT), "env"], capture_output=True, text=True,
                         env=_script_env(), timeout=30, check=True).stdout  # fmt: skip
    values = _shell_vars(env)
    return RealNode(
        name=values["MODELRUNNER_NODE_NAME"],
        registry=values["MODELRUNNER_REGISTRY"],
        netns=values["MODELRUNNER_NODE_NETNS"],
    )


@pytest.fixture(scope="session")
def local_images(real_node: RealNode) -> Images:
    proc = subprocess.run(
        ["make", "-C", str(REPO_ROOT), "images"],
        env={**_script_env(), "MODELRUNNER_REGISTRY": real_node.registry},
        capture_output=True, text=True, timeout=IMAGES_TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"make images failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    refs = _shell_vars(IMAGES_ENV.read_text())
    return Images(
        runner=refs["RUNNER_IMAGE"], operator=refs["OPERATOR_IMAGE"], clients=refs["CLIENTS_IMAGE"]
    )
