"""OpenAI Responses API routes: create (plain or streamed), retrieve, list input items, delete.

Mounted where OpenAI clients (``/v1``), Codex and DMR (``/responses``, ``/engines[/{backend}][/v1]``)
look for them. ``/v1`` reads model names as Ollama does; the others as DMR does. Stored responses
live in the core's bounded in-memory ``ResponseStore`` (see README: retention).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from modelrunner.api.common import collect, engine_dialect, inference, read_model, services
from modelrunner.api.openai import responses_convert as rc
from modelrunner.api.openai.responses_schemas import ResponsesRequest
from modelrunner.api.openai.responses_stream import Event, ResponseStream
from modelrunner.api.openai.routes import found
from modelrunner.api.openai.wire import SSE, OpenAIRoute, error_body
from modelrunner.core.responses import ResponseStore, StoredResponse
from modelrunner.core.session import Session
from modelrunner.core.types import Chunk
from modelrunner.errors import InvalidRequest, NotFound
from modelrunner.names import Dialect

api = APIRouter(route_class=OpenAIRoute)
PREFIXES = ("/v1", "", "/engines", "/engines/v1", "/engines/{backend}", "/engines/{backend}/v1")


def response_store(request: Request) -> ResponseStore:
    store: ResponseStore = services(request).extra["responses"]
    return store


def dialect(request: Request) -> Dialect:
    path = request.url.path
    return engine_dialect(request) if path.startswith(("/v1/", "/engines/")) else Dialect.DMR


def stored(request: Request, response_id: str) -> StoredResponse:
    dialect(request)  # an unknown backend is a 404 before anything else
    entry = response_store(request).get(response_id)
    if entry is None:
        raise NotFound(f"Response with id '{response_id}' not found.")
    return entry


def previous_not_found(response_id: str) -> Response:
    # OpenAI answers a stale previous_response_id with 400 and names the parameter.
    body = error_body(400, f"Previous response with id '{response_id}' not found.")
    body["error"] |= {"param": "previous_response_id", "code": "previous_response_not_found"}
    return JSONResponse(body, status_code=400)


def sse(event: Event) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def event_stream(
    session: Session, renderer: ResponseStream, store: ResponseStore | None, context: list[Any]
) -> StreamingResponse:
    """``event: NAME`` / ``data: {...}`` blocks; no ``[DONE]`` in this API. The response is stored
    before ``response.completed`` is sent, so a client may retrieve it as soon as it sees it."""

    async def body() -> AsyncIterator[bytes]:
        for event in renderer.start():
            yield sse(event)
        try:
            async for chunk in session.chunks():
                events = renderer.feed(chunk)
                if renderer.response is not None and store is not None:
                    store.put(renderer.response, context)
                for event in events:
                    yield sse(event)
        except Exception as exc:
            yield sse(renderer.fail(getattr(exc, "message", None) or str(exc)))

    return StreamingResponse(body(), media_type=SSE, headers={"Cache-Control": "no-cache"})


@api.post("/responses")
async def create_response(request: Request) -> Response:
    names = dialect(request)
    body = await read_model(request, ResponsesRequest)
    if not body.model:
        raise InvalidRequest("model is required")
    store = response_store(request)
    history: list[Any] = []
    if body.previous_response_id:
        previous = store.get(body.previous_response_id)
        if previous is None:
            return previous_not_found(body.previous_response_id)
        history = previous.conversation
    context = history + rc.input_items(body.input, store.item)
    req = rc.inference_request(body, context, names)
    session = await found(body.model, inference(request).open(req))
    renderer = ResponseStream(rc.ResponseHead(body, created_at=int(time.time())))
    keep = store if body.store else None
    if body.stream:
        return event_stream(session, renderer, keep, context)
    final = await collect(request, session)
    renderer.start()
    renderer.feed(
        Chunk(content=final.content, thinking=final.thinking, tool_calls=final.tool_calls)
    )
    renderer.feed(Chunk(done=True, done_reason=final.done_reason, timings=final.timings))
    assert renderer.response is not None
    if keep is not None:
        keep.put(renderer.response, context)
    return JSONResponse(renderer.response)


@api.get("/responses/{response_id}")
async def retrieve_response(response_id: str, request: Request) -> dict[str, Any]:
    return stored(request, response_id).response


@api.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    stored(request, response_id)
    response_store(request).delete(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidRequest(f"invalid limit: {raw!r} (must be an integer from 1 to 100)")
    return int(raw)


@api.get("/responses/{response_id}/input_items")
async def list_input_items(response_id: str, request: Request) -> dict[str, Any]:
    """Every input item the response saw (earlier turns included), newest first by default,
    paged with ``after`` and ``limit`` as OpenAI's cursor pages are."""
    entry = stored(request, response_id)
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"invalid order: {order!r} (must be 'asc' or 'desc')")
    limit = _limit(query.get("limit"))
    items = entry.context if order == "asc" else entry.context[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"invalid after: no input item with id {after!r}")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


router = APIRouter()
for _prefix in PREFIXES:
    router.include_router(api, prefix=_prefix)
