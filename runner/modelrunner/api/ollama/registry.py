"""Ollama pull and push (``POST /api/pull``, ``POST /api/push``): parse, call the core transfer
service, render its progress as Ollama's NDJSON (or, with ``"stream": false``, the last object)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from modelrunner.api.common import read_model, registry_auth, services
from modelrunner.api.ollama.schemas import ModelRef
from modelrunner.api.ollama.wire import OllamaRoute, ndjson_lines, ndjson_stream
from modelrunner.core.transfer import Transfer, TransferEvent, TransferService
from modelrunner.errors import (
    InvalidName,
    InvalidRequest,
    ModelNotFound,
    ModelRunnerError,
    NotFound,
)
from modelrunner.names import Dialect
from modelrunner.registry.errors import ManifestNotFound

router = APIRouter(route_class=OllamaRoute)


class TransferRequest(ModelRef):
    insecure: bool = False
    stream: bool = True
    username: str | None = None  # accepted and ignored, as Ollama does
    password: str | None = None


def transfers(request: Request) -> TransferService:
    svc = services(request)
    return TransferService.shared(svc.extra, svc.models.store, svc.settings)


@router.post("/api/pull")
async def pull(request: Request) -> Response:
    body = await read_model(request, TransferRequest)
    if not body.ref:
        raise InvalidRequest("model is required")
    auth = registry_auth(request)

    async def start() -> Transfer:
        try:
            return await transfers(request).pull(
                body.ref, Dialect.OLLAMA, insecure=body.insecure, registry_auth=auth
            )
        except InvalidName:
            raise InvalidRequest("invalid model name") from None
        except ManifestNotFound:
            raise NotFound("pull model manifest: file does not exist") from None

    return await _respond(request, start, body.stream, "pulling manifest")


@router.post("/api/push")
async def push(request: Request) -> Response:
    body = await read_model(request, TransferRequest)
    if not body.ref:
        raise InvalidRequest("model is required")
    auth = registry_auth(request)

    async def start() -> Transfer:
        try:
            return await transfers(request).push(
                body.ref, Dialect.OLLAMA, insecure=body.insecure, registry_auth=auth
            )
        except InvalidName:
            raise InvalidRequest("invalid model name") from None
        except ModelNotFound:
            raise NotFound(f'model "{body.ref}" not found') from None

    return await _respond(request, start, body.stream, "retrieving manifest")


def render(event: TransferEvent) -> dict[str, Any]:
    """``{status, digest, total, completed}`` with Go's omitempty."""
    out: dict[str, Any] = {"status": event.status}
    if event.digest:
        out["digest"] = event.digest
    if event.total:
        out["total"] = event.total
    if event.completed:
        out["completed"] = event.completed
    return out


async def _respond(
    request: Request, start: Callable[[], Awaitable[Transfer]], stream: bool, opening: str
) -> Response:
    """Ollama's status semantics: a bad request is answered at once (400); any later failure
    (the registry refused, the model is missing, a blob broke) is, when streaming, a ``200``
    whose last line is ``{"error": ...}``, after the status lines Ollama sends before it fails;
    with ``stream: false``, the error with its status."""
    if not stream:
        transfer = await start()
        watcher = asyncio.create_task(_cancel_on_hang_up(request, transfer))
        try:
            return JSONResponse(render(await transfer.run()))
        finally:
            watcher.cancel()
    try:
        transfer = await start()
    except ModelRunnerError as exc:
        if exc.status == 400:
            raise
        lines = [{"status": opening}]
        if opening == "retrieving manifest" and isinstance(exc, NotFound):
            lines.append({"status": "couldn't retrieve manifest"})  # no such local model
        return ndjson_lines([*lines, {"error": exc.message}])
    watcher = asyncio.create_task(_cancel_on_hang_up(request, transfer))
    return ndjson_stream(_rendered(transfer.events, watcher))


async def _rendered(
    events: AsyncIterator[TransferEvent], watcher: asyncio.Task[None]
) -> AsyncIterator[dict[str, Any]]:
    try:
        async for event in events:
            yield render(event)
    finally:
        watcher.cancel()


async def _cancel_on_hang_up(request: Request, transfer: Transfer) -> None:
    """A client that goes away stops the transfer (partial downloads stay for the next pull)."""
    with contextlib.suppress(asyncio.CancelledError):
        while (await request.receive())["type"] != "http.disconnect":
            pass
        transfer.cancel()
