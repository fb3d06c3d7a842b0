"""kopf registrations for ModelGateways (a few lines each over gateways.py): the owned objects on
change, one loop over every gateway (gateway_loop.py) for routing tables, demand, autoscaling and
the periodic reconcile, and the events that mark a namespace's routing tables out of date."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

import kopf

from modeloperator import GROUP, VERSION
from modeloperator.gateway_loop import GatewayLoop
from modeloperator.gateways import GatewayState, reconcile_gateway
from modeloperator.models import compact
from modeloperator.reconcile import Context
from modeloperator.resources import LABEL_MANAGED, MANAGER
from modeloperator.settings import OperatorSettings

log = logging.getLogger(__name__)


def _ctx(memo: kopf.Memo) -> Context:
    ctx: Context = memo["state"].ctx  # set by handlers.py's startup
    return ctx


def _gateways(memo: kopf.Memo) -> GatewayState:
    state: GatewayState = memo["gateways"]
    return state


def runner_fingerprint(body: dict[str, Any]) -> str:
    """What of a ModelRunner a routing table depends on (not the autoscaler's own status)."""
    status = body.get("status") or {}
    relevant = {
        "labels": body["metadata"].get("labels"),
        "spec": body.get("spec"),
        "instances": status.get("instances"),
        "ready": status.get("readyReplicas"),
        "deleting": bool(body["metadata"].get("deletionTimestamp")),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def register_gateways(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    gateways = (GROUP, VERSION, "modelgateways")
    interval = settings.reconcile_interval
    fast = settings.autoscale_interval

    @kopf.on.startup(registry=registry)
    async def gateways_startup(memo: kopf.Memo, **_: Any) -> None:
        memo["gateways"] = GatewayState()

    @kopf.on.cleanup(registry=registry)
    async def gateways_cleanup(memo: kopf.Memo, **_: Any) -> None:
        if "gateway_loop" in memo:
            memo["gateway_loop"].cancel()

    @kopf.index(*gateways, id="gateway_index", registry=registry)
    def gateway_index(body: kopf.Body, **_: Any) -> dict[str, Any]:
        return {body["metadata"]["namespace"]: compact(body)}

    @kopf.on.resume(*gateways, registry=registry)
    @kopf.on.create(*gateways, registry=registry)
    @kopf.on.update(*gateways, field="spec", registry=registry)
    async def gateway_changed(
        body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **kw: Any
    ) -> None:
        state = _gateways(memo)
        async with state.locks[body["metadata"]["uid"]]:
            status = await reconcile_gateway(_ctx(memo), state, dict(body))
        patch.status.update(status)
        if "gateway_loop" not in memo:  # the first gateway seen starts the loop over all
            loop = GatewayLoop(_ctx(memo), state, kw["gateway_index"], interval, fast)
            memo["gateway_loop"] = asyncio.create_task(loop.run())

    @kopf.on.event(GROUP, VERSION, "models", registry=registry)
    async def model_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        _gateways(memo).changes[body["metadata"]["namespace"]] += 1

    @kopf.on.event(GROUP, VERSION, "modelrunners", registry=registry)
    async def runner_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        state = _gateways(memo)
        mark = runner_fingerprint(dict(body))
        if state.fingerprints.get(body["metadata"]["uid"]) != mark:
            state.fingerprints[body["metadata"]["uid"]] = mark
            state.changes[body["metadata"]["namespace"]] += 1

    # Runner pods (a replica whose models-ready gate opened, or that went away).
    @kopf.on.event("v1", "pods", labels={LABEL_MANAGED: MANAGER}, registry=registry)
    async def runner_pod_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        _gateways(memo).changes[body["metadata"]["namespace"]] += 1
