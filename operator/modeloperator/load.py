"""Reading demand for the autoscaler: what the ModelGateways report, and what each serving
instance of a runner reports about itself, so clients that call the runner's own Service (not
through a gateway) count too.

An instance answers ``GET /runner/load`` (requests running, waiting, and received so far); a
runner without that route is read from its Prometheus ``/metrics`` (the vLLM-named gauges and
``modelrunner_requests_total``). A request arrived since the last read when the received count
moved; the operator stamps that with its own clock, so the instances' clocks do not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from modeloperator.autoscale import Demand, InstanceLoad
from modeloperator.instances import Instance
from modeloperator.reconcile import Context

log = logging.getLogger(__name__)
LOAD_PATH = "/runner/load"
# Calls on the autoscaling path are short: a slow gateway or runner must not stall the loop.
FAST_TIMEOUT = 3.0
FORGET_SECONDS = 3600.0  # an instance not read for this long is forgotten
_RUNNING, _WAITING = "vllm:num_requests_running", "vllm:num_requests_waiting"
_RECEIVED = "modelrunner_requests_total"


@dataclass(frozen=True)
class Reading:
    running: int
    waiting: int
    received: float  # requests the process has received (a counter: it restarts with it)


def parse_metrics(text: str) -> Reading | None:
    """The load in a Prometheus text exposition; None without the running and waiting gauges."""
    gauges: dict[str, float] = {}
    received = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line[: line.index("{")], line[line.rindex("}") + 1 :].split()
        else:
            name, *rest = line.split()
        with contextlib.suppress(ValueError, IndexError):
            if name in (_RUNNING, _WAITING):
                gauges[name] = float(rest[0])
            elif name == _RECEIVED:
                received += float(rest[0])
    if len(gauges) < 2:
        return None
    return Reading(int(gauges[_RUNNING]), int(gauges[_WAITING]), received)


async def read_load(http: httpx.AsyncClient) -> Reading | None:
    """One instance's load (``http`` carries its address and management token); None when it
    cannot be read."""
    try:
        reply = await http.get(LOAD_PATH, timeout=FAST_TIMEOUT)
        if reply.status_code in (404, 405):  # a runner from before the route
            reply = await http.get("/metrics", timeout=FAST_TIMEOUT)
            return parse_metrics(reply.text) if reply.status_code == 200 else None
        if reply.status_code != 200:
            return None
        data = reply.json()
        return Reading(int(data["running"]), int(data["waiting"]), float(data["requests"]))
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return None


class Arrivals:
    """Per instance, the received count last read and when (wall clock) it last moved."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, float | None, float]] = {}  # key -> count, moved, read
        self.swept = 0.0

    def update(self, key: str, count: float, now: float) -> float | None:
        """When a request last arrived at the instance, as far as the reads tell. The first
        read of an instance that already served requests counts as an arrival now (after an
        operator restart nothing says how long ago they were)."""
        previous = self.seen.get(key)
        if previous is None:
            moved = now if count > 0 else None
        else:  # a lower count: the process restarted, and served ``count`` requests since
            moved = now if count != previous[0] and count > 0 else previous[1]
        self.seen[key] = (count, moved, now)
        if now - self.swept > 60:  # instances gone (pods replaced) drop out
            self.swept = now
            self.seen = {k: v for k, v in self.seen.items() if now - v[2] <= FORGET_SECONDS}
        return moved


def instance_key(instance: Instance) -> str:
    uid = ((instance.pod or {}).get("metadata") or {}).get("uid", "")
    return f"{instance.runner}/{instance.name}/{uid}@{instance.url}"


async def instance_loads(
    ctx: Context, arrivals: Arrivals, instances: Sequence[Instance]
) -> list[InstanceLoad | None]:
    """Each instance's load (None where it could not be read), read at once over the operator's
    shared client of each instance."""
    readings = await asyncio.gather(*(read_load(ctx.view(i).http) for i in instances))
    wall = time.time()
    out: list[InstanceLoad | None] = []
    for instance, reading in zip(instances, readings, strict=True):
        if reading is None:
            out.append(None)
            continue
        last = arrivals.update(instance_key(instance), reading.received, wall)
        out.append(InstanceLoad(reading.running, reading.waiting, last))
    return out


async def runner_loads(
    ctx: Context, arrivals: Arrivals, runner: dict[str, Any]
) -> list[InstanceLoad | None]:
    """The loads of the runner's serving instances (those its Service sends traffic to); one
    unknown load when they cannot be listed."""
    try:
        found = await ctx.resolver.instances(runner)
    except Exception as exc:  # the API server's trouble: this runner's demand is unknown
        log.info("load: instances of %s unknown: %r", runner["metadata"]["name"], exc)
        return [None]
    return await instance_loads(ctx, arrivals, [i for i in found if i.serving])


async def gateway_demand(urls: Sequence[str]) -> dict[str, Demand] | None:
    """The demand per runner summed over the gateway pods at ``urls``; None when none answered."""
    if not urls:
        return None
    async with httpx.AsyncClient(timeout=FAST_TIMEOUT) as http:
        replies = await asyncio.gather(*(http.get(u) for u in urls), return_exceptions=True)
    total: dict[str, Demand] = {}
    answered = False
    for reply in replies:
        if isinstance(reply, BaseException) or reply.status_code != 200:
            continue
        answered = True
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            for runner, entry in (reply.json().get("runners") or {}).items():
                total[runner] = total.get(runner, Demand()) + Demand.parse(entry)
    return total if answered else None
