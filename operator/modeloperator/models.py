"""What the Model handlers share: the index entry of a Model, per-object locks, and reconciling a
Model outside its own handlers (drift, a Model it waited for became Ready) with the status
written only when it changed."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from modeloperator.drift import KeyedLocks, dependents
from modeloperator.reconcile import Context, reconcile_model
from modeloperator.status import changes

META_KEYS = ("name", "namespace", "uid", "generation", "labels", "resourceVersion",
             "deletionTimestamp")  # fmt: skip


def compact(body: Any) -> dict[str, Any]:
    """What the operator keeps of a Model or ModelRunner in its index: no managedFields, no
    annotations (kopf's own bookkeeping holds a copy of the spec there)."""
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: _shared(meta.get(k)) for k in META_KEYS if meta.get(k) is not None},
        "spec": _shared(dict(body.get("spec") or {})),
        "status": _shared(dict(body.get("status") or {})),
    }


def _shared(value: Any) -> Any:
    """A deep copy whose keys and short strings are interned: a thousand Models' statuses repeat
    the same keys, phases, reasons and messages, and each parsed event brings its own copies
    (the index took 7.6 KB per Model, 3.5 KB with them shared)."""
    if isinstance(value, dict):
        return {sys.intern(str(k)): _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    if isinstance(value, str) and len(value) <= _INTERNED:
        return sys.intern(value)
    return value


_INTERNED = 80  # longer strings (Modelfiles, digests) are rarely shared


Announce = Callable[[dict[str, Any], dict[str, Any]], None]


class State:
    """Shared by every handler through kopf's memo: the API context, per-object locks (a drift
    pass and a change handler never work on the same object at once) and the tasks it started."""

    def __init__(self, ctx: Context, announce: Announce) -> None:
        self.ctx = ctx
        self.announce = announce
        self.locks = KeyedLocks()
        self.tasks: set[asyncio.Task[None]] = set()
        # The status last written per Model (uid -> JSON): the index lags our own writes by a
        # watch event, and must not make us write (and announce) the same status twice.
        self.last: dict[str, str] = {}

    def to_write(self, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """The status patch for ``body`` (empty when nothing changed since it or our last
        write), remembered as written."""
        uid = body["metadata"]["uid"]
        text = json.dumps(status, sort_keys=True, default=str)
        if self.last.get(uid) == text:
            return {}
        changed = changes(body.get("status"), status)
        if changed:
            self.last[uid] = text
        return changed

    def with_last(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the status we last wrote for it: an event or the index may not show
        that write yet, and planning from the older status would redo its work (a Modelfile
        without its appliedHash is created again)."""
        written = self.last.get(body["metadata"]["uid"])
        return body if written is None else dict(body, status=json.loads(written))

    def forget(self, uid: str) -> None:
        self.last.pop(uid, None)

    def current(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The index's latest copy of a Model (same uid), else None (gone)."""
        if self.ctx.catalog is None:
            return body
        meta = body["metadata"]
        for model in self.ctx.catalog.models(meta["namespace"]):
            if model["metadata"].get("uid") == meta.get("uid"):
                return model
        return None

    async def refresh_model(self, body: dict[str, Any]) -> None:
        """Reconcile a Model and write what changed in its status."""
        async with self.locks.hold(body["metadata"]["uid"]):
            latest = self.current(body)
            if latest is None or latest["metadata"].get("deletionTimestamp"):
                return
            latest = self.with_last(latest)
            status = await reconcile_model(self.ctx, latest)
            await self.write(latest, status)

    async def write(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        changed = self.to_write(body, status)
        if not changed:
            return
        self.announce(body, status)
        meta = body["metadata"]
        await self.ctx.kube.patch_status("models", meta["namespace"], meta["name"], changed)
        self.became(body, status)

    def became(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        """A Model just became Ready: the Models waiting for it go on now, not at the next
        drift pass."""
        if status.get("phase") != "Ready" or (body.get("status") or {}).get("phase") == "Ready":
            return
        if self.ctx.catalog is None:
            return
        meta = body["metadata"]
        for waiting in dependents(self.ctx.catalog.models(meta["namespace"]), meta["name"]):
            task = asyncio.ensure_future(self.refresh_model(waiting))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
