"""How many replicas a ModelRunner with ``spec.autoscaling`` should have (pure).

Demand comes from two places. The ModelGateways fronting the runner report
(``GET /gateway/v1/demand``) requests in flight to its instances and requests held for it (no
instance ready, or all busy). Each instance reports its own load (``GET /runner/load``: requests
running and waiting), which also counts clients that call the runner's Service directly. A
request a gateway forwarded is in flight at both, so ``combine`` counts it once.

* Up at once: ``ceil((inFlight + queued) / targetConcurrentRequests)``, and at least one replica
  while any request waits (scale from zero).
* Down only after ``scaleDownDelaySeconds`` during which fewer replicas would have sufficed; to
  zero only when, in addition, no request arrived for that long (at a gateway or an instance).
* Unknown demand (no gateway fronts the runner or none answered, or an instance could not be
  read) never scales down, and never to zero: without a gateway nothing would ever wake the
  runner again. What is known still scales up.
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
    # Some of the demand could not be read (a gateway or an instance did not answer): what is
    # known may scale up, nothing may scale down.
    partial: bool = False

    def __add__(self, other: Demand) -> Demand:
        return Demand(self.in_flight + other.in_flight, self.queued + other.queued,
                      latest(self.last_request, other.last_request),
                      self.partial or other.partial)  # fmt: skip

    @property
    def load(self) -> int:
        return self.in_flight + self.queued

    @classmethod
    def parse(cls, entry: dict[str, Any]) -> Demand:
        last = entry.get("lastRequestUnix")
        return cls(int(entry.get("inFlight") or 0), int(entry.get("queued") or 0),
                   float(last) if last is not None else None)  # fmt: skip


def latest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class InstanceLoad:
    """What one runner instance reports about itself (``GET /runner/load``)."""

    running: int = 0  # requests holding a slot
    waiting: int = 0  # requests waiting for a load, for room or for a slot
    last_request: float | None = None  # unix time a request was last seen arriving


def combine(gateways: Demand | None, instances: list[InstanceLoad | None]) -> Demand | None:
    """The runner's demand from its gateways' reports (None: none answered) and its serving
    instances' own loads (None: that instance could not be read).

    A forwarded request is in flight at its gateway and running or waiting at an instance, so
    the two are not added: the load is ``max(gateways' in flight, instances' running + waiting)
    + gateways' queued``, shown as in flight ``max(gateways' in flight - waiting, running)`` and
    queued ``gateways' queued + waiting``. Direct traffic shows up as the instances' excess over
    the gateways' in flight."""
    known = [load for load in instances if load is not None]
    if gateways is None and not known:
        return None
    base = gateways or Demand()
    running = sum(load.running for load in known)
    waiting = sum(load.waiting for load in known)
    return Demand(
        in_flight=max(base.in_flight - waiting, running),
        queued=base.queued + waiting,
        last_request=latest(base.last_request, *(load.last_request for load in known)),
        partial=base.partial or gateways is None or len(known) < len(instances),
    )


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
    if demand.partial:  # as unknown demand, but what is known may add replicas
        kept = clamp(current, policy, floor=1)
        if wanted > kept:
            return Decision(wanted, now, "ScaleFromZero" if current == 0 else "ScaleUp")
        return Decision(kept, now if wanted >= current or kept != current else needed_at,
                        "DemandUnknown")  # fmt: skip
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
