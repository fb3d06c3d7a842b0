"""DMR pull and push (``POST /models/create``, ``POST /models/{name}/push``): parse, call the core
transfer service, render its progress as DMR's NDJSON messages; errors before the stream are plain
text, errors during it a ``{"type": "error"}`` line."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from modelrunner.api.common import read_json, registry_auth, services
from modelrunner.api.dmr.wire import DMRRoute
from modelrunner.core.transfer import Transfer, TransferEvent, TransferService
from modelrunner.errors import (
    InvalidName,
    InvalidRequest,
    ModelNotFound,
    ModelRunnerError,
    NotFound,
    UpstreamError,
)
from modelrunner.names import Dialect
from modelrunner.registry.errors import ManifestNotFound, RegistryUnauthorized

router = APIRouter(route_class=DMRRoute)

_DONE = {"pull": "Model pulled successfully", "push": "Model pushed successfully"}
_VERB = {"pull": "Downloaded", "push": "Uploaded"}


def _service(request: Request) -> TransferService:
    svc = services(request)
    return TransferService.shared(svc.extra, svc.models.store, svc.settings)


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await read_json(request, required=False)
    except InvalidRequest:
        raise InvalidRequest("invalid request body") from None
    if not isinstance(data, dict):
        raise InvalidRequest("invalid request body")
    return data


def _token(data: dict[str, Any]) -> str | None:
    token = data.get("bearer-token")
    return token if isinstance(token, str) and token else None


@router.post("/models/create")
async def create(request: Request) -> Response:
    data = await _body(request)
    ref = data.get("from")
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidRequest("Invalid model reference")
    try:
        transfer = await _service(request).pull(
            ref, Dialect.DMR, bearer_token=_token(data), registry_auth=registry_auth(request)
        )
    except InvalidName:
        raise InvalidRequest("Invalid model reference") from None
    except RegistryUnauthorized:
        raise UpstreamError("Unauthorized", 401) from None
    except ManifestNotFound:
        raise NotFound("Model not found") from None
    return _stream(request, transfer)


@router.post("/models/{name:path}/push")
async def push(name: str, request: Request) -> Response:
    data = await _body(request)
    try:
        transfer = await _service(request).push(
            name, Dialect.DMR, bearer_token=_token(data), registry_auth=registry_auth(request)
        )
    except InvalidName:
        raise InvalidRequest("Invalid model reference") from None
    except ModelNotFound:
        raise NotFound("Model not found") from None
    except RegistryUnauthorized:
        raise UpstreamError("Unauthorized", 401) from None
    return _stream(request, transfer)


def render(event: TransferEvent, mode: str) -> dict[str, Any] | None:
    """DMR's progress message; statuses without a layer are not part of DMR's stream."""
    if event.kind == "success":
        layer = {"size": 0, "current": 0}
        return {"type": "success", "message": _DONE[mode], "total": 0, "layer": layer, "mode": mode}
    if event.kind != "layer":
        return None
    current = event.completed or 0
    return {
        "type": "progress",
        "message": f"{_VERB[mode]}: {current / 1024 / 1024:.2f} MB",
        "total": event.image_total,
        "layer": {"id": event.digest, "size": event.total or 0, "current": current},
        "mode": mode,
    }


def _stream(request: Request, transfer: Transfer) -> StreamingResponse:
    wants_json = "application/json" in request.headers.get("Accept", "")
    media_type = "application/json" if wants_json else "text/plain"
    watcher = asyncio.create_task(_cancel_on_hang_up(request, transfer))
    return StreamingResponse(_lines(transfer, watcher), media_type=media_type)


async def _lines(transfer: Transfer, watcher: asyncio.Task[None]) -> AsyncIterator[bytes]:
    try:
        async for event in transfer.events:
            message = render(event, transfer.mode)
            if message is not None:
                yield _dumps(message)
    except ModelRunnerError as exc:
        yield _dumps({"type": "error", "message": exc.message, "mode": transfer.mode})
    except Exception as exc:  # the status line is sent: the error goes in the stream
        yield _dumps({"type": "error", "message": str(exc), "mode": transfer.mode})
    finally:
        watcher.cancel()


async def _cancel_on_hang_up(request: Request, transfer: Transfer) -> None:
    """A client that goes away stops the transfer (partial downloads stay for the next pull)."""
    with contextlib.suppress(asyncio.CancelledError):
        while (await request.receive())["type"] != "http.disconnect":
            pass
        transfer.cancel()


def _dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"
