"""Observe -> plan -> execute for ModelGateways: the owned objects (gateway_resources.py), the
routing table in their ConfigMap (routes_table.py), and autoscaling of the runners they front
from the demand the gateway pods report and the load the runners' instances report themselves
(load.py, autoscale.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from modeloperator import GROUP, VERSION, conditions
from modeloperator.autoscale import Decision, Demand, Policy, combine, decide
from modeloperator.conditions import now
from modeloperator.gateway_resources import (
    deployment,
    endpoint,
    gateway_selector,
    gateway_service,
    role,
    role_binding,
    routes_config_map,
    routes_name,
    service_account,
    service_name,
    token_file,
)
from modeloperator.instances import Instance, containers_ready, resolve
from modeloperator.load import FAST_TIMEOUT, Arrivals, gateway_demand, runner_loads
from modeloperator.reconcile import Context
from modeloperator.resources import OLLAMA_PORT, management_ref
from modeloperator.routes_table import (
    InstanceView,
    RunnerView,
    build,
    fronted,
    render,
    selected_models,
    summary,
)
from modeloperator.runnerclient import RunnerError

log = logging.getLogger(__name__)
DEMAND_PATH = "/gateway/v1/demand"


@dataclass
class GatewayState:
    """The gateways' shared memory (kopf memo): a change counter per namespace (Models, runner
    pods, ModelRunners), the
    last table written per gateway, the last demand each gateway reported, and per runner when
    its replicas were last all needed, and when requests last arrived at each runner instance."""

    changes: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))  # per ns
    seen: dict[str, int] = field(default_factory=dict)  # gateway uid -> changes[ns] at refresh
    written: dict[str, str] = field(default_factory=dict)  # gateway uid -> routes.json
    refreshed: dict[str, float] = field(default_factory=dict)  # gateway uid -> monotonic
    demand: dict[tuple[str, str], tuple[float, dict[str, Demand]]] = field(default_factory=dict)
    fronts: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    needed_at: dict[str, float] = field(default_factory=dict)  # runner uid -> unix time
    reported: dict[str, dict[str, Any]] = field(default_factory=dict)  # runner uid -> status
    fingerprints: dict[str, str] = field(default_factory=dict)
    # gateway uid -> the runner token Secrets its Deployment mounts (absent: no Deployment yet,
    # or its Service name is taken and the gateway is stalled).
    mounted: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)  # gateway uids whose Service name is taken
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    arrivals: Arrivals = field(default_factory=Arrivals)


def token_secrets(runners: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """The management token Secret of each fronted runner (an external one only if it names
    one)."""
    out = {}
    for runner in runners:
        spec = runner.get("spec") or {}
        external = spec.get("external")
        if external and not external.get("managementSecretRef"):
            continue
        out[runner["metadata"]["name"]] = management_ref(runner["metadata"]["name"], spec)
    return out


def service_conflict(existing: dict[str, Any] | None, owner_uid: str) -> str | None:
    """Why the gateway cannot take the Service name (another object owns that Service)."""
    if existing is None:
        return None
    owners = existing["metadata"].get("ownerReferences") or []
    mine = any(o.get("uid") == owner_uid for o in owners)
    if mine:
        return None
    holder = next((f"{o.get('kind')} {o.get('name')!r}" for o in owners), "another owner")
    return f"Service {existing['metadata']['name']!r} belongs to {holder}"


async def _runner_view(ctx: Context, runner: dict[str, Any], models: list[dict[str, Any]],
                       tokens: dict[str, tuple[str, str]]) -> RunnerView:  # fmt: skip
    meta, spec = runner["metadata"], runner.get("spec") or {}
    name = meta["name"]
    instances = [i for i in await resolve(ctx.kube, ctx.settings, runner) if i.serving]
    views = await asyncio.gather(*(_instance_view(ctx, i) for i in instances))
    return RunnerView(
        name=name,
        namespace=meta["namespace"],
        replicas=1 if spec.get("external") else int(spec.get("replicas", 1)),
        models=selected_models(runner, models),
        instances=[v for v in views if v is not None],
        token_file=token_file(name) if name in tokens else None,
    )


async def _instance_view(ctx: Context, instance: Instance) -> InstanceView | None:
    """What the instance holds now (a fresh listing through the operator's shared view of it:
    a refresh follows a change, such as a pod's gate opening after its last pull); None when it
    does not answer."""
    try:
        tags = frozenset((await ctx.view(instance).models(max_age=0.0)).models)
    except RunnerError as exc:
        log.info("routes: %s left out: %s", instance.name, exc.message)
        return None
    ip = ((instance.pod or {}).get("status") or {}).get("podIP")
    # The gateway is in the cluster: pod IPs, never the operator's own address overrides.
    url = f"http://{ip}:{OLLAMA_PORT}" if ip else instance.url
    name = instance.name if instance.pod is not None else instance.runner
    return InstanceView(name, url, tags)


async def routing_table(
    ctx: Context, gateway: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The table for ``gateway`` and the runners it fronts."""
    namespace = gateway["metadata"]["namespace"]
    selector = (gateway.get("spec") or {}).get("runnerSelector")
    runners = fronted(selector, await ctx.runners(namespace))
    models = await ctx.models(namespace)
    tokens = token_secrets(runners)
    views = await asyncio.gather(*(_runner_view(ctx, r, models, tokens) for r in runners))
    return build(list(views)), runners


async def write_routes(
    ctx: Context, state: GatewayState, gateway: dict[str, Any]
) -> dict[str, Any]:
    """Compute the table and write the ConfigMap when its content changed; returns the table."""
    meta = gateway["metadata"]
    table, runners = await routing_table(ctx, gateway)
    content = render(table)
    key = (meta["namespace"], meta["name"])
    state.fronts[key] = {r["metadata"]["name"] for r in runners}
    if state.written.get(meta["uid"]) != content:
        await ctx.kube.apply(routes_config_map(meta["name"], meta["namespace"], content), gateway)
        state.written[meta["uid"]] = content
    state.refreshed[meta["uid"]] = time.monotonic()
    tokens = token_secrets(runners)
    if meta["uid"] in state.mounted and state.mounted[meta["uid"]] != tokens:
        # A runner joined or left: its token must be mounted before the gateway calls it.
        await apply_deployment(ctx, state, gateway, tokens)
    return table


async def apply_deployment(
    ctx: Context, state: GatewayState, gateway: dict[str, Any], tokens: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    meta = gateway["metadata"]
    spec = gateway.get("spec") or {}
    obj = deployment(meta["name"], meta["namespace"], spec, ctx.settings.runner_image, tokens)
    applied = await ctx.kube.apply(obj, gateway)
    state.mounted[meta["uid"]] = tokens
    return applied


async def reconcile_gateway(
    ctx: Context, state: GatewayState, body: dict[str, Any]
) -> dict[str, Any]:
    meta, spec = body["metadata"], body.get("spec") or {}
    name, namespace = meta["name"], meta["namespace"]
    generation = int(meta.get("generation") or 0)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "endpoint": endpoint(name, namespace, spec),
        "routesConfigMap": routes_name(name),
    }
    old = (body.get("status") or {}).get("conditions")
    svc_name = service_name(name, spec)
    conflict = service_conflict(await ctx.kube.get("v1", "Service", svc_name, namespace),
                                meta["uid"])  # fmt: skip
    if conflict:
        state.mounted.pop(meta["uid"], None)
        state.blocked.add(meta["uid"])
        status["conditions"] = conditions.merge(
            old, conditions.summary(False, False, True, "ServiceConflict", conflict, generation)
        )
        return status
    for obj in (service_account(name, namespace), role(name, namespace),
                role_binding(name, namespace)):  # fmt: skip
        await ctx.kube.apply(obj, body)
    state.blocked.discard(meta["uid"])
    state.written.pop(meta["uid"], None)  # a spec change re-applies the ConfigMap too
    table = await write_routes(ctx, state, body)
    await ctx.kube.apply(gateway_service(name, namespace, spec), body)
    runners = [r["name"] for r in table["runners"]]
    tokens = token_secrets(await _by_name(ctx, namespace, runners))
    deploy = await apply_deployment(ctx, state, body, tokens)
    status.update(_table_status(table))
    dep_status = deploy.get("status") or {}
    want = int(spec.get("replicas", 1))
    ready_count = int(dep_status.get("readyReplicas") or 0)
    status.update(replicas=int(dep_status.get("replicas") or 0), readyReplicas=ready_count)
    if ready_count >= want:
        ready, reason = True, "Ready"
        message = f"{ready_count}/{want} gateway pods ready, fronting {len(runners)} runner(s)"
    else:
        ready, reason = False, "Progressing"
        message = f"{ready_count}/{want} gateway pods ready"
    status["conditions"] = conditions.merge(
        old, conditions.summary(ready, not ready, False, reason, message, generation)
    )
    return status


def _table_status(table: dict[str, Any]) -> dict[str, Any]:
    runners = summary(table)
    models = {m for r in runners for m in r["models"]}
    return {"runners": runners, "runnerCount": len(runners), "modelCount": len(models)}


async def _by_name(ctx: Context, namespace: str, names: list[str]) -> list[dict[str, Any]]:
    wanted = set(names)
    return [r for r in await ctx.runners(namespace) if r["metadata"]["name"] in wanted]


# -- demand and autoscaling ------------------------------------------------------------------


async def poll_demand(ctx: Context, gateway: dict[str, Any]) -> dict[str, Demand] | None:
    """The summed demand the gateway's ready pods report; None when none answered."""
    meta = gateway["metadata"]
    labels = ",".join(f"{k}={v}" for k, v in gateway_selector(meta["name"]).items())
    pods = await ctx.kube.list_objects("v1", "Pod", meta["namespace"], labels)
    urls = [f"http://{p['status']['podIP']}:{OLLAMA_PORT}{DEMAND_PATH}" for p in pods
            if (p.get("status") or {}).get("podIP") and containers_ready(p)
            and not p["metadata"].get("deletionTimestamp")]  # fmt: skip
    return await gateway_demand(urls)


def runner_demand(
    state: GatewayState, namespace: str, runner: str, fresh_after: float
) -> Demand | None:
    """The runner's demand summed over every gateway that fronts it and reported recently."""
    found: Demand | None = None
    for (ns, gateway), (at, demand) in state.demand.items():
        if ns != namespace or at < fresh_after or runner not in state.fronts.get((ns, gateway), ()):
            continue
        found = (found or Demand()) + demand.get(runner, Demand())
    return found


def autoscaled(runner: dict[str, Any]) -> bool:
    spec = runner.get("spec") or {}
    return bool(spec.get("autoscaling")) and not spec.get("external")


async def scale_runner(ctx: Context, state: GatewayState, runner: dict[str, Any],
                       demand: Demand | None) -> Decision | None:  # fmt: skip
    meta, spec = runner["metadata"], runner.get("spec") or {}
    if not autoscaled(runner):
        return None
    policy = Policy.of(spec["autoscaling"])
    current = int(spec.get("replicas", 1))
    wall = time.time()
    needed_at = state.needed_at.setdefault(meta["uid"], wall)
    decision = decide(policy, current, demand, wall, needed_at)
    state.needed_at[meta["uid"]] = decision.needed_at
    api = client.CustomObjectsApi(ctx.kube.api)
    if decision.replicas != current:
        log.info("autoscale %s/%s: %d -> %d (%s)", meta["namespace"], meta["name"], current,
                 decision.replicas, decision.reason)  # fmt: skip
        await api.patch_namespaced_custom_object(  # type: ignore[call-arg]
            GROUP, VERSION, meta["namespace"], "modelrunners", meta["name"],
            {"spec": {"replicas": decision.replicas}},
            _content_type="application/merge-patch+json",
        )  # fmt: skip
    report = {
        "currentReplicas": current,
        "desiredReplicas": decision.replicas,
        "inFlight": demand.in_flight if demand else 0,
        "queued": demand.queued if demand else 0,
        "reason": decision.reason,
    }
    if state.reported.get(meta["uid"]) != report:
        stamp = {"lastScaleTime": now()} if decision.replicas != current else {}
        await ctx.kube.patch_status("modelrunners", meta["namespace"], meta["name"],
                                    {"autoscaling": {**report, **stamp}})  # fmt: skip
        state.reported[meta["uid"]] = report
    return decision


async def tick(ctx: Context, state: GatewayState, gateway: dict[str, Any], interval: float) -> None:
    """One pass of a gateway's loop: the routing table when something changed (or once per
    reconcile interval), the gateway's demand, and the replicas of the autoscaled runners it
    fronts (from every gateway's demand and the load their instances report)."""
    meta = gateway["metadata"]
    namespace = meta["namespace"]
    if meta["uid"] in state.blocked or meta["uid"] not in state.mounted:
        return  # stalled, or not reconciled yet: its handler writes the first table
    stale = time.monotonic() - state.refreshed.get(meta["uid"], 0.0)
    counter = state.changes[namespace]
    if state.seen.get(meta["uid"]) != counter or stale >= ctx.settings.reconcile_interval:
        state.seen[meta["uid"]] = counter
        await write_routes(ctx, state, gateway)
    demand = await poll_demand(ctx, gateway)
    if demand is not None:
        state.demand[(namespace, meta["name"])] = (time.monotonic(), demand)
    fresh_after = time.monotonic() - 3 * interval - FAST_TIMEOUT
    names = state.fronts.get((namespace, meta["name"]), set())
    runners = [r for r in await _by_name(ctx, namespace, sorted(names)) if autoscaled(r)]
    # Clients that call a runner's own Service count too: its pods' own load (load.py), read
    # for every runner at once (an instance that does not answer costs FAST_TIMEOUT once).
    loads = await asyncio.gather(*(runner_loads(ctx, state.arrivals, r) for r in runners))
    for runner, load in zip(runners, loads, strict=True):
        async with state.locks[runner["metadata"]["uid"]]:
            fronts = runner_demand(state, namespace, runner["metadata"]["name"], fresh_after)
            await scale_runner(ctx, state, runner, combine(fronts, load))
