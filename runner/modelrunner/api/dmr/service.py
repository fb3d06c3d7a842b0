"""DMR's service routes: ``GET /version`` and ``GET /logs?follow=&no-engines=`` (plain text: the
recent log lines, then with ``follow`` every new one until the client leaves)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from modelrunner import __version__
from modelrunner.api.common import services
from modelrunner.api.dmr.wire import DMRRoute
from modelrunner.core.logbuffer import LogBuffer
from modelrunner.errors import InvalidRequest, ModelRunnerError

router = APIRouter(route_class=DMRRoute)
LOGS_KEY = "logs"
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
