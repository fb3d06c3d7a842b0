"""A Model's ``spec.runtime`` as the runner's runtime policy, and back for status (pure).

The runner keeps per-model policies in its store (``/runner/policies``): context size, parallel
slots, default keep-alive, ``preload`` (loaded at startup and as soon as the policy is set) and
``pinned`` (never evicted, never expired). The operator writes the policy of every Model that
declares one on every instance that serves it, and removes it when the Model stops declaring it.
"""

from __future__ import annotations

from typing import Any

FOREVER = "-1"
# spec.runtime field -> the runner's policy field
FIELDS = {
    "contextSize": "context_size",
    "keepAlive": "keep_alive",
    "parallel": "parallel",
    "preload": "preload",
    "pinned": "pinned",
}


def desired_policy(runtime: dict[str, Any] | None) -> dict[str, Any] | None:
    """The policy body for a Model's ``spec.runtime`` (None when it declares none)."""
    if not runtime:
        return None
    keep = runtime.get("keepAlive")
    if isinstance(keep, str) and keep.strip().lower() == "forever":
        keep = FOREVER
    return {
        "context_size": runtime.get("contextSize"),
        "keep_alive": None if keep is None else str(keep),
        "parallel": runtime.get("parallel"),
        "preload": bool(runtime.get("preload", False)),
        "pinned": bool(runtime.get("pinned", False)),
    }


def same_policy(desired: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    """True when the runner already holds ``desired`` (fields it does not report count as
    unset)."""
    if stored is None:
        return False
    return all(stored.get(key, _unset(key)) == value for key, value in desired.items())


def _unset(key: str) -> Any:
    return False if key in ("preload", "pinned") else None


def status_runtime(policy: dict[str, Any] | None) -> dict[str, Any] | None:
    """A policy as the Model's ``status.runtime`` (camelCase, unset fields left out)."""
    if policy is None:
        return None
    out: dict[str, Any] = {}
    for spec_key, key in FIELDS.items():
        value = policy.get(key)
        if value is not None:
            out[spec_key] = value
    return out
