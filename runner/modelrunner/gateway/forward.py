"""The life of a forwarded request: find the instances holding its model, hold it while none is
ready (up to the hold timeout), queue it fairly while all are at their cap, pick one by the
policy, and try again elsewhere when an instance fails before the first byte."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from modelrunner.gateway.balance import choose
from modelrunner.gateway.fairness import FairQueue
from modelrunner.gateway.health import Health
from modelrunner.gateway.metrics import GatewayMetrics
from modelrunner.gateway.proxy import Incoming, Retryable, Send, Upstream, relay, start_message
from modelrunner.gateway.settings import GatewaySettings
from modelrunner.gateway.shapes import error_for
from modelrunner.gateway.sources import Routes
from modelrunner.gateway.table import Instance, NameKey
from modelrunner.gateway.usage import Meter, Usage, meter_for

log = logging.getLogger("modelrunner.gateway")
MAX_ATTEMPTS = 5
_RESPONSE_ID = re.compile(rb'"id"\s*:\s*"(resp_[0-9A-Za-z]+)"')
_PINS = 10_000  # response ids remembered (Responses API: a response lives on one instance)


@dataclass
class Target:
    """What the request asks for: a model (``key``; None: any instance, so the runner itself
    answers a body without a usable model), the hash of its conversation, a pinned instance."""

    key: NameKey | None
    model: str
    affinity: str | None = None
    pinned: str | None = None
    client: str = ""  # the API key id, for fair queueing
    charge_to: str | None = None  # the API key id whose tokens this spends (None: not counted)


class Forwarder:
    def __init__(
        self,
        settings: GatewaySettings,
        routes: Routes,
        health: Health,
        upstream: Upstream,
        metrics: GatewayMetrics,
        charge: Callable[[str, Usage], None] | None = None,
    ) -> None:
        self.settings, self.routes, self.health = settings, routes, health
        self.upstream, self.metrics, self.charge = upstream, metrics, charge
        self._queues: dict[NameKey | None, FairQueue] = {}
        self.pins: OrderedDict[str, str] = OrderedDict()

    def _candidates(self, target: Target) -> list[Instance]:
        table = self.routes.table
        pool = table.holders(target.key) if target.key is not None else list(table.instances)
        healthy = [i for i in pool if self.health.ok(i.url)]
        if target.pinned is not None:
            pinned = [i for i in healthy if i.name == target.pinned]
            return pinned or healthy
        return healthy

    def _load(self, names: list[str]) -> dict[str, int]:
        return {name: self.metrics.instance_in_flight[name] for name in names}

    @contextlib.contextmanager
    def _queued(self, runner: str, model: str) -> Iterator[None]:
        self.metrics.queue(runner, model, 1)
        try:
            yield
        finally:
            self.metrics.queue(runner, model, -1)

    async def forward(self, incoming: Incoming, target: Target, send: Send) -> None:
        runner = self.routes.table.runner_of(target.key) if target.key is not None else ""
        self.metrics.arrived(runner)
        line = _Line(self._queues.setdefault(target.key, FairQueue()), target.client)
        try:
            await self._forward(incoming, target, send, runner, line)
        finally:
            line.leave()

    async def _forward(
        self, incoming: Incoming, target: Target, send: Send, runner: str, line: _Line
    ) -> None:
        loop = asyncio.get_running_loop()
        model = target.model
        deadline = incoming.arrived + self.settings.hold_timeout
        tried: set[str] = set()
        busy: tuple[int, list[tuple[bytes, bytes]], bytes] | None = None
        busy_from = ""
        waited = 0.0
        attempts = 0
        cap = self.settings.instance_concurrency
        while True:
            healthy = self._candidates(target)
            fresh = [i for i in healthy if i.name not in tried]
            if not fresh and busy is not None and healthy:
                status, headers, body = busy  # every instance said 503: that is the answer
                await send(start_message(status, headers, busy_from))
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            remaining = deadline - loop.time()
            if cap and fresh and remaining > 0:
                open_ = [i for i in fresh if self.metrics.instance_in_flight[i.name] < cap]
                if not open_ or not line.my_turn():
                    started = loop.time()
                    with self._queued(runner, model):
                        await line.wait(min(remaining, 1.0), room=bool(open_))
                    waited += loop.time() - started
                    continue
                fresh = open_
            if not fresh:
                if remaining <= 0:
                    await self._timed_out(incoming, runner, model, send)
                    return
                started = loop.time()
                with self._queued(runner, model):
                    await self.routes.wait(remaining)
                waited += loop.time() - started
                tried.clear()
                continue
            line.leave()
            by_name = {i.name: i for i in fresh}
            order = choose(
                list(by_name), self._load(list(by_name)), self.settings.policy,
                target.affinity, self.settings.load_factor,
            )  # fmt: skip
            instance = by_name[order[0]]
            if waited:
                self.metrics.held.labels(runner, model).observe(waited)
                waited = 0.0
            attempts += 1
            try:
                await self._attempt(
                    incoming, instance, runner, model, send, attempts, target.charge_to
                )
                return
            except Retryable as failure:
                kind = failure.kind.split(":")[0]
                self.metrics.errors.labels(runner, instance.name, model, kind).inc()
                if failure.eject:
                    self.health.eject(instance.url, failure.kind)
                if failure.busy is not None:
                    busy, busy_from = failure.busy, instance.name
                tried.add(instance.name)
                if attempts >= MAX_ATTEMPTS:
                    response = error_for(incoming.path, 502, f"instances failed: {failure.kind}")
                    await response({"type": "http"}, _no_receive, send)
                    return
                self.metrics.retries.labels(runner, model).inc()
                log.info("retrying %s %s elsewhere: %s", incoming.method, incoming.path, kind)

    async def _timed_out(self, incoming: Incoming, runner: str, model: str, send: Send) -> None:
        self.metrics.timeouts.labels(runner, model).inc()
        message = (
            f"no instance of model '{model}' became ready within "
            f"{self.settings.hold_timeout:g} s; try again later"
        )
        response = error_for(incoming.path, 503, message, {"Retry-After": "5"})
        await response({"type": "http"}, _no_receive, send)

    def _released(self) -> None:
        for queue in self._queues.values():
            queue.wake_one()

    async def _attempt(
        self, incoming: Incoming, instance: Instance, runner: str, model: str, send: Send,
        attempt: int, charge_to: str | None = None,
    ) -> None:  # fmt: skip
        self.metrics.start(runner, instance.name, model)
        charge: _Charge | None = None
        try:
            retry_busy = attempt < MAX_ATTEMPTS
            opened = await self.upstream.open(instance, incoming, retry_busy)
            self.metrics.ttft.labels(runner, instance.name, model).observe(
                time.monotonic() - incoming.arrived
            )
            self._learn_pin(incoming, opened.first, instance)
            if charge_to is not None and self.charge is not None:
                response = opened.response
                meter = meter_for(incoming.path, response.status_code, dict(response.headers))
                if meter is not None:
                    charge = _Charge(meter, charge_to, self.charge)
            clean = await relay(opened, instance, incoming.path, send, charge)
            self.metrics.requests.labels(
                runner, instance.name, model, str(opened.response.status_code)
            ).inc()
            if not clean:
                self.metrics.errors.labels(runner, instance.name, model, "midstream").inc()
                self.health.eject(instance.url, "failed mid-stream")
        finally:
            if charge is not None:
                charge.end()  # also when the client went away: it is charged what it was sent
            self.metrics.finish(runner, instance.name, model)
            self._released()

    def _learn_pin(self, incoming: Incoming, first: bytes, instance: Instance) -> None:
        if not incoming.path.endswith("/responses"):
            return
        found = _RESPONSE_ID.search(first[:8192])
        if found:
            self.pins[found.group(1).decode()] = instance.name
            while len(self.pins) > _PINS:
                self.pins.popitem(last=False)


class _Charge:
    """Counts one answer's tokens as it passes and charges them to the key once, at its end."""

    def __init__(self, meter: Meter, key: str, charge: Callable[[str, Usage], None]) -> None:
        self.meter, self.key, self.charge, self.done = meter, key, charge, False

    def feed(self, chunk: bytes) -> None:
        self.meter.feed(chunk)

    def end(self) -> None:
        if not self.done:
            self.done = True
            self.charge(self.key, self.meter.usage())


class _Line:
    """One request's place in its model's fair queue: joined once, kept across wake-ups (so a
    waiter that checks back for a deadline keeps its place), left when it goes or gives up."""

    def __init__(self, queue: FairQueue, client: str) -> None:
        self.queue, self.client = queue, client
        self.ticket: asyncio.Future[None] | None = None

    def my_turn(self) -> bool:
        """Woken by its turn, or nobody is waiting (no line to jump)."""
        if self.ticket is not None:
            return self.ticket.done()
        return len(self.queue) == 0

    async def wait(self, patience: float, room: bool) -> None:
        if self.ticket is None or self.ticket.done():
            # First time in line, or woken and beaten to the slot: back at the head.
            self.ticket = self.queue.enqueue(self.client, front=self.ticket is not None)
        if room:  # a slot is free: whoever's turn it is takes it
            self.queue.wake_one()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.ticket), max(patience, 0.0))

    def leave(self) -> None:
        if self.ticket is not None and not self.ticket.done():
            self.queue.forget(self.client, self.ticket)
        self.ticket = None


async def _no_receive() -> dict[str, str]:
    return {"type": "http.disconnect"}
