"""Routes that belong to no dialect: Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from modelrunner.api.common import services

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    extra = services(request).extra
    registry = extra["metrics"]
    scheduler = extra["inference"].scheduler
    registry.loaded_models.set(len(scheduler.runners))
    for gauge in (registry.queue_depth, registry.active, registry.slots):
        gauge.clear()  # unloaded models drop out
    for runner in scheduler.runners.values():
        registry.queue_depth.labels(runner.name).set(runner.waiting)
        registry.active.labels(runner.name).set(runner.active)
        registry.slots.labels(runner.name).set(runner.model.slots)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
