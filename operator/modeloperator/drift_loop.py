"""The drift pass over every ModelRunner, once per interval, as one loop for the whole operator.

A kopf timer per ModelRunner did the same, but kopf puts its finalizer on every object that has a
timer, so deleting a ModelRunner (``kubectl delete``, a GitOps prune) hung for as long as the
operator was down. A ModelRunner needs no finalizer: what it owns goes with it through owner
references. kopf removes the finalizer it added before from existing ModelRunners by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from modeloperator.drift import sweep
from modeloperator.models import State
from modeloperator.runners import reconcile_runner
from modeloperator.status import changes

log = logging.getLogger(__name__)

CONCURRENCY = 4  # ModelRunners checked at once


async def drift_forever(state: State, interval: float) -> None:
    """Every ``interval`` seconds (the first pass one interval after start, as the timer did)."""
    await asyncio.sleep(interval)
    while True:
        began = time.monotonic()
        await drift_pass(state)
        await asyncio.sleep(max(interval - (time.monotonic() - began), 1.0))


async def drift_pass(state: State) -> int:
    """Check every ModelRunner the index holds; returns how many were checked."""
    catalog = state.ctx.catalog
    if catalog is None:
        return 0
    runners = catalog.all_runners()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(runner: dict[str, Any]) -> None:
        async with gate:
            try:
                await drift_runner(state, runner)
            except Exception as exc:  # one runner's failure must not stop the others' checks
                meta = runner["metadata"]
                log.warning("drift check of %s/%s: %r", meta["namespace"], meta["name"], exc)

    await asyncio.gather(*(one(r) for r in runners))
    return len(runners)


async def drift_runner(state: State, runner: dict[str, Any]) -> None:
    """Reconcile one ModelRunner, write what changed in its status, and sweep its Models; the
    sweep runs even when the runner's own reconcile failed (its Models may be fine)."""
    meta = runner["metadata"]
    if meta.get("deletionTimestamp"):
        return
    try:
        async with state.locks.hold(meta["uid"]):
            status = await reconcile_runner(state.ctx, runner)
        changed = changes(runner.get("status"), status)
        if changed:
            await state.ctx.kube.patch_status(
                "modelrunners", meta["namespace"], meta["name"], changed
            )
    finally:
        await sweep(state.ctx, runner, state.refresh_model)
