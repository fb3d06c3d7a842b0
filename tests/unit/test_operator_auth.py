"""Pure builders of a ModelRunner's credentials: the operator's management Secret, the Secret
volumes and file settings of the runner pods, and the client's Authorization header."""

from __future__ import annotations

import base64
from typing import Any

from modeloperator.resources import (
    management_ref,
    management_secret,
    secret_value,
    statefulset,
)
from modeloperator.runnerclient import RunnerClient


def _pod(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = statefulset("mr", "ns", spec, "img")["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_management_secret_is_opaque_labelled_and_holds_the_token() -> None:
    secret = management_secret("mr", "ns", "s3cr3t")
    assert secret["metadata"]["name"] == "mr-management"
    assert secret["metadata"]["namespace"] == "ns"
    assert secret["metadata"]["labels"]["app.kubernetes.io/instance"] == "mr"
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["token"]) == b"s3cr3t"
    assert secret_value(secret, "token") == "s3cr3t"
    assert secret_value(secret, "other") is None


def test_secret_value_strips_a_trailing_newline() -> None:
    secret = {"data": {"t": base64.b64encode(b"abc\n").decode()}}
    assert secret_value(secret, "t") == "abc"
    assert secret_value({"data": {"t": base64.b64encode(b"\n").decode()}}, "t") is None


def test_management_ref_defaults_and_overrides() -> None:
    assert management_ref("mr", {}) == ("mr-management", "token")
    assert management_ref("mr", {"auth": {"managementSecretRef": {"name": "mine"}}}) == (
        "mine",
        "token",
    )
    spec = {"auth": {"managementSecretRef": {"name": "mine", "key": "k"}}}
    assert management_ref("mr", spec) == ("mine", "k")
    external = {"external": {"url": "http://x", "managementSecretRef": {"name": "ext"}}}
    assert management_ref("mr", external) == ("ext", "token")


def test_pods_mount_the_operators_management_secret_as_a_file() -> None:
    pod, container = _pod({})
    volume = next(v for v in pod["volumes"] if v["name"] == "management")
    # A whole-directory Secret volume (no subPath): the kubelet updates an edited Secret in place.
    assert volume["secret"] == {
        "secretName": "mr-management",
        "items": [{"key": "token", "path": "token"}],
    }
    mount = next(m for m in container["volumeMounts"] if m["name"] == "management")
    assert mount == {
        "name": "management",
        "mountPath": "/etc/modelrunner/management",
        "readOnly": True,
    }
    assert not any("subPath" in m for m in container["volumeMounts"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_RUNNER_MANAGEMENT_TOKEN_FILE"] == "/etc/modelrunner/management/token"
    assert "MODEL_RUNNER_API_KEYS_FILE" not in env
    assert not any(v["name"] == "api-keys" for v in pod["volumes"])


def test_pods_mount_user_secrets_for_the_token_and_api_keys() -> None:
    spec = {
        "auth": {
            "managementSecretRef": {"name": "admin", "key": "tok"},
            "apiKeysSecretRef": {"name": "clients"},
        }
    }
    pod, container = _pod(spec)
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    assert volumes == {
        "management": {"secretName": "admin", "items": [{"key": "tok", "path": "token"}]},
        "api-keys": {"secretName": "clients", "items": [{"key": "keys", "path": "keys"}]},
    }
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_RUNNER_API_KEYS_FILE"] == "/etc/modelrunner/api-keys/keys"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["api-keys"] == "/etc/modelrunner/api-keys"


def test_runner_client_sends_the_token_only_when_given() -> None:
    assert RunnerClient("http://r", token="t").headers == {"Authorization": "Bearer t"}
    assert RunnerClient("http://r").headers == {}
