"""Observe -> plan -> execute for Models (ModelRunners: runners.py). Handlers call these; planning
is pure (plan.py, resources.py); the I/O is the runner API (runnerclient.py) and Kubernetes
(kube.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from modeloperator import conditions
from modeloperator.credentials import SecretError, registry_config
from modeloperator.instances import Instance, resolve
from modeloperator.kube import Kube, KubeError
from modeloperator.plan import (
    Action,
    Copy,
    Create,
    Delete,
    ModelView,
    Pull,
    Wait,
    plan_absent,
    plan_present,
    references_in_use,
    selects,
    spec_hash,
    tag_index,
)
from modeloperator.refs import canonical
from modeloperator.runnerclient import Progress, RunnerClient, RunnerError, Unreachable
from modeloperator.settings import OperatorSettings


@dataclass
class Context:
    kube: Kube
    settings: OperatorSettings


@dataclass
class InstanceResult:
    instance: Instance
    state: str  # Ready | Pulling | Waiting | Failed | Unreachable
    message: str = ""
    digest: str = ""
    show: dict[str, Any] = field(default_factory=dict)

    def to_status(self) -> dict[str, Any]:
        out = {"runner": self.instance.runner, "instance": self.instance.name, "state": self.state}
        if self.digest:
            out["digest"] = self.digest
        if self.message:
            out["message"] = self.message
        return out


def model_view(body: dict[str, Any]) -> ModelView:
    return ModelView(
        name=body["metadata"]["name"],
        spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}),
    )


async def selected_runners(ctx: Context, model: dict[str, Any]) -> list[dict[str, Any]]:
    namespace = model["metadata"]["namespace"]
    labels = model["metadata"].get("labels") or {}
    return [
        r for r in await ctx.kube.runners(namespace)
        if selects((r.get("spec") or {}).get("modelSelector"), labels)
        and not r["metadata"].get("deletionTimestamp")
    ]  # fmt: skip


async def instances_for(ctx: Context, model: dict[str, Any]) -> list[Instance]:
    found: list[Instance] = []
    for runner in await selected_runners(ctx, model):
        found += await resolve(ctx.kube, ctx.settings, runner)
    return found


# -- Models ---------------------------------------------------------------------------------


class ProgressReporter:
    """Writes pull progress into the Model's status, at most every ``interval`` seconds."""

    def __init__(self, ctx: Context, namespace: str, name: str) -> None:
        self.ctx, self.namespace, self.name = ctx, namespace, name
        self.last = 0.0

    async def __call__(self, line: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.last < self.ctx.settings.progress_interval:
            return
        self.last = now
        layer = line.get("layer") or {}
        progress = {
            "status": str(line.get("status") or line.get("message") or ""),
            "completed": int(line.get("completed") or layer.get("current") or 0),
            "total": int(line.get("total") or layer.get("size") or 0),
        }
        await self.ctx.kube.patch_status(
            "models", self.namespace, self.name, {"phase": "Pulling", "progress": progress}
        )


async def execute(
    client: RunnerClient, action: Action, progress: Progress, auth: str | None = None
) -> None:
    if isinstance(action, Pull):
        if action.docker:
            await client.pull_docker(action.source, progress, auth)
        else:
            await client.pull(action.source, action.insecure, progress, auth)
    elif isinstance(action, Copy):
        await client.copy(action.source, action.destination)
    elif isinstance(action, Create):
        await client.create(action.name, action.fields)
    elif isinstance(action, Delete):
        await client.delete(action.name)


async def pull_auth(ctx: Context, namespace: str, view: ModelView) -> str | None:
    """The ``X-Registry-Config`` value of the Model's pull secret (None without one); raises
    SecretError when the Secret is missing or unusable."""
    ref = view.spec.get("pullSecretRef") if view.kind == "source" else None
    if not ref:
        return None
    try:
        secret = await ctx.kube.secret(ref["name"], namespace)
    except KubeError as exc:
        raise SecretError(str(exc)) from None
    if secret is None:
        raise SecretError(f"Secret {ref['name']!r} not found")
    return registry_config(secret)


async def converge_instance(
    ctx: Context,
    instance: Instance,
    view: ModelView,
    needed: set[str],
    progress: Progress,
    auth: str | None = None,
) -> InstanceResult:
    settings = ctx.settings
    client = RunnerClient(
        instance.url, settings.request_timeout, settings.pull_timeout, instance.token
    )
    try:
        tags = tag_index(await client.tags())
        actions = plan_present(view, tags, needed)
        for action in actions:
            if isinstance(action, Wait):
                return InstanceResult(instance, "Waiting", action.message)
            await execute(client, action, progress, auth)
        shown = await client.show(view.served)
        digest = tag_index(await client.tags()).get(canonical(view.name), "")
        return InstanceResult(instance, "Ready", digest=digest, show=shown)
    except Unreachable as exc:
        return InstanceResult(instance, "Unreachable", exc.message)
    except RunnerError as exc:
        return InstanceResult(instance, "Failed", exc.message)


async def reconcile_model(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """Bring every selected runner instance in line with the Model; return its new status."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation") or 0)
    view = model_view(body)
    others = [
        model_view(m) for m in await ctx.kube.models(namespace)
        if not m["metadata"].get("deletionTimestamp")
    ]  # fmt: skip
    needed = references_in_use(others, exclude=name)
    instances = await instances_for(ctx, body)
    progress = ProgressReporter(ctx, namespace, name)
    try:
        auth = await pull_auth(ctx, namespace, view)
    except SecretError as exc:  # every instance waits until the Secret is fixed
        results = [InstanceResult(i, "Waiting", f"pullSecretRef: {exc}") for i in instances]
        return model_status(view, results, generation)
    results = [await converge_instance(ctx, i, view, needed, progress, auth) for i in instances]
    return model_status(view, results, generation)


def model_status(view: ModelView, results: list[InstanceResult], generation: int) -> dict[str, Any]:
    states = {r.state for r in results}
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "runners": [r.to_status() for r in results],
        "progress": None,
    }
    if not results:
        phase, reason, message = (
            "Pending",
            "NoRunner",
            "no ready ModelRunner instance selects this model",
        )
        ready, reconciling, stalled = False, True, False
    elif states == {"Ready"}:
        phase, reason, message = "Ready", "Ready", f"served by {len(results)} runner instance(s)"
        ready, reconciling, stalled = True, False, False
    elif "Failed" in states:
        failed = next(r for r in results if r.state == "Failed")
        phase, reason, message = (
            "Failed",
            "RunnerError",
            f"{failed.instance.name}: {failed.message}",
        )
        ready, reconciling, stalled = False, False, True
    elif "Unreachable" in states:
        down = next(r for r in results if r.state == "Unreachable")
        phase, reason, message = "Pending", "RunnerUnreachable", down.message
        ready, reconciling, stalled = False, True, False
    else:
        waiting = next(r for r in results if r.state != "Ready")
        phase, reason, message = "Pending", "Waiting", waiting.message
        ready, reconciling, stalled = False, True, False
    status["phase"] = phase
    status["conditions"] = conditions.merge(
        view.status.get("conditions"),
        conditions.summary(ready, reconciling, stalled, reason, message, generation),
    )
    served = [r for r in results if r.state == "Ready"]
    if served:
        first = served[0]
        details = first.show.get("details") or {}
        info = first.show.get("model_info") or {}
        arch = str(info.get("general.architecture", ""))
        status["digest"] = "sha256:" + first.digest if first.digest else None
        status["details"] = {
            "family": details.get("family", ""),
            "parameterSize": details.get("parameter_size", ""),
            "quantization": details.get("quantization_level", ""),
            "contextLength": int(info.get(f"{arch}.context_length") or 0),
            "capabilities": list(first.show.get("capabilities") or []),
        }
    if ready:
        if view.kind == "source":
            status["source"] = view.spec["source"]
        status["appliedHash"] = spec_hash(view.spec)
    return status


async def remove_model(ctx: Context, body: dict[str, Any]) -> list[InstanceResult]:
    """Delete the model from every instance (unless Retain). Unreachable instances are reported
    so the caller can keep the finalizer and retry."""
    view = model_view(body)
    namespace = body["metadata"]["namespace"]
    others = [model_view(m) for m in await ctx.kube.models(namespace)]
    needed = references_in_use(others, exclude=view.name)
    results = []
    for instance in await instances_for(ctx, body):
        client = RunnerClient(instance.url, ctx.settings.request_timeout, token=instance.token)
        try:
            tags = tag_index(await client.tags())
            for action in plan_absent(view, tags, needed):
                await execute(client, action, ProgressReporter(ctx, namespace, view.name))
            results.append(InstanceResult(instance, "Deleted"))
        except Unreachable as exc:
            results.append(InstanceResult(instance, "Unreachable", exc.message))
        except RunnerError as exc:
            results.append(InstanceResult(instance, "Failed", exc.message))
    return results
