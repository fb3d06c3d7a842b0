"""Pod pieces the runner StatefulSet (resources.py) and the gateway Deployment
(gateway_resources.py) share: both run the runner image, as its uid 1000, on a read-only root.
Pure: plain dicts, no I/O."""

from __future__ import annotations

import json
from typing import Any

RUN_AS = 1000  # the runner image's user and group


def pod_security(fs_group: bool = False) -> dict[str, Any]:
    """Non-root as RUN_AS under the runtime's seccomp profile. ``fs_group``: volumes are
    group-writable by RUN_AS on any volume type; OnRootMismatch skips the recursive chown of a
    large store on every restart."""
    context: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS}
    if fs_group:
        context.update(fsGroup=RUN_AS, fsGroupChangePolicy="OnRootMismatch")
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def finish_container(container: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """``container`` with, last, its hardening (no privilege escalation, no capabilities, a
    read-only root) and the spec's imagePullPolicy if it names one."""
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    if spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = spec["imagePullPolicy"]
    return container


def with_default_requests(given: dict[str, Any], defaults: dict[str, str]) -> dict[str, Any]:
    """A copy of the user's requests and limits, with ``defaults`` for CPU or memory the user left
    unset (a limit alone counts as set: Kubernetes then requests the limit)."""
    resources: dict[str, Any] = json.loads(json.dumps(given))
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for key, value in defaults.items():
        if key not in requests and key not in limits:
            requests[key] = value
    resources["requests"] = requests
    return resources
