"""The gateway's ASGI application: access checks, then each path to its handler (forwarded by
model, merged, answered locally, or refused), with the client's disconnect cancelling the work."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response

from modelrunner.gateway.access import Access, Refusal
from modelrunner.gateway.balance import affinity_key
from modelrunner.gateway.forward import Forwarder, Target
from modelrunner.gateway.health import Health
from modelrunner.gateway.kube import ConfigMapWatch, KubeAccess
from modelrunner.gateway.metrics import GatewayMetrics
from modelrunner.gateway.paths import Kind, Route, route_of
from modelrunner.gateway.proxy import Incoming, Upstream
from modelrunner.gateway.settings import GatewaySettings
from modelrunner.gateway.shapes import error_for, model_not_found, name_dialect
from modelrunner.gateway.sources import Routes, RoutesFile, StaticBackends, forever
from modelrunner.gateway.views import Views, not_found_page, root, version
from modelrunner.security.keys import Identity

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
log = logging.getLogger("modelrunner.gateway")
MAX_BODY = 32 * 1024 * 1024  # the runner's default bound
BODY_TIMEOUT = 60.0
_DMR_PREFIX = re.compile(r"^/exp/vDD4\.40(?=/|$)")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.access = Access(settings, self.metrics.registry)
        self.routes = Routes()
        self._tasks: list[asyncio.Task[None]] = []

    async def startup(self) -> None:
        s = self.settings
        timeout = httpx.Timeout(connect=s.connect_timeout, read=None, write=60.0, pool=None)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        # No Nagle: a request's headers and body go out as separate writes, and waiting for the
        # runner's delayed ACK between them would add ~40 ms to every forwarded request.
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=nodelay)
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport, trust_env=False)
        self.health = Health(self.client, s.probe_interval, self.routes.changed)
        self.upstream = Upstream(self.client, s.backend_token_file, self.access.strips_auth)
        self.forwarder = Forwarder(
            s, self.routes, self.health, self.upstream, self.metrics, self.access.charge
        )
        self.views = Views(self.routes, self.health, self.upstream)
        if s.backend:
            static = StaticBackends(
                s.backend, self.client, self.routes, self.health.eject, self.health.readmit,
                self.upstream.auth_headers,
            )  # fmt: skip
            await static.poll()
            self._spawn("backends", lambda: static.run(s.poll_interval))
        if s.routes_file is not None:
            routes_file = RoutesFile(s.routes_file, self.routes)
            routes_file.poll()
            self._spawn("file", routes_file.run)
        if s.routes_configmap:
            access = KubeAccess.in_cluster(s.service_account_dir)
            watch = ConfigMapWatch(access, s.routes_configmap, self.routes)
            self._spawn("configmap", watch.run)

    def _spawn(self, name: str, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._tasks.append(asyncio.create_task(forever(name, step)))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.health.close()
        await self.client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.monotonic()
        path = _DMR_PREFIX.sub("", scope["path"]) or "/"
        method = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        route = route_of(method, path)
        try:
            self.access.check_host(scope.get("server"), headers)
            local = self._local(route, method, path, headers)
            if local is not None:
                await local(scope, receive, send)
                return
            identity = self.access.admit(headers)
        except Refusal as refusal:
            await error_for(path, refusal.status, refusal.message, refusal.headers)(
                scope, receive, send
            )
            return
        try:
            body = await _read_body(method, headers, receive)
            incoming = Incoming(
                method, path, scope.get("query_string", b""), list(scope["headers"]), body,
                arrived=arrived,
            )  # fmt: skip
            work = self._serve(route, incoming, send, identity)
            await _until_disconnect(work, receive)
        except Refusal as refusal:
            await error_for(path, refusal.status, refusal.message, refusal.headers)(
                scope, receive, send
            )
        finally:
            self.access.release(identity)

    def _local(
        self, route: Route, method: str, path: str, headers: dict[str, str]
    ) -> Response | None:
        kind = route.kind
        if kind is Kind.ROOT:
            return root()
        if kind is Kind.VERSION:
            return version(path)
        if kind is Kind.METRICS:
            return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)
        if kind is Kind.DEMAND:
            if not self.access.demand_allowed(headers):
                return JSONResponse({"error": "unauthorized"}, 401)
            table = self.routes.table
            return JSONResponse(
                self.metrics.demand(
                    [r.name for r in table.runners], [i.name for i in table.instances]
                )
            )
        if kind is Kind.REFUSED:
            return error_for(
                path,
                403,
                f"{method} {path} is not available through the gateway: models are "
                "declared as Model resources (the operator pulls, copies and deletes them on "
                "the runners)",
            )
        if kind is Kind.UNKNOWN:
            return not_found_page(path)
        return None

    async def _serve(
        self, route: Route, incoming: Incoming, send: Send, identity: Identity | None
    ) -> None:
        if route.kind is Kind.LIST:
            response = await self.views.merged(incoming.path, incoming.query.decode("latin-1"))
            await response({"type": "http"}, _never, send)
            return
        target = self._target(route, incoming, identity.id if identity else "")
        if isinstance(target, Response):
            await target({"type": "http"}, _never, send)
            return
        if identity is not None and not identity.management:
            target.charge_to = identity.id  # as the runner: management calls are not counted
        await self.forwarder.forward(incoming, target, send)

    def _target(self, route: Route, incoming: Incoming, client: str) -> Target | Response:
        path, table = incoming.path, self.routes.table
        if route.kind is Kind.RESPONSE:
            assert route.name is not None
            return Target(None, "", pinned=self.forwarder.pins.get(route.name), client=client)
        if route.kind is Kind.ANY:
            return Target(None, "", client=client)
        body = _json(incoming.body) if route.kind is not Kind.MODEL else None
        if route.kind is Kind.MODEL:
            ref = route.name
        else:
            ref = body.get("model") if body is not None else None
            if not ref and body is not None and route.kind is Kind.SHOW:
                ref = body.get("name")
        if not isinstance(ref, str) or not ref.strip():
            return Target(None, "", client=client)  # the runner says what is missing
        if route.kind is Kind.MODEL and incoming.query:
            return Target(None, ref, client=client)  # e.g. ?remote=true: not about local models
        key = table.resolve(ref, name_dialect(path))
        if key is None:
            return model_not_found(path, ref)
        affinity = affinity_key(ref, body) if route.affinity and body is not None else None
        pinned = None
        previous = body.get("previous_response_id") if body is not None else None
        if isinstance(previous, str):
            pinned = self.forwarder.pins.get(previous)
        return Target(key, table.names.get(key, ref), affinity, pinned, client)


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def _read_body(method: str, headers: dict[str, str], receive: Receive) -> bytes:
    if method not in _BODY_METHODS:
        return b""
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise Refusal(413, f"request body is larger than {MAX_BODY} bytes", {})
    chunks, size = [], 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), BODY_TIMEOUT)
        except TimeoutError:
            raise Refusal(408, "timed out reading the request body", {}) from None
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise Refusal(413, f"request body is larger than {MAX_BODY} bytes", {})
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _until_disconnect(work: Coroutine[Any, Any, None], receive: Receive) -> None:
    """Run ``work``; if the client goes away first, cancel it (closing the upstream request)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if not task.done():
            task.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _never() -> Message:
    return {"type": "http.disconnect"}


def create_gateway_app(settings: GatewaySettings | None = None) -> Gateway:
    return Gateway(settings or GatewaySettings())
