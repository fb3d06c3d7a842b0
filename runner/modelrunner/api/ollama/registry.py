"""Ollama pull and push (``POST /api/pull``, ``POST /api/push``): parse, call the core transfer
service, render its progress as Ollama's NDJSON (or, with ``"stream": false``, the last object)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from modelrunner.api.common import read_model, registry_auth, services
from modelrunner.api.ollama.schemas import ModelRef
from modelrunner.api.ollama.wire import OllamaRoute, ndjson_stream
from modelrunner.core.transfer import Transfer, TransferEvent, TransferService
from modelrunner.errors import InvalidName, InvalidRequest, ModelNotFound, NotFound
from modelrunner.names import Dialect
from modelrunner.registry.errors import ManifestNotFound

router = APIRouter(route_class=OllamaRoute)


class TransferRequest(ModelRef):
    insecure: bool = False
    stream: bool = True
    username: str | None = None  # accepted and ignored, as Ollama does
    password: str | None = None


def _service(request: Request) -> TransferService:
    svc = services(request)
    return TransferService.shared(svc.extra, svc.models.store, svc.settings)


@router.post("/api/pull")
async def pull(request: Request) -> Response:
    body = await read_model(request, TransferRequest)
    if not body.ref:
        raise InvalidRequest("model is required")
    try:
        transfer = await _service(request).pull(
            body.ref, Dialect.OLLAMA, insecure=body.insecure, registry_auth=registry_auth(request)
        )
    except InvalidName:
        raise InvalidRequest("invalid model name") from None
    except ManifestNotFound:
        raise NotFound("pull model manifest: file does not exist") from None
    return await _respond(request, transfer, body.stream)


@router.post("/api/push")
async def push(request: Request) -> Response:
    body = await read_model(request, TransferRequest)
    if not body.ref:
        raise InvalidRequest("model is required")
    try:
        transfer = await _service(request).push(
            body.ref, Dialect.OLLAMA, insecure=body.insecure, registry_auth=registry_auth(request)
        )
    except InvalidName:
        raise InvalidRequest("invalid model name") from None
    except ModelNotFound:
        raise NotFound(f'model "{body.ref}" not found') from None
    return await _respond(request, transfer, body.stream)


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


async def _respond(request: Request, transfer: Transfer, stream: bool) -> Response:
    watcher = asyncio.create_task(_cancel_on_hang_up(request, transfer))
    if not stream:
        try:
            return JSONResponse(render(await transfer.run()))
        finally:
            watcher.cancel()
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
