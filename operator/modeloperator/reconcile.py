"""Observe -> plan -> execute for Models (ModelRunners: runners.py). Handlers call these; planning
is pure (plan.py, resources.py); the I/O is the runner API (runnerclient.py) and Kubernetes
(kube.py)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from modeloperator import conditions
from modeloperator.credentials import SecretError, registry_config
from modeloperator.instances import Instance, Resolver
from modeloperator.inventory import InstanceView, Inventory, Snapshot
from modeloperator.kube import Kube, KubeError
from modeloperator.plan import (
    Action,
    Copy,
    Create,
    Delete,
    InUseElsewhere,
    ModelView,
    Pull,
    Wait,
    plan_absent,
    plan_present,
    reference_counts,
    references_of,
    selects,
    spec_hash,
)
from modeloperator.refs import canonical
from modeloperator.runnerclient import Progress, RunnerClient, RunnerError, Unreachable
from modeloperator.runtime import desired_policy, same_policy, status_runtime
from modeloperator.settings import OperatorSettings
from modeloperator.status import human_size

REFERENCES_TTL = 1.0


class Catalog:
    """Models and ModelRunners by namespace as kopf's indices hold them (kept current by the
    watch streams), so a reconcile lists nothing from the API server."""

    def __init__(self, models: Any, runners: Any) -> None:
        self.model_index, self.runner_index = models, runners

    def models(self, namespace: str) -> list[dict[str, Any]]:
        return list(self.model_index.get(namespace, []))

    def runners(self, namespace: str) -> list[dict[str, Any]]:
        return list(self.runner_index.get(namespace, []))

    def all_runners(self) -> list[dict[str, Any]]:
        return every(self.runner_index)


def every(index: Any) -> list[dict[str, Any]]:
    """Every object a kopf index (namespace -> objects) holds, across namespaces."""
    return [item for namespace in list(index) for item in index.get(namespace, [])]


@dataclass
class Context:
    kube: Kube
    settings: OperatorSettings
    catalog: Catalog | None = None
    inventory: Inventory = field(init=False)
    resolver: Resolver = field(init=False)
    _counts: dict[tuple[str, bool], tuple[float, Counter[str], dict[str, list[str]]]] = field(
        init=False
    )

    def __post_init__(self) -> None:
        s = self.settings
        self.inventory = Inventory(s.request_timeout, s.pull_timeout, s.runner_concurrency)
        self.resolver = Resolver(self.kube, s)
        self._counts = {}

    async def in_use_elsewhere(
        self, namespace: str, model: dict[str, Any], live: bool = True
    ) -> Container[str]:
        """Names other Models of the namespace serve or pull (``live``: not being deleted),
        counted once a second per namespace, not once per reconcile."""
        key, now = (namespace, live), time.monotonic()
        cached = self._counts.get(key)
        if cached is None or now - cached[0] > REFERENCES_TTL:
            models = await self.models(namespace)
            chosen = [m for m in models if not (live and m["metadata"].get("deletionTimestamp"))]
            counted = {
                str(m["metadata"].get("uid")): references_of(
                    m["metadata"]["name"], m.get("spec") or {}
                )
                for m in chosen
            }
            cached = (now, reference_counts(chosen), counted)
            self._counts[key] = cached
        # What the count holds for this Model (its spec then, or nothing if it predates it).
        own = cached[2].get(str(model["metadata"].get("uid")), [])
        return InUseElsewhere(cached[1], tuple(own))

    async def models(self, namespace: str) -> list[dict[str, Any]]:
        if self.catalog is not None:
            return self.catalog.models(namespace)
        return await self.kube.models(namespace)

    async def runners(self, namespace: str) -> list[dict[str, Any]]:
        if self.catalog is not None:
            return self.catalog.runners(namespace)
        return await self.kube.runners(namespace)

    def view(self, instance: Instance) -> InstanceView:
        return self.inventory.view(instance.url, instance.token)


@dataclass
class InstanceResult:
    instance: Instance
    state: str  # Ready | Pulling | Waiting | Failed | Unreachable
    message: str = ""
    digest: str = ""
    size: int = 0
    policy: dict[str, Any] | None = None

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
        r for r in await ctx.runners(namespace)
        if selects((r.get("spec") or {}).get("modelSelector"), labels)
        and not r["metadata"].get("deletionTimestamp")
    ]  # fmt: skip


async def instances_for(ctx: Context, model: dict[str, Any]) -> list[Instance]:
    found: list[Instance] = []
    for runner in await selected_runners(ctx, model):
        found += await ctx.resolver.instances(runner)
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


async def apply_policy(
    view: InstanceView, model: ModelView, snap: Snapshot
) -> dict[str, Any] | None:
    """Bring the instance's runtime policy of ``model`` in line with its ``spec.runtime``;
    return the policy in effect. Nothing is re-pulled: the runner applies a policy in place."""
    desired = desired_policy(model.spec.get("runtime"))
    stored = None if snap.policies is None else snap.policies.get(canonical(model.name))
    if desired is None:
        if stored is not None:  # the Model stopped declaring one
            async with view.calls:
                await view.client.delete_policy(model.served)
            view.set_policy(model.name, None)
        return None
    if snap.policies is None:
        raise RunnerError("this runner has no runtime policy route (/runner/policies)")
    if same_policy(desired, stored):
        return stored
    async with view.calls:
        applied = await view.client.put_policy(model.served, desired)
    view.set_policy(model.name, applied)
    return applied


async def converge_instance(
    ctx: Context,
    instance: Instance,
    view: ModelView,
    needed: Container[str],
    progress: Progress,
    auth: str | None = None,
) -> InstanceResult:
    """Plan against the instance's shared listing, run the actions (bounded per instance), and
    read the result from one listing taken after them."""
    runner = ctx.view(instance)
    max_age = ctx.settings.observe_ttl
    try:
        snap = await runner.models(max_age)
        wrote = 0.0
        for action in plan_present(view, snap.digests(), needed):
            if isinstance(action, Wait):
                return InstanceResult(instance, "Waiting", action.message)
            async with runner.calls:
                await execute(runner.client, action, progress, auth)
            wrote = time.monotonic()
        if wrote:
            snap = await runner.models(max_age, after=wrote)
        listed = snap.models.get(canonical(view.name))
        if listed is None:
            return InstanceResult(instance, "Waiting", "not listed by the runner yet")
        policy = await apply_policy(runner, view, snap)
        return InstanceResult(instance, "Ready", digest=listed[0], size=listed[1], policy=policy)
    except Unreachable as exc:
        return InstanceResult(instance, "Unreachable", exc.message)
    except RunnerError as exc:
        return InstanceResult(instance, "Failed", exc.message)


async def details_of(
    ctx: Context, view: ModelView, results: list[InstanceResult]
) -> dict[str, Any]:
    """``/api/show`` of the model on one instance that serves it, once per digest: the status
    already holds the details of the digest it shows."""
    served = [r for r in results if r.state == "Ready"]
    if not served:
        return {}
    first = served[0]
    if view.status.get("digest") == "sha256:" + first.digest and view.status.get("details"):
        return dict(view.status["details"])
    runner = ctx.view(first.instance)
    try:
        async with runner.calls:
            shown = await runner.client.show(view.served)
    except RunnerError:
        return dict(view.status.get("details") or {})
    details = shown.get("details") or {}
    info = shown.get("model_info") or {}
    arch = str(info.get("general.architecture", ""))
    return {
        "family": details.get("family", ""),
        "parameterSize": details.get("parameter_size", ""),
        "quantization": details.get("quantization_level", ""),
        "contextLength": int(info.get(f"{arch}.context_length") or 0),
        "capabilities": list(shown.get("capabilities") or []),
    }


async def reconcile_model(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """Bring every selected runner instance in line with the Model; return its new status."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation") or 0)
    view = model_view(body)
    needed = await ctx.in_use_elsewhere(namespace, body)
    instances = await instances_for(ctx, body)
    if not instances:
        runners = await selected_runners(ctx, body)
        if runners and all(scaled_to_zero(r) for r in runners):
            asleep = [r["metadata"]["name"] for r in runners]
            return model_status(view, [], generation, scaled_to_zero_by=asleep)
    progress = ProgressReporter(ctx, namespace, name)
    try:
        auth = await pull_auth(ctx, namespace, view)
    except SecretError as exc:  # every instance waits until the Secret is fixed
        results = [InstanceResult(i, "Waiting", f"pullSecretRef: {exc}") for i in instances]
        return model_status(view, results, generation)
    results = list(
        await asyncio.gather(
            *(converge_instance(ctx, i, view, needed, progress, auth) for i in instances)
        )
    )
    return model_status(view, results, generation, await details_of(ctx, view, results))


def scaled_to_zero(runner: dict[str, Any]) -> bool:
    """A runner its autoscaler has taken to zero replicas (it comes back on demand)."""
    spec = runner.get("spec") or {}
    return bool(spec.get("autoscaling")) and int(spec.get("replicas", 1)) == 0


def model_status(
    view: ModelView,
    results: list[InstanceResult],
    generation: int,
    details: dict[str, Any] | None = None,
    scaled_to_zero_by: list[str] | None = None,
) -> dict[str, Any]:
    states = {r.state for r in results}
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "runners": [r.to_status() for r in results],
        "progress": None,
    }
    if not results and scaled_to_zero_by:
        # Declared and served on demand: the gateway holds its requests while the runner scales
        # up, and the new pod opens only once this model is on it (the readiness gate). Ready,
        # so GitOps health and `kubectl wait` do not read an idle runner as a stuck Model.
        phase, reason = "Ready", "ScaledToZero"
        message = f"{', '.join(sorted(scaled_to_zero_by))} scaled to zero; served on demand"
        ready, reconciling, stalled = True, False, False
    elif not results:
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
        status["digest"] = "sha256:" + first.digest if first.digest else None
        # Every kind (pulled, copied, created from a Modelfile) has its size in /api/tags.
        status["size"] = first.size
        status["sizeHuman"] = human_size(first.size)
        if details:
            status["details"] = details
        status["runtime"] = status_runtime(next((r.policy for r in served if r.policy), None))
    if ready:
        if view.kind == "source":
            status["source"] = view.spec["source"]
        if not scaled_to_zero_by:  # applied to no instance yet
            status["appliedHash"] = spec_hash(view.spec)
    return status


async def remove_model(ctx: Context, body: dict[str, Any]) -> list[InstanceResult]:
    """Delete the model from every instance (unless Retain). Unreachable instances are reported
    so the caller can keep the finalizer and retry."""
    view = model_view(body)
    namespace = body["metadata"]["namespace"]
    needed = await ctx.in_use_elsewhere(namespace, body, live=False)
    retain = view.spec.get("deletionPolicy") == "Retain"

    async def remove(instance: Instance) -> InstanceResult:
        runner = ctx.view(instance)
        try:
            snap = await runner.models(ctx.settings.observe_ttl)
            actions: list[Action] = plan_absent(view, snap.digests(), needed)
            own = Delete(view.served)
            if not retain and own not in actions:  # the listing may predate its create
                actions.insert(0, own)
            async with runner.calls:
                for action in actions:
                    await execute(
                        runner.client, action, ProgressReporter(ctx, namespace, view.name)
                    )
                if not retain and snap.policies and canonical(view.name) in snap.policies:
                    await runner.client.delete_policy(view.served)
                    runner.set_policy(view.name, None)
            return InstanceResult(instance, "Deleted")
        except Unreachable as exc:
            return InstanceResult(instance, "Unreachable", exc.message)
        except RunnerError as exc:
            return InstanceResult(instance, "Failed", exc.message)

    return list(await asyncio.gather(*(remove(i) for i in await instances_for(ctx, body))))
