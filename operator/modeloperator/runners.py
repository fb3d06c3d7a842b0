"""Observe -> plan -> execute for ModelRunners: the owned objects, the models of each new replica
and its models-ready gate (gate.py), and the runner's status."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from modeloperator import conditions
from modeloperator.auth import ensure_management_secret, management_token
from modeloperator.conditions import now
from modeloperator.credentials import SecretError
from modeloperator.gate import (
    Gate,
    ModelOnInstance,
    decide,
    gate_condition,
    needs_patch,
    pending_condition,
    served_elsewhere,
)
from modeloperator.instances import Instance, resolve
from modeloperator.kube import API_VERSION
from modeloperator.plan import references_in_use, selects
from modeloperator.reconcile import (
    Context,
    InstanceResult,
    converge_instance,
    model_view,
    pull_auth,
)
from modeloperator.resources import (
    LABEL_INSTANCE,
    endpoint,
    external_objects,
    headless_service,
    service,
    statefulset,
)
from modeloperator.runnerclient import RunnerError


def unschedulable_reason(pods: list[dict[str, Any]]) -> str | None:
    for pod in pods:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return str(cond.get("message") or cond.get("reason") or "Unschedulable")
    return None


async def _quiet(_: dict[str, Any]) -> None:
    """Pull progress of a new replica is not written to the Model: its own handler does that."""


async def _set_gate(ctx: Context, instance: Instance, namespace: str, gate: Gate) -> None:
    if instance.pod is not None and needs_patch(instance.pod, gate):
        await ctx.kube.patch_pod_condition(
            instance.name, namespace, {**gate.condition(), "lastTransitionTime": now()}
        )


async def _converge_all(
    ctx: Context, instance: Instance, models: list[dict[str, Any]], others: list[Any]
) -> list[InstanceResult]:
    """Every selected Model onto one new replica, one after another; those waiting for another
    Model (a copy or a Modelfile of one converged later in the list) get another pass while
    passes make progress."""
    namespace = instance.pod["metadata"]["namespace"] if instance.pod else ""
    results: dict[str, InstanceResult] = {}
    todo = models
    while todo:
        for body in todo:
            view = model_view(body)
            needed = references_in_use(others, exclude=view.name)
            try:
                auth = await pull_auth(ctx, namespace, view)
            except SecretError as exc:
                results[view.name] = InstanceResult(instance, "Waiting", f"pullSecretRef: {exc}")
                continue
            results[view.name] = await converge_instance(ctx, instance, view, needed, _quiet, auth)
        waiting = [m for m in todo if results[m["metadata"]["name"]].state == "Waiting"]
        todo = waiting if len(waiting) < len(todo) else []
    return [results[m["metadata"]["name"]] for m in models]


async def admit(ctx: Context, runner: dict[str, Any], instances: list[Instance]) -> list[Instance]:
    """Put the selected Models on each replica whose gate is not open yet, then open or hold
    its gate; returns the instances with ``serving`` as the gates now stand."""
    pending = [i for i in instances if not i.serving]
    if not pending:
        return instances
    meta = runner["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    models = [m for m in await ctx.models(namespace)
              if not m["metadata"].get("deletionTimestamp")]  # fmt: skip
    selector = (runner.get("spec") or {}).get("modelSelector")
    selected = [m for m in models if selects(selector, m["metadata"].get("labels") or {})]
    others = [model_view(m) for m in models]
    for instance in pending:
        if gate_condition(instance.pod or {}).get("status") != "False":  # absent, or kwok's True
            await _set_gate(ctx, instance, namespace, pending_condition(len(selected)))
    converged = await asyncio.gather(
        *(_converge_all(ctx, i, selected, others) for i in pending)
    )  # fmt: skip
    by_instance = {i.name: results for i, results in zip(pending, converged, strict=True)}
    ready_on = {
        i: {m["metadata"]["name"] for m, r in zip(selected, results, strict=True)
            if r.state == "Ready"}
        for i, results in by_instance.items()
    }  # fmt: skip
    serving = {i.name for i in instances if i.serving}
    out = []
    for instance in instances:
        results = by_instance.get(instance.name)
        if results is None:
            out.append(instance)
            continue
        seen = []
        for body, result in zip(selected, results, strict=True):
            model = body["metadata"]["name"]
            # Ready on another replica: one that serves (the Model's status), or another new
            # one that just got it (this pass).
            elsewhere = served_elsewhere(
                body.get("status") or {}, name, instance.name, serving
            ) or any(model in ready for other, ready in ready_on.items() if other != instance.name)
            seen.append(ModelOnInstance(model, result.state, result.message, elsewhere))
        gate = decide(seen)
        await _set_gate(ctx, instance, namespace, gate)
        out.append(replace(instance, serving=gate.open))
    return out


async def reconcile_runner(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    meta, spec = body["metadata"], body.get("spec") or {}
    name, namespace = meta["name"], meta["namespace"]
    generation = int(meta.get("generation") or 0)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "endpoint": endpoint(name, namespace),
    }
    if not spec.get("external"):
        await ensure_management_secret(ctx.kube, body)
    try:
        token = await management_token(ctx.kube, body)
        secret_problem = None
    except SecretError as exc:
        token, secret_problem = None, f"management secret: {exc}"
    if spec.get("external"):
        for obj in external_objects(name, namespace, spec["external"]["url"]):
            await ctx.kube.apply(obj, body)
        instance = Instance(name, "external", spec["external"]["url"], token=token)
        try:  # the listing the drift pass and the Models then share
            max_age = min(ctx.settings.observe_ttl, ctx.settings.reconcile_interval / 2)
            await ctx.view(instance).models(max_age)
            up = secret_problem is None
            message = secret_problem or f"external server {instance.url} answers"
        except RunnerError as exc:
            up, message = False, secret_problem or exc.message
        status.update(replicas=1, readyReplicas=1 if up else 0,
                      instances=[{"name": "external", "url": instance.url, "ready": up}])  # fmt: skip
        reason = "Ready" if up else "SecretUnusable" if secret_problem else "RunnerUnreachable"
        status["conditions"] = conditions.merge(
            (body.get("status") or {}).get("conditions"),
            conditions.summary(up, not up, False, reason, message, generation),
        )
        return status
    await ctx.kube.apply(headless_service(name, namespace), body)
    await ctx.kube.apply(service(name, namespace), body)
    sts = await ctx.kube.apply(statefulset(name, namespace, spec, ctx.settings.runner_image), body)
    sts_status = sts.get("status") or {}
    labels = ",".join(f"{k}={v}" for k, v in sts["spec"]["selector"]["matchLabels"].items())
    pods = await ctx.kube.list_objects("v1", "Pod", namespace, labels)
    # Resolved afresh (not the Models' shared cache): the gates are decided on current pods.
    found = await resolve(ctx.kube, ctx.settings, body)
    ctx.resolver.forget(namespace, name)
    instances = await admit(ctx, body, found)
    want = int(spec.get("replicas", 1))
    # Ready replicas as Kubernetes counts them: containers ready and the models-ready gate open.
    ready_count = sum(i.serving for i in instances)
    status.update(
        replicas=int(sts_status.get("replicas") or len(pods)),
        readyReplicas=ready_count,
        instances=[{"name": i.name, "url": i.url, "ready": i.serving} for i in instances],
    )
    blocked = unschedulable_reason(pods)
    if secret_problem and ready_count < want:
        ready, reconciling, stalled = False, False, True
        reason, message = "SecretUnusable", secret_problem
    elif blocked and ready_count < want:
        ready, reconciling, stalled = False, False, True
        reason, message = "Unschedulable", blocked
    elif ready_count >= want:
        ready, reconciling, stalled = True, False, False
        reason, message = "Ready", f"{ready_count}/{want} runner pods ready"
    else:
        ready, reconciling, stalled = False, True, False
        reason, message = "Progressing", f"{ready_count}/{want} runner pods ready"
    status["conditions"] = conditions.merge(
        (body.get("status") or {}).get("conditions"),
        conditions.summary(ready, reconciling, stalled, reason, message, generation),
    )
    return status


async def runner_of_pod(ctx: Context, pod: dict[str, Any]) -> dict[str, Any] | None:
    """The live ModelRunner that owns a runner pod (by its instance label), if any."""
    meta = pod["metadata"]
    name = (meta.get("labels") or {}).get(LABEL_INSTANCE)
    if not name:
        return None
    runner = await ctx.kube.get(API_VERSION, "ModelRunner", name, meta["namespace"])
    if runner is None or runner["metadata"].get("deletionTimestamp"):
        return None
    return None if (runner.get("spec") or {}).get("external") else runner


async def refresh_runner(ctx: Context, runner: dict[str, Any]) -> None:
    """Reconcile a ModelRunner outside its own handlers (a pod changed) and write its status.
    The caller holds the runner's lock; the runner is read again under it."""
    meta = runner["metadata"]
    current = await ctx.kube.get(API_VERSION, "ModelRunner", meta["name"], meta["namespace"])
    if current is None or current["metadata"].get("uid") != meta.get("uid"):
        return
    status = await reconcile_runner(ctx, current)
    await ctx.kube.patch_status("modelrunners", meta["namespace"], meta["name"], status)
