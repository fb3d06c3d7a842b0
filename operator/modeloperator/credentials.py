"""A Model's ``pullSecretRef`` as the runner's ``X-Registry-Config`` header (pure).

The Secret is a standard image pull secret (``kubernetes.io/dockerconfigjson``, or the older
``kubernetes.io/dockercfg``); the runner gets its ``auths`` map, base64url JSON as Docker's API
passes registry credentials, and picks the entry of the registry it pulls from.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

HEADER = "X-Registry-Config"
_KEYS = {
    "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
    "kubernetes.io/dockercfg": ".dockercfg",
}


class SecretError(ValueError):
    pass


def registry_config(secret: dict[str, Any]) -> str:
    """The header value for ``secret`` (a Secret object as the API returns it)."""
    name = (secret.get("metadata") or {}).get("name", "")
    kind = secret.get("type") or ""
    key = _KEYS.get(kind)
    if key is None:
        raise SecretError(
            f"Secret {name!r} is of type {kind or 'Opaque'!r}, not kubernetes.io/dockerconfigjson"
        )
    encoded = (secret.get("data") or {}).get(key)
    if not encoded:
        raise SecretError(f"Secret {name!r} has no {key} key")
    try:
        config = json.loads(base64.b64decode(encoded))
    except (binascii.Error, ValueError):
        raise SecretError(f"Secret {name!r}: {key} is not base64 JSON") from None
    auths = config.get("auths", config) if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        raise SecretError(f"Secret {name!r}: {key} has no auths")
    return base64.urlsafe_b64encode(json.dumps(auths).encode()).decode()
