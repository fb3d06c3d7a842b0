"""One loop over every ModelGateway: each ``fast`` seconds a gateway's routing table, demand and
the autoscaling of the runners it fronts (gateways.tick), and once per reconcile interval its
owned objects and status (gateways.reconcile_gateway).

This used to be a kopf daemon and a kopf timer per gateway; kopf puts its finalizer on every
object with either, so deleting a ModelGateway hung while the operator was down. What a gateway
owns goes with it through owner references, so it needs no finalizer; kopf removes the one it
added before by itself. Gateways come from kopf's index, kept current by the watch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from modeloperator.gateways import GatewayState, reconcile_gateway, tick
from modeloperator.reconcile import Context, every
from modeloperator.status import changes

log = logging.getLogger(__name__)


class GatewayLoop:
    def __init__(
        self, ctx: Context, state: GatewayState, index: Any, interval: float, fast: float
    ) -> None:
        self.ctx, self.state, self.index = ctx, state, index
        self.interval, self.fast = interval, fast
        self.reconciled: dict[str, float] = {}  # gateway uid -> monotonic time of the last

    async def run(self) -> None:
        while True:
            began = time.monotonic()
            await self.pass_once()
            await asyncio.sleep(max(self.fast - (time.monotonic() - began), 0.1))

    async def pass_once(self) -> None:
        gateways = [g for g in every(self.index) if not g["metadata"].get("deletionTimestamp")]
        live = {g["metadata"]["uid"] for g in gateways}
        for uid in set(self.reconciled) - live:
            del self.reconciled[uid]
        await asyncio.gather(*(self.one(g) for g in gateways))

    async def one(self, gateway: dict[str, Any]) -> None:
        meta = gateway["metadata"]
        uid, now = meta["uid"], time.monotonic()
        try:
            async with self.state.locks[uid]:
                # The change handler reconciled it when it appeared: the next one is due an
                # interval later, as the timer's was.
                last = self.reconciled.setdefault(uid, now)
                if now - last >= self.interval:
                    self.reconciled[uid] = now
                    status = await reconcile_gateway(self.ctx, self.state, gateway)
                    changed = changes(gateway.get("status"), status)
                    if changed:
                        await self.ctx.kube.patch_status(
                            "modelgateways", meta["namespace"], meta["name"], changed
                        )
                await tick(self.ctx, self.state, gateway, self.fast)
        except Exception as exc:  # the loop outlives a failed pass; the next one retries
            log.warning("gateway %s/%s: %r", meta["namespace"], meta["name"], exc)
