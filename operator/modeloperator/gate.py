"""The ``modelrunner.io/models-ready`` readiness gate: when a runner pod may take traffic.

Kubernetes marks a pod Ready (and lists it in the Service's endpoints) only when its containers
are ready *and* every readiness gate condition is True. The operator sets this one, so a new or
restarted replica receives no request for a model until that model is on it.

The rule, decided once per pod:

* A pod whose containers are ready but whose gate the operator has not yet opened gets every
  selected Model first. The gate opens when each selected Model is present on it, except Models
  that no other instance of the runner serves either (a broken source, a missing pull secret):
  those would keep every new replica out of rotation without making any request succeed.
  An instance the operator cannot reach keeps its gate closed.
* Once open, the gate stays open for the life of the pod (Ollama-style): a Model added later is
  pulled onto serving replicas while they keep serving the others, so it never takes a replica
  out of rotation. Requests for it fail as they do on a single Ollama until it is Ready.

Only a True the operator wrote (reason ``ModelsPresent``) counts as open: a simulator such as kwok
sets every gate True when it marks the pod running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeloperator.resources import MODELS_READY

OPEN_REASON = "ModelsPresent"


@dataclass(frozen=True)
class ModelOnInstance:
    """One selected Model as seen from one pod."""

    name: str
    state: str  # this instance's result: Ready | Pulling | Waiting | Failed | Unreachable
    message: str = ""
    elsewhere: bool = False  # Ready on another instance of the same runner


@dataclass(frozen=True)
class Gate:
    open: bool
    reason: str
    message: str

    def condition(self) -> dict[str, str]:
        return {
            "type": MODELS_READY,
            "status": "True" if self.open else "False",
            "reason": self.reason,
            "message": self.message,
        }


def gate_condition(pod: dict[str, Any]) -> dict[str, Any]:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == MODELS_READY), {})


def is_open(pod: dict[str, Any]) -> bool:
    """The operator opened this pod's gate (kwok's blanket True does not count)."""
    cond = gate_condition(pod)
    return cond.get("status") == "True" and cond.get("reason") == OPEN_REASON


def decide(models: list[ModelOnInstance]) -> Gate:
    """The gate for a pod whose gate is not open yet, after the operator converged ``models``."""
    unreachable = [m for m in models if m.state == "Unreachable"]
    if unreachable:
        return Gate(False, "RunnerUnreachable", unreachable[0].message or "runner unreachable")
    missing = [m for m in models if m.state != "Ready" and m.elsewhere]
    if missing:
        first = missing[0]
        detail = f" ({first.state}: {first.message})" if first.message else f" ({first.state})"
        names = ", ".join(m.name for m in missing)
        return Gate(False, "ModelsMissing", f"waiting for {names}; {first.name}{detail}")
    present = sum(m.state == "Ready" for m in models)
    message = f"{present}/{len(models)} selected models present"
    skipped = [m.name for m in models if m.state != "Ready"]
    if skipped:
        message += f"; not served by any other instance either: {', '.join(skipped)}"
    return Gate(True, OPEN_REASON, message)


def needs_patch(pod: dict[str, Any], gate: Gate) -> bool:
    current = gate_condition(pod)
    wanted = gate.condition()
    return any(current.get(key) != value for key, value in wanted.items())


def served_elsewhere(
    model_status: dict[str, Any], runner: str, instance: str, serving: set[str]
) -> bool:
    """The Model's status says it is Ready on another pod of ``runner`` that takes traffic
    (entries of pods that are gone or not serving do not count)."""
    return any(
        entry.get("runner") == runner
        and entry.get("instance") != instance
        and entry.get("instance") in serving
        and entry.get("state") == "Ready"
        for entry in model_status.get("runners") or []
    )


def pending_condition(count: int) -> Gate:
    """What a pod shows while the operator puts its models on it."""
    return Gate(False, "ModelsPending", f"putting {count} selected model(s) on this pod")
