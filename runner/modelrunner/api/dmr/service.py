"""DMR's service routes: ``GET /version``, ``GET /logs?follow=&no-engines=`` (plain text: the
recent log lines, then with ``follow`` every new one until the client leaves), and
``POST /engines/install-backend`` / ``uninstall-backend`` (llama.cpp is built in; DMR's other
backends are not part of this runner)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from modelrunner import __version__
from modelrunner.api.common import services
from modelrunner.api.dmr.wire import DMRRoute
from modelrunner.core.logbuffer import LogBuffer
from modelrunner.errors import Conflict, InvalidRequest, ModelRunnerError, NotFound

router = APIRouter(route_class=DMRRoute)
LOGS_KEY = "logs"
BACKEND = "llama.cpp"
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def log_buffer(request: Request) -> LogBuffer | None:
    buffer = services(request).extra.get(LOGS_KEY)
    return buffer if isinstance(buffer, LogBuffer) else None


def go_bool(request: Request, name: str) -> bool:
    """Go's ``strconv.ParseBool``, as DMR reads these parameters."""
    value = request.query_params.get(name, "")
    if value == "" or value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise InvalidRequest(f'invalid {name} parameter: "{value}" is not a valid boolean')


@router.get("/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


@router.get("/logs")
async def logs(request: Request) -> Response:
    follow = go_bool(request, "follow")
    engines = not go_bool(request, "no-engines")
    buffer = log_buffer(request)
    if buffer is None:
        error = ModelRunnerError("logs API not available: log directory not configured")
        error.status = 501
        raise error

    async def lines() -> AsyncIterator[bytes]:
        last = 0
        while True:
            batch, last = buffer.since(last, engines)
            if batch:
                yield "".join(x.text + "\n" for x in batch).encode()
            if not follow or await request.is_disconnected():
                return
            await buffer.wait(last, seconds=1.0)

    return StreamingResponse(lines(), media_type="text/plain")


async def _backend(request: Request) -> str:
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    backend = body.get("backend") if isinstance(body, dict) else None
    if not isinstance(backend, str) or not backend:
        raise InvalidRequest("invalid request: backend is required")
    if backend != BACKEND:  # vllm, mlx, sglang, diffusers: not part of this runner
        raise NotFound("backend not found")
    return backend


@router.post("/engines/install-backend")
async def install_backend(request: Request) -> Response:
    await _backend(request)  # llama.cpp is built in: already installed
    return Response(status_code=200)


@router.post("/engines/uninstall-backend")
async def uninstall_backend(request: Request) -> Response:
    backend = await _backend(request)
    raise Conflict(  # DMR answers a failed uninstall with a 500; this one is a refusal
        f"backend uninstall failed: {backend} is built into this runner and cannot be removed"
    )
