"""kopf registrations only: each handler is a few lines over reconcile.py and runners.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from modeloperator import GROUP, VERSION
from modeloperator.discovery import wait_for_resources
from modeloperator.drift_loop import drift_forever
from modeloperator.gateway_handlers import register_gateways
from modeloperator.kube import Kube, api_client
from modeloperator.memory import MemoryKeeper
from modeloperator.models import State, compact
from modeloperator.reconcile import Catalog, Context, reconcile_model, remove_model
from modeloperator.resources import LABEL_MANAGED, MANAGER
from modeloperator.runners import reconcile_runner, refresh_runner, runner_of_pod
from modeloperator.settings import OperatorSettings
from modeloperator.status import changes

RETRY_SECONDS = 15.0


def _state(memo: kopf.Memo, indices: dict[str, Any]) -> State:
    """The shared state, bound on first use to kopf's indices (passed to every handler), which
    is also when the drift loop can start: it reads ModelRunners from the index."""
    state: State = memo["state"]
    if state.ctx.catalog is None:
        state.ctx.catalog = Catalog(indices["model_index"], indices["runner_index"])
        interval = state.ctx.settings.reconcile_interval
        memo["drift"] = asyncio.create_task(drift_forever(state, interval))
    return state


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    models = (GROUP, VERSION, "models")
    runners = (GROUP, VERSION, "modelrunners")
    interval = settings.reconcile_interval

    register_gateways(registry, settings)  # ModelGateways: gateway_handlers.py

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings)
        api = await api_client()
        await wait_for_resources(api)  # kopf resolves what it serves once, right after this
        memo["state"] = State(Context(Kube(api), operator_settings), announce)
        memo["memory"] = asyncio.create_task(MemoryKeeper().run())

    operator_settings = settings

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        in_cluster = kopf.login_with_service_account(**kwargs)
        return in_cluster or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        memo["memory"].cancel()
        if "drift" in memo:
            memo["drift"].cancel()
        await memo["state"].ctx.inventory.close()
        await memo["state"].ctx.kube.api.close()

    # In-memory indices fed by the watch streams (kopf fills them before any handler runs):
    # a reconcile reads Models and ModelRunners from here instead of listing them.
    @kopf.index(*models, id="model_index", registry=registry)
    def model_index(body: kopf.Body, **_: Any) -> dict[str, Any]:
        return {body["metadata"]["namespace"]: compact(body)}

    @kopf.index(*runners, id="runner_index", registry=registry)
    def runner_index(body: kopf.Body, **_: Any) -> dict[str, Any]:
        return {body["metadata"]["namespace"]: compact(body)}

    # Models react to their own changes only; drift is found per runner instance (below).
    # An unexpected error (the API server restarting) is retried after 15 s, not kopf's 60.
    @kopf.on.resume(*models, registry=registry, backoff=RETRY_SECONDS)
    @kopf.on.create(*models, registry=registry, backoff=RETRY_SECONDS)
    @kopf.on.update(*models, field="spec", registry=registry, backoff=RETRY_SECONDS)
    async def model_changed(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **kw: Any) -> None:
        state = _state(memo, kw)
        async with state.locks.hold(body["metadata"]["uid"]):
            status = await reconcile_model(state.ctx, state.with_last(dict(body)))
        changed = state.to_write(dict(body), status)
        if changed:
            announce(body, status)
            patch.status.update(changed)
            state.became(dict(body), status)

    @kopf.on.delete(*models, registry=registry)
    async def model_deleted(body: kopf.Body, memo: kopf.Memo, **kw: Any) -> None:
        state = _state(memo, kw)
        async with state.locks.hold(body["metadata"]["uid"]):
            results = await remove_model(state.ctx, dict(body))
        pending = [r for r in results if r.state != "Deleted"]
        if pending:
            message = "; ".join(f"{r.instance.name}: {r.message}" for r in pending)
            kopf.event(body, type="Warning", reason="DeleteRetry", message=message)
            raise kopf.TemporaryError(
                f"model not yet removed everywhere: {message}", delay=interval
            )
        state.forget(body["metadata"]["uid"])
        kopf.event(
            body, type="Normal", reason="Deleted", message="removed from every runner instance"
        )

    @kopf.on.resume(*runners, registry=registry)
    @kopf.on.create(*runners, registry=registry)
    @kopf.on.update(*runners, field="spec", registry=registry)
    async def runner_changed(
        body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **kw: Any
    ) -> None:
        state = _state(memo, kw)
        async with state.locks.hold(body["metadata"]["uid"]):
            status = await reconcile_runner(state.ctx, dict(body))
        patch.status.update(changes(body.get("status"), status))

    # Drift (each instance listed once, only the Models that differ reconciled) runs in one
    # loop over all ModelRunners (drift_loop.py), not a kopf timer: a timer puts a finalizer on
    # every ModelRunner, and deleting one hung while the operator was down.

    # A runner pod changed (created, containers ready, deleted): reconcile its ModelRunner now,
    # so a new replica gets its models and its models-ready gate without waiting for the timer.
    @kopf.on.event("v1", "pods", labels={LABEL_MANAGED: MANAGER}, registry=registry)
    async def runner_pod_changed(body: kopf.Body, memo: kopf.Memo, **kw: Any) -> None:
        state = _state(memo, kw)
        runner = await runner_of_pod(state.ctx, dict(body))
        if runner is not None:
            state.ctx.resolver.forget(runner["metadata"]["namespace"], runner["metadata"]["name"])
            async with state.locks.hold(runner["metadata"]["uid"]):
                await refresh_runner(state.ctx, runner)


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf's own bookkeeping lives in annotations under modelrunner.io (a structural schema
    would prune it from status), and only warnings become Events: progress is in status."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # handler logs; our own Events use kopf.event
    settings.watching.server_timeout = 300
    # kopf gives up on an API error after its backoffs (about a minute by default), and a watch
    # given up on is not restarted: an API server or etcd slow to come back (a 503 for longer
    # than that) would leave the operator running but deaf. Keep trying for about five minutes.
    settings.networking.error_backoffs = (1, 1, 2, 3, 5, 8, 13, 21, *(30,) * 8)
    # No kopf timers or daemons remain (drift_loop.py, gateway_loop.py): nothing for kopf's
    # background cancellation to wait on when an object is deleted.


def announce(body: Any, status: dict[str, Any]) -> None:
    """One Event per phase change (not one per poll)."""
    before = (body.get("status") or {}).get("phase")
    after = status.get("phase")
    if before == after:
        return
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions", []) if c["type"] == "Ready"), {}
    )
    message = str(ready.get("message", ""))
    if after == "Failed":
        kopf.event(body, type="Warning", reason="Failed", message=message)
    elif after == "Ready":
        kopf.event(body, type="Normal", reason="Ready", message=message)
    elif before in (None, "Ready") and after == "Pending":
        kopf.event(body, type="Normal", reason="Reconciling", message=message)
