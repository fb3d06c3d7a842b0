"""One view of each runner instance, shared by every Model that targets it.

Reconciling a Model used to list the instance's models twice and open a new HTTP client for every
call, so N Models cost O(N) listings per interval, each O(N) long. Here each instance has one
HTTP client (kept-alive connections), one cached listing of its models and runtime policies that
every Model's reconcile reads, and a semaphore bounding the calls in flight to it.

A listing is reused while it is younger than the caller's ``max_age``; a caller that just changed
the instance asks for one taken ``after`` its write, and callers that wrote at about the same
time share one listing (single flight, after a short debounce). Views of instances nobody asked
about for ``IDLE_SECONDS`` are closed, so the registry holds only live instances.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from modeloperator.refs import canonical
from modeloperator.runnerclient import RunnerClient, RunnerError, Unreachable

DEBOUNCE_SECONDS = 0.05
IDLE_SECONDS = 600.0
FAILURE_SECONDS = 1.0  # an unreachable instance is not asked again sooner than this


@dataclass
class Snapshot:
    """An instance's models (canonical name -> (digest, size)) and runtime policies (canonical
    name -> policy as the runner stores it; None when the runner has no policy route)."""

    models: dict[str, tuple[str, int]]
    policies: dict[str, dict[str, Any]] | None
    taken: float  # monotonic time the listing was asked for

    def digests(self) -> dict[str, str]:
        return {name: digest for name, (digest, _) in self.models.items()}


def snapshot_of(
    tags: list[dict[str, Any]], policies: dict[str, Any] | None, taken: float
) -> Snapshot:
    models = {
        canonical(str(t.get("name") or t.get("model"))): (
            str(t.get("digest", "")),
            int(t.get("size") or 0),
        )
        for t in tags
    }
    table = None if policies is None else {canonical(k): dict(v) for k, v in policies.items()}
    return Snapshot(models, table, taken)


@dataclass
class InstanceView:
    url: str
    token: str | None
    client: RunnerClient
    http: httpx.AsyncClient
    calls: asyncio.Semaphore
    snapshot: Snapshot | None = None
    used: float = field(default_factory=time.monotonic)
    _fetch: asyncio.Task[Snapshot] | None = None
    _took: float = 0.0  # seconds the last listing took
    _failed: tuple[float, RunnerError] | None = None

    async def models(self, max_age: float, after: float = 0.0) -> Snapshot:
        """A listing at most ``max_age`` seconds old and asked for no earlier than ``after``
        (a monotonic time: the end of the caller's own write). Raises Unreachable/RunnerError."""
        self.used = time.monotonic()
        while True:
            snap, now = self.snapshot, time.monotonic()
            if snap is not None and snap.taken >= after and now - snap.taken <= max_age:
                return snap
            failed = self._failed
            if failed is not None and now - failed[0] < FAILURE_SECONDS and failed[0] >= after:
                raise failed[1]
            if self._fetch is None or self._fetch.done():
                self._fetch = asyncio.ensure_future(self._refresh(after > 0))
            fetch = self._fetch
            snap = await asyncio.shield(fetch)
            if snap.taken >= after:
                return snap

    async def _refresh(self, debounce: bool) -> Snapshot:
        if debounce:
            # Others finishing their writes now share this listing; waiting as long as a
            # listing takes keeps listings to at most about half of the instance's time.
            await asyncio.sleep(max(DEBOUNCE_SECONDS, self._took))
        taken = time.monotonic()
        try:
            tags = await self.client.tags()
            policies = await self.client.policies()
        except RunnerError as exc:
            self._failed = (taken, exc)
            raise
        self._failed = None
        self._took = time.monotonic() - taken
        self.snapshot = snapshot_of(tags, policies, taken)
        return self.snapshot

    def set_policy(self, name: str, policy: dict[str, Any] | None) -> None:
        """Record a policy we just wrote (or removed) in the current listing."""
        if self.snapshot is not None and self.snapshot.policies is not None:
            if policy is None:
                self.snapshot.policies.pop(canonical(name), None)
            else:
                self.snapshot.policies[canonical(name)] = policy


class Inventory:
    """The views of every runner instance the operator talks to, keyed by URL."""

    def __init__(self, timeout: float, pull_timeout: float, concurrency: int) -> None:
        self.timeout, self.pull_timeout, self.concurrency = timeout, pull_timeout, concurrency
        self.views: dict[str, InstanceView] = {}
        self._swept = time.monotonic()
        self._closing: set[asyncio.Task[None]] = set()

    def view(self, url: str, token: str | None) -> InstanceView:
        self._sweep()
        current = self.views.get(url)
        if current is not None and current.token == token:
            current.used = time.monotonic()
            return current
        if current is not None:  # the token changed: a new client, the listing is still good
            self._close(current)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(max_connections=self.concurrency + 2)
        http = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=self.timeout, headers=headers,
                                 limits=limits)  # fmt: skip
        client = RunnerClient(url, self.timeout, self.pull_timeout, token, http=http)
        fresh = InstanceView(url, token, client, http, asyncio.Semaphore(self.concurrency))
        if current is not None:
            fresh.snapshot = current.snapshot
        self.views[url] = fresh
        return fresh

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept < 60:
            return
        self._swept = now
        for url, view in list(self.views.items()):
            if now - view.used > IDLE_SECONDS and view.calls._value == self.concurrency:
                del self.views[url]
                self._close(view)

    def _close(self, view: InstanceView) -> None:
        task = asyncio.ensure_future(view.http.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for view in self.views.values():
            await view.http.aclose()
        self.views.clear()


__all__ = ["InstanceView", "Inventory", "Snapshot", "Unreachable", "snapshot_of"]
