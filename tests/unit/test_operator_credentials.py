"""A pull secret turned into the runner's X-Registry-Config header."""

from __future__ import annotations

import base64
import json

import pytest

from modeloperator.credentials import SecretError, registry_config


def test_registry_config_from_secret() -> None:
    auths = {"reg.example:5000": {"auth": base64.b64encode(b"u:p").decode()}}
    data = base64.b64encode(json.dumps({"auths": auths}).encode()).decode()
    secret = {"metadata": {"name": "s"}, "type": "kubernetes.io/dockerconfigjson",
              "data": {".dockerconfigjson": data}}  # fmt: skip
    assert json.loads(base64.urlsafe_b64decode(registry_config(secret))) == auths
    legacy = {"metadata": {"name": "s"}, "type": "kubernetes.io/dockercfg",
              "data": {".dockercfg": base64.b64encode(json.dumps(auths).encode()).decode()}}  # fmt: skip
    assert json.loads(base64.urlsafe_b64decode(registry_config(legacy))) == auths
    with pytest.raises(SecretError, match=r"has no \.dockerconfigjson key"):
        registry_config({**secret, "data": {}})
    with pytest.raises(SecretError, match="is not base64 JSON"):
        registry_config({**secret, "data": {".dockerconfigjson": "%%%"}})
