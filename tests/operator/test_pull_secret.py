"""A Model's pullSecretRef: the runner pulls a private repository with the Secret's credentials."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.operator.conftest import (
    RestartableRunner,
    condition,
    external_runner,
    model,
    status_of,
    wait_ready,
)
from tests.support.cluster import Kubectl, wait_for
from tests.support.registry import TokenServer, run_registry
from tests.support.server import LiveServer
from tests.support.tiny_model import write_tiny_gguf

pytestmark = [pytest.mark.cluster, pytest.mark.registry]


@pytest.fixture(scope="module")
def private_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """``(reference, user, password)`` of a tiny model in a token-auth registry's private/ space,
    pushed with X-Registry-Config credentials."""
    work = tmp_path_factory.mktemp("private-registry")
    tokens = TokenServer(work / "tokens").start()
    try:
        with run_registry(work, tokens) as registry:
            ref = f"{registry.host}/private/tiny:v1"
            auths = {registry.host: {"username": tokens.user, "password": tokens.password}}
            header = base64.urlsafe_b64encode(json.dumps(auths).encode()).decode()
            server = LiveServer(create_app(Settings(models=work / "seed", listen=[]))).start()
            try:
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    upload_and_create(client, write_tiny_gguf(work / "tiny.gguf"), ref)
                    pushed = client.post(
                        "/api/push", json={"model": ref, "insecure": True, "stream": False},
                        headers={"X-Registry-Config": header},
                    )  # fmt: skip
                    assert pushed.json() == {"status": "success"}, pushed.text
            finally:
                server.stop()
            yield ref, tokens.user, tokens.password
    finally:
        tokens.stop()


def test_pull_secret(
    kubectl: Kubectl, namespace: str, runner_process: RestartableRunner,
    operator_factory: Callable[..., Any], private_model: tuple[str, str, str],
) -> None:  # fmt: skip
    ref, user, password = private_model
    operator_factory()
    kubectl.apply(external_runner("model-runner", runner_process.url), namespace=namespace)
    wait_ready(kubectl, "modelrunner", "model-runner", namespace)

    def ready_message(name: str) -> str:
        return str(condition(status_of(kubectl, "model", name, namespace), "Ready").get("message"))

    # Without credentials the registry refuses: the Model fails with the runner's error.
    kubectl.apply(model("anonymous", source=ref, insecure=True), namespace=namespace)
    wait_for(lambda: "unauthorized" in ready_message("anonymous"), timeout=60)

    # With a pullSecretRef to a Secret that does not exist yet, it waits for the Secret.
    spec = {"source": ref, "insecure": True, "pullSecretRef": {"name": "regcred"}}
    kubectl.apply(model("private", **spec), namespace=namespace)
    wait_for(
        lambda: "Secret 'regcred' not found" in ready_message("private"),
        timeout=60,
        message=lambda: ready_message("private"),
    )
    assert ref not in runner_process.names()

    host = ref.split("/", 1)[0]
    kubectl("create", "secret", "docker-registry", "regcred", f"--docker-server={host}",
            f"--docker-username={user}", f"--docker-password={password}", namespace=namespace)  # fmt: skip
    wait_ready(kubectl, "model", "private", namespace)
    assert {ref, "private:latest"} <= runner_process.names()

    # A Secret of another type is named in the status.
    kubectl("create", "secret", "generic", "opaque", "--from-literal=x=y", namespace=namespace)
    spec["pullSecretRef"] = {"name": "opaque"}
    kubectl.apply(model("wrong-type", **spec), namespace=namespace)
    wait_for(
        lambda: "not kubernetes.io/dockerconfigjson" in ready_message("wrong-type"), timeout=60
    )
