"""Runner credentials wired by the operator: each pod-mode ModelRunner gets a management Secret
(created once, owned by it) mounted into its pods, the operator sends that token on every runner
call, and a runner holding a token refuses management calls without it. External runners take
the token from the Secret their spec names."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.operator.conftest import (
    RestartableRunner,
    SeededRegistry,
    condition,
    external_runner,
    model,
    status_of,
    wait_ready,
)
from tests.operator.test_pod_mode import gpu_runner
from tests.support.cluster import Kubectl, wait_for
from tests.support.server import LiveServer

pytestmark = [pytest.mark.cluster, pytest.mark.registry]


class GuardedRunner(RestartableRunner):
    """A runner process whose management token is read from a file, as in a runner pod."""

    def __init__(self, store: Path, token_file: Path) -> None:
        super().__init__(store)
        self.token_file = token_file

    def start(self) -> GuardedRunner:
        settings = Settings(models=self.store, listen=[], prune=False,
                            management_token_file=self.token_file)  # fmt: skip
        self.server = LiveServer(create_app(settings), port=self.port).start()
        return self


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[GuardedRunner]:
    runner = GuardedRunner(tmp_path / "store", tmp_path / "token")
    yield runner
    runner.stop()


def secret_token(kubectl: Kubectl, name: str, namespace: str, key: str = "token") -> str:
    secret = kubectl.json("get", "secret", name, namespace=namespace)
    return base64.b64decode(secret["data"][key]).decode()


def pull_without_token(url: str, ref: str) -> httpx.Response:
    body = {"model": ref, "insecure": True, "stream": False}
    return httpx.post(f"{url}/api/pull", json=body, timeout=30)


def test_pod_runner_gets_a_management_secret_and_the_operator_uses_it(
    kubectl: Kubectl, namespace: str, gpu_nodes: list[str], operator_factory: Callable[..., Any],
    guarded: GuardedRunner, seeded_registry: SeededRegistry,
) -> None:  # fmt: skip
    urls = {f"{namespace}/model-runner-0": guarded.url}
    operator_factory(MODELOPERATOR_INSTANCE_URLS=json.dumps(urls))
    kubectl.apply(model("tiny", source=seeded_registry.v1, insecure=True), namespace=namespace)
    kubectl.apply(gpu_runner("model-runner", replicas=1), namespace=namespace)

    wait_for(lambda: kubectl.exists("secret", "model-runner-management", namespace=namespace),
             timeout=60, message="the operator created the management Secret")  # fmt: skip
    secret = kubectl.json("get", "secret", "model-runner-management", namespace=namespace)
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("ModelRunner", "model-runner")
    token = secret_token(kubectl, "model-runner-management", namespace)
    assert len(token) >= 32

    # The pods get it as a file from a Secret volume, named by the runner's file setting.
    pod = kubectl.json("get", "statefulset", "model-runner", namespace=namespace)["spec"][
        "template"
    ]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "management")
    assert volume["secret"]["secretName"] == "model-runner-management"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MODEL_RUNNER_MANAGEMENT_TOKEN_FILE"] == "/etc/modelrunner/management/token"

    # The runner (the pod's process) reads the token from the file the kubelet would write.
    guarded.token_file.write_text(token + "\n")
    guarded.start()
    refused = pull_without_token(guarded.url, seeded_registry.v2)
    assert refused.status_code == 401, refused.text
    wait_ready(kubectl, "model", "tiny", namespace, timeout=90)  # pulled with the token
    assert "tiny:latest" in guarded.names()
    assert "team/tiny:v2" not in str(guarded.names())  # the refused pull changed nothing
    wait_ready(kubectl, "modelrunner", "model-runner", namespace, timeout=60)

    # Created once: later reconciles leave the token as it is.
    assert secret_token(kubectl, "model-runner-management", namespace) == token


def test_external_runner_takes_its_token_from_the_named_secret(
    kubectl: Kubectl, namespace: str, operator_factory: Callable[..., Any],
    guarded: GuardedRunner, seeded_registry: SeededRegistry,
) -> None:  # fmt: skip
    guarded.token_file.write_text("ext-token-1")
    guarded.start()
    operator_factory()
    runner = external_runner("ext", guarded.url)
    runner["spec"]["external"]["managementSecretRef"] = {"name": "ext-admin", "key": "t"}
    kubectl.apply(runner, namespace=namespace)
    kubectl.apply(model("tiny", source=seeded_registry.v1, insecure=True), namespace=namespace)

    # No Secret yet: the runner says why it is not ready; the Model is not pulled.
    wait_for(
        lambda: condition(status_of(kubectl, "modelrunner", "ext", namespace), "Ready").get(
            "reason"
        ) == "SecretUnusable",
        timeout=60, message="the ModelRunner reports its missing Secret",
    )  # fmt: skip
    assert "tiny:latest" not in guarded.names()
    assert not kubectl.exists("secret", "ext-management", namespace=namespace)  # never created

    kubectl("create", "secret", "generic", "ext-admin", "--from-literal=t=ext-token-1",
            namespace=namespace)  # fmt: skip
    wait_ready(kubectl, "modelrunner", "ext", namespace, timeout=60)
    wait_ready(kubectl, "model", "tiny", namespace, timeout=90)
    assert "tiny:latest" in guarded.names()

    # Rotation: the server's token and the Secret change; the operator sends the new one.
    guarded.token_file.write_text("ext-token-2")
    kubectl("patch", "secret", "ext-admin", "--type=merge", "-p",
            json.dumps({"stringData": {"t": "ext-token-2"}}), namespace=namespace)  # fmt: skip
    kubectl.apply(model("tiny2", source=seeded_registry.v2, insecure=True), namespace=namespace)
    wait_ready(kubectl, "model", "tiny2", namespace, timeout=90)
    assert "tiny2:latest" in guarded.names()
