"""Routes that belong to no dialect: Prometheus metrics (with the model-server gauges inference
gateways route on), and the same load as a small JSON document for the operator's autoscaler."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from modelrunner.api.common import services
from modelrunner.core.serving import serving_load

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    extra = services(request).extra
    registry = extra["metrics"]
    scheduler = extra["inference"].scheduler
    registry.loaded_models.set(len(scheduler.runners))
    for gauge in (registry.queue_depth, registry.active, registry.slots):
        gauge.clear()  # unloaded models drop out
    # A model loaded both for generation and for embeddings is two runners under one name:
    # its gauges are their sums (setting each in turn would leave only the last one's).
    totals: dict[str, list[int]] = {}
    for runner in scheduler.runners.values():
        sums = totals.setdefault(runner.name, [0, 0, 0])
        sums[0] += runner.waiting
        sums[1] += runner.active
        sums[2] += runner.model.slots
    for name, (waiting, active, slots) in totals.items():
        registry.queue_depth.labels(name).set(waiting)
        registry.active.labels(name).set(active)
        registry.slots.labels(name).set(slots)
    load = serving_load(scheduler)
    registry.kv_cache_usage_model.clear()
    for name, usage in load.kv_by_model.items():
        registry.kv_cache_usage_model.labels(name).set(usage)
    for gauge in (registry.requests_waiting, registry.vllm_waiting):
        gauge.set(load.waiting)
    for gauge in (registry.requests_running, registry.vllm_running):
        gauge.set(load.running)
    for gauge in (registry.kv_cache_usage, registry.vllm_kv, registry.vllm_gpu_kv):
        gauge.set(load.kv_cache_usage)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/runner/load")
async def runner_load(request: Request) -> dict[str, Any]:
    """Requests running and waiting now, and requests received since the process started: the
    operator counts traffic sent straight to the runner (not through a gateway) as demand, and a
    count that moved as a request that arrived. Read-only; its access is that of inference."""
    extra = services(request).extra
    load = serving_load(extra["inference"].scheduler)
    received = extra["metrics"].requests_received()
    return {"running": load.running, "waiting": load.waiting, "requests": received}
