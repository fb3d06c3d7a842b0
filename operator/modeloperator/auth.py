"""A ModelRunner's management token: the Secret the operator creates for a pod-mode runner
(once; it never rotates it), or the one the spec names; read on every reconcile, so an edited
Secret takes effect at the next call."""

from __future__ import annotations

import secrets
from typing import Any

from modeloperator.credentials import SecretError
from modeloperator.kube import Kube, KubeError
from modeloperator.resources import (
    management_ref,
    management_secret,
    management_secret_name,
    secret_value,
)


async def ensure_management_secret(kube: Kube, runner: dict[str, Any]) -> None:
    """Create the operator's management Secret of a pod-mode runner that names none; an
    existing one is left as it is."""
    meta, spec = runner["metadata"], runner.get("spec") or {}
    if spec.get("external") or management_ref(meta["name"], spec)[0] != management_secret_name(
        meta["name"]
    ):
        return
    if await kube.secret(management_secret_name(meta["name"]), meta["namespace"]) is not None:
        return
    token = secrets.token_urlsafe(32)
    await kube.create(management_secret(meta["name"], meta["namespace"], token), runner)


async def management_token(kube: Kube, runner: dict[str, Any]) -> str | None:
    """The token to send to the runner's instances; None for an external server that names no
    Secret. Raises SecretError when the Secret is missing, unreadable or lacks the key."""
    meta, spec = runner["metadata"], runner.get("spec") or {}
    external = spec.get("external")
    if external and not external.get("managementSecretRef"):
        return None
    name, key = management_ref(meta["name"], spec)
    try:
        secret = await kube.secret(name, meta["namespace"])
    except KubeError as exc:
        raise SecretError(str(exc)) from None
    if secret is None:
        raise SecretError(f"Secret {name!r} not found")
    token = secret_value(secret, key)
    if token is None:
        raise SecretError(f"Secret {name!r} has no {key!r} key")
    return token
