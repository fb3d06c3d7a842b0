"""How many replicas a ModelRunner with ``spec.autoscaling`` should have (pure).

Demand is what the ModelGateways fronting the runner report (``GET /gateway/v1/demand``):
requests in flight to its instances and requests held for it (no instance ready, or all busy).

* Up at once: ``ceil((inFlight + queued) / targetConcurrentRequests)``, and at least one replica
  while any request waits (scale from zero).
* Down only after ``scaleDownDelaySeconds`` during which fewer replicas would have sufficed; to
  zero only when, in addition, no request arrived for that long.
* Unknown demand (no gateway fronts the runner, or none answered) never scales down, and never
  to zero: without a gateway nothing would ever wake the runner again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    target: int
    delay: float

    @classmethod
    def of(cls, autoscaling: dict[str, Any]) -> Policy:
        low = int(autoscaling.get("minReplicas", 1))
        return cls(
            min_replicas=low,
            max_replicas=max(int(autoscaling.get("maxReplicas", max(low, 1))), low),
            target=max(int(autoscaling.get("targetConcurrentRequests") or 4), 1),
            delay=float(autoscaling.get("scaleDownDelaySeconds", 300)),
        )


@dataclass(frozen=True)
class Demand:
    in_flight: int = 0
    queued: int = 0
    last_request: float | None = None  # unix time of the last request for the runner's models

    def __add__(self, other: Demand) -> Demand:
        times = [t for t in (self.last_request, other.last_request) if t is not None]
        return Demand(self.in_flight + other.in_flight, self.queued + other.queued,
                      max(times) if times else None)  # fmt: skip

    @property
    def load(self) -> int:
        return self.in_flight + self.queued

    @classmethod
    def parse(cls, entry: dict[str, Any]) -> Demand:
        last = entry.get("lastRequestUnix")
        return cls(int(entry.get("inFlight") or 0), int(entry.get("queued") or 0),
                   float(last) if last is not None else None)  # fmt: skip


@dataclass(frozen=True)
class Decision:
    replicas: int
    # When ``current`` replicas were last all needed; the caller keeps it for the next call.
    needed_at: float
    reason: str


def clamp(value: int, policy: Policy, floor: int = 0) -> int:
    return min(max(value, policy.min_replicas, floor), policy.max_replicas)


def decide(
    policy: Policy, current: int, demand: Demand | None, now: float, needed_at: float
) -> Decision:
    if demand is None:
        kept = clamp(current, policy, floor=1)
        return Decision(kept, now if kept != current else needed_at, "DemandUnknown")
    if current > policy.max_replicas:  # maxReplicas was lowered: no reason to wait
        return Decision(policy.max_replicas, now, "OverMax")
    wanted = clamp(math.ceil(demand.load / policy.target), policy, floor=1 if demand.load else 0)
    if wanted >= current:
        reason = "ScaleUp" if wanted > current else "Steady"
        if current == 0 and wanted > 0:
            reason = "ScaleFromZero"
        return Decision(wanted, now, reason)
    idle_for = now - needed_at
    if wanted == 0 and demand.last_request is not None:
        idle_for = min(idle_for, now - demand.last_request)
    if idle_for < policy.delay:
        return Decision(current, needed_at, "ScaleDownDelay")
    return Decision(wanted, now, "ScaleToZero" if wanted == 0 else "ScaleDown")
