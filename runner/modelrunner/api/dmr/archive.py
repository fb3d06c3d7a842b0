"""DMR's archive and store-wide routes: ``POST /models/load`` (the tar ``docker model package``
streams), ``GET /models/{name}/export`` (the same format back), ``POST /models/{name}/repackage``
(``package --from`` with only a new context size) and ``DELETE /models/purge``.

Registered before the generic ``/models/{name}`` routes, as DMR's mux prefers these patterns.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.from_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from modelrunner.api.common import services
from modelrunner.api.dmr.wire import DMRRoute
from modelrunner.core.dmr_artifact import with_context_size
from modelrunner.core.inference import InferenceService
from modelrunner.errors import (
    InvalidName,
    InvalidRequest,
    ModelNotFound,
    ModelRunnerError,
    NotFound,
)
from modelrunner.names import Dialect, parse
from modelrunner.store.archive import archive_chunks, read_archive
from modelrunner.store.models import ModelStore

router = APIRouter(route_class=DMRRoute)
log = logging.getLogger(__name__)


class RequestReader(io.RawIOBase):
    """The request body as a blocking file, for the worker thread that unpacks it: each read
    pulls the next chunk from the event loop."""

    def __init__(self, request: Request) -> None:
        self._stream = request.stream().__aiter__()
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        return True

    async def _next(self) -> bytes:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            return b""

    def readinto(self, target: Any) -> int:
        while not self._buffer and not self._done:
            self._buffer = anyio.from_thread.run(self._next)
            self._done = not self._buffer
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _store(request: Request) -> ModelStore:
    return services(request).models.store


def _progress(message: str) -> bytes:
    line = {
        "type": "success",
        "message": message,
        "total": 0,
        "layer": {"size": 0, "current": 0},
        "mode": "pull",
    }
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


@router.post("/models/load")
async def load(request: Request) -> Response:
    store = _store(request)
    reader = io.BufferedReader(RequestReader(request), buffer_size=1 << 20)
    try:
        manifest = await anyio.to_thread.run_sync(read_archive, store, reader)
    except ModelRunnerError as exc:
        # DMR wraps every load failure in ``error while loading model: ...`` (always a 500
        # there); a body that is no model archive is the caller's fault, so its 4xx is kept.
        wrapped = ModelRunnerError(f"error while loading model: {exc.message}")
        wrapped.status = exc.status
        raise wrapped from None
    log.info("loaded model %s", manifest.digest)
    return Response(_progress("Model loaded successfully"), media_type="text/plain")


@router.get("/models/{name:path}/export")
async def export(name: str, request: Request) -> Response:
    try:
        record = await services(request).models.get(name, Dialect.DMR)
    except (ModelNotFound, InvalidName):
        raise NotFound(f"get model '{json.dumps(name)}': model not found") from None
    chunks: Iterator[bytes] = archive_chunks(_store(request), record.manifest)
    body: AsyncIterator[bytes] = iterate_in_threadpool(chunks)
    headers = {"Content-Disposition": f"attachment; filename={json.dumps(name + '.tar')}"}
    return StreamingResponse(body, media_type="application/x-tar", headers=headers)


@router.delete("/models/purge")
async def purge(request: Request) -> Response:
    inference: InferenceService = services(request).extra["inference"]
    await inference.scheduler.unload_idle()  # their files are about to go
    await anyio.to_thread.run_sync(_store(request).purge)
    return Response(status_code=200)


@router.post("/models/{name:path}/repackage")
async def repackage(name: str, request: Request) -> Response:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("invalid request body: not a JSON object")
    target = body.get("target")
    if not isinstance(target, str) or not target:
        raise InvalidRequest("target is required")
    context = body.get("context_size")
    if context is not None and (
        isinstance(context, bool) or not isinstance(context, int) or context < 0
    ):
        raise InvalidRequest("invalid request body: context_size must be an unsigned integer")
    store = _store(request)
    try:
        record = await services(request).models.get(name, Dialect.DMR)
        destination = parse(target, Dialect.DMR)
    except (ModelNotFound, InvalidName):
        raise NotFound(f"get model '{json.dumps(name)}': model not found") from None
    manifest = await anyio.to_thread.run_sync(with_context_size, store, record, context)
    await anyio.to_thread.run_sync(store.write_manifest, destination, manifest)
    message = f"Model repackaged successfully as {json.dumps(target)}"
    return JSONResponse({"message": message, "source": name, "target": target}, status_code=201)
