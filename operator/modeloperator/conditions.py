"""kstatus conditions (Ready, Reconciling, Stalled), so kubectl wait, Flux and Argo CD read them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    kind: str, status: bool, reason: str, message: str, generation: int
) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge(old: list[dict[str, Any]] | None, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep lastTransitionTime when a condition's status did not change."""
    previous = {c.get("type"): c for c in old or []}
    out = []
    for cond in new:
        before = previous.get(cond["type"])
        changed = before is None or before.get("status") != cond["status"]
        stamp = now() if changed or before is None else before.get("lastTransitionTime") or now()
        out.append({**cond, "lastTransitionTime": stamp})
    return out


def summary(ready: bool, reconciling: bool, stalled: bool, reason: str, message: str,
            generation: int) -> list[dict[str, Any]]:  # fmt: skip
    """The three conditions for one outcome: exactly one of ready / reconciling / stalled."""
    return [
        condition("Ready", ready, reason if not ready else "Ready", message, generation),
        condition(
            "Reconciling",
            reconciling,
            reason if reconciling else "Done",
            message if reconciling else "",
            generation,
        ),
        condition(
            "Stalled",
            stalled,
            reason if stalled else "None",
            message if stalled else "",
            generation,
        ),
    ]
