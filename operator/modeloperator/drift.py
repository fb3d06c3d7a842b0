"""Drift: once per interval each instance of a runner is listed once, and only the Models that no
longer match it are reconciled (a model removed by hand, a restarted runner with a fresh store,
a policy lost, a Model still waiting or failed). Deciding is pure (``drifted``, ``dependents``);
changes to objects are not waited for here: the watch handles them at once (handlers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from modeloperator.inventory import Snapshot
from modeloperator.plan import selects
from modeloperator.reconcile import Context
from modeloperator.refs import canonical
from modeloperator.runnerclient import RunnerError
from modeloperator.runtime import desired_policy, same_policy

SWEEP_CONCURRENCY = 8
_FROM = re.compile(r"^\s*FROM\s+(\S+)", re.IGNORECASE | re.MULTILINE)


def drifted(model: dict[str, Any], runner: str, instance: str, snap: Snapshot | None) -> bool:
    """Whether ``model`` needs a reconcile for this instance (``snap``: its listing, None when
    it did not answer)."""
    meta, spec = model["metadata"], model.get("spec") or {}
    status = model.get("status") or {}
    if meta.get("deletionTimestamp"):
        return False
    if status.get("phase") != "Ready" or status.get("observedGeneration") != meta.get("generation"):
        return True
    entry = next(
        (e for e in status.get("runners") or []
         if e.get("runner") == runner and e.get("instance") == instance),
        None,
    )  # fmt: skip
    if entry is None or entry.get("state") != "Ready" or snap is None:
        return True
    name = canonical(meta["name"])
    listed = snap.models.get(name)
    if listed is None or listed[0] != entry.get("digest"):
        return True
    desired = desired_policy(spec.get("runtime"))
    stored = None if snap.policies is None else snap.policies.get(name)
    if desired is None:
        return stored is not None
    return not same_policy(desired, stored)


def dependents(models: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Models not Ready yet that copy ``name`` or build on it (Modelfile FROM): they waited for
    it and can go on now."""
    wanted = canonical(name)
    out = []
    for model in models:
        spec = model.get("spec") or {}
        if (model.get("status") or {}).get("phase") == "Ready":
            continue
        if model["metadata"].get("deletionTimestamp"):
            continue
        origin = spec.get("copyFrom")
        if origin is None and spec.get("modelfile"):
            found = _FROM.search(str(spec["modelfile"]))
            origin = found.group(1) if found else None
        if origin and canonical(str(origin)) == wanted:
            out.append(model)
    return out


async def sweep(
    ctx: Context, runner: dict[str, Any], refresh: Callable[[dict[str, Any]], Awaitable[None]]
) -> int:
    """List each instance of ``runner`` once and ``refresh`` the selected Models that drifted;
    returns how many."""
    meta, spec = runner["metadata"], runner.get("spec") or {}
    selector = spec.get("modelSelector")
    models = [
        m for m in await ctx.models(meta["namespace"])
        if selects(selector, m["metadata"].get("labels") or {})
        and not m["metadata"].get("deletionTimestamp")
    ]  # fmt: skip
    if not models:
        return 0
    instances = await ctx.resolver.instances(runner)
    max_age = min(ctx.settings.observe_ttl, ctx.settings.reconcile_interval / 2)
    snaps: dict[str, Snapshot | None] = {}
    for instance in instances:
        try:
            snaps[instance.name] = await ctx.view(instance).models(max_age)
        except RunnerError:
            snaps[instance.name] = None
    if instances:
        todo = [m for m in models
                if any(drifted(m, meta["name"], i.name, snaps[i.name]) for i in instances)]  # fmt: skip
    else:  # nothing serves them: only those that do not say so yet
        todo = [m for m in models if (m.get("status") or {}).get("phase") != "Pending"]
    gate = asyncio.Semaphore(SWEEP_CONCURRENCY)

    async def one(model: dict[str, Any]) -> None:
        async with gate:
            await refresh(model)

    await asyncio.gather(*(one(m) for m in todo))
    return len(todo)


class KeyedLocks:
    """One lock per object, dropped when nobody holds or waits for it (bounded by the objects
    being worked on, not by every object ever seen)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
