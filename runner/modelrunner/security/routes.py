"""Which credential a route needs: public, inference (an API key once keys are configured) or
management (the management token once one is set). Unknown paths count as inference, so a
probe without a key learns nothing."""

from __future__ import annotations

import re
from enum import Enum


class Access(Enum):
    PUBLIC = "public"
    INFERENCE = "inference"
    MANAGEMENT = "management"


# Liveness and version probes, and Prometheus scraping (counters only, no prompts or keys).
_PUBLIC = re.compile(r"^/(api/version|version|metrics)?$")
# Routes that change the store or engines, reach out to registries, or reveal other callers'
# prompts (request log, server log); the runtime policies (read and write).
_MANAGEMENT = {
    "POST": re.compile(
        r"^/(api/(pull|push|create|copy|blobs/.+)"
        r"|models/(create|load|.+/(tag|push|repackage))"
        r"|engines/(unload|install-backend|uninstall-backend|([^/]+/)?_configure))$"
    ),
    "DELETE": re.compile(r"^/(api/delete|models/.+|runner/policies/.+)$"),
    "GET": re.compile(r"^/(engines/requests|logs|runner/policies(/.+)?)$"),
    "PUT": re.compile(r"^/runner/policies/.+$"),
}


def classify(method: str, path: str) -> Access:
    if method in ("GET", "HEAD") and _PUBLIC.match(path):
        return Access.PUBLIC
    rule = _MANAGEMENT.get("GET" if method == "HEAD" else method)
    if rule is not None and rule.match(path):
        return Access.MANAGEMENT
    return Access.INFERENCE
