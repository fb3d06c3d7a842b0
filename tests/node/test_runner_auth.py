"""Runner credentials on the real node: the chart's operator mounts the ModelRunner's API keys
Secret into its pod, inference needs a key from it, management calls need the operator's token,
and editing the Secret rotates the keys without restarting the pod."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.node.conftest import quickstart
from tests.node.test_runner_pods import runner_pods, service_url
from tests.support.cluster import Kubectl, wait_for

pytestmark = pytest.mark.cluster


def generate(url: str, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "smollm2", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    return httpx.post(f"{url}/api/generate", json=body, headers=headers, timeout=120).status_code


def test_api_keys_from_a_secret_rotate_without_a_restart(
    kubectl: Kubectl, namespace: str, operator_release: str, cluster_model: str
) -> None:
    kubectl("create", "secret", "generic", "llm-keys", "--from-literal=keys=team-a:sk-one\n",
            namespace=namespace)  # fmt: skip
    runner, model = quickstart(cluster_model)
    runner["spec"]["auth"] = {"apiKeysSecretRef": {"name": "llm-keys"}}
    kubectl.apply([runner, model], namespace=namespace)
    kubectl("wait", "--for=condition=Ready", "modelrunner/model-runner", "model/smollm2",
            "--timeout=600s", namespace=namespace, timeout=610)  # fmt: skip
    (pod,) = runner_pods(kubectl, namespace)
    url = service_url(kubectl, namespace)

    assert generate(url, None) == 401
    assert generate(url, "sk-wrong") == 401
    assert generate(url, "sk-one") == 200
    # Management calls need the operator's token (the Secret it created), not an API key.
    pull = {"model": f"{cluster_model}:latest", "insecure": True, "stream": False}
    assert httpx.post(f"{url}/api/pull", json=pull, timeout=30).status_code == 401
    forbidden = httpx.post(f"{url}/api/pull", json=pull, timeout=30,
                           headers={"Authorization": "Bearer sk-one"})  # fmt: skip
    assert forbidden.status_code == 403, forbidden.text

    # Rotation: edit the Secret; the kubelet updates the mounted file, the runner re-reads it.
    patch = json.dumps({"stringData": {"keys": "team-a:sk-two\n"}})
    kubectl("patch", "secret", "llm-keys", "--type=merge", "-p", patch, namespace=namespace)
    wait_for(lambda: generate(url, "sk-two") == 200, timeout=180, interval=3,
             message="the rotated key accepted")  # fmt: skip
    assert generate(url, "sk-one") == 401
    (after,) = runner_pods(kubectl, namespace)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    operator_logs = kubectl("logs", f"deployment/{operator_release}", namespace=namespace).stdout
    assert "Forbidden" not in operator_logs, operator_logs[-3000:]
