"""Anthropic Messages API routes, mounted at ``/v1`` and ``/anthropic/v1`` (Ollama's names) and at
``/engines/v1`` and ``/engines/{backend}/v1`` (DMR's names). Each route parses, converts, calls
the core, renders. ``x-api-key``, ``anthropic-version`` and ``anthropic-beta`` are accepted and
not checked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError

from modelrunner.api.anthropic import convert
from modelrunner.api.anthropic.schemas import CountTokensRequest, MessagesRequest
from modelrunner.api.anthropic.stream import MessageStream
from modelrunner.api.anthropic.wire import AnthropicRoute, json_response, new_id, sse_stream
from modelrunner.api.common import collect, engine_dialect, inference, read_json
from modelrunner.core.session import Session
from modelrunner.core.types import InferenceRequest
from modelrunner.errors import (
    InvalidName,
    InvalidRequest,
    ModelNotFound,
    ModelRunnerError,
    NotFound,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
MAX_BODY = 32 * 1024 * 1024  # Anthropic's limit for the Messages and token counting APIs
PATHS = re.compile(r"^(/anthropic|/engines(/[^/]+)?)?/v1/messages(/|$)")

api = APIRouter(route_class=AnthropicRoute)


class RequestTooLarge(ModelRunnerError):
    status = 413


def is_anthropic_path(path: str) -> bool:
    """Paths whose unknown routes answer in Anthropic's error shape."""
    return path.startswith("/anthropic/") or PATHS.match(path) is not None


def _where(loc: tuple[Any, ...]) -> str:
    """Field path as Anthropic writes it (``messages.0.content.0.text.text``): union tags stay,
    pydantic's union-member labels (``str``, ``list[...]``) go."""
    labels = ("str", "int", "float", "bool", "dict[str,any]")
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in labels))]
    return ".".join(parts) or "body"


async def read_body(request: Request, model: type[M]) -> M:
    if len(await request.body()) > MAX_BODY:
        raise RequestTooLarge("Request exceeds the maximum allowed number of bytes.")
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Of a union's failed branches, the deepest error says the most.
        best = max(exc.errors(), key=lambda e: len(e["loc"]))
        raise InvalidRequest(f"{_where(tuple(best['loc']))}: {best['msg']}") from None


async def found(ref: str, awaitable: Awaitable[T]) -> T:
    """Unknown or malformed model names are a 404 ``not_found_error``."""
    try:
        return await awaitable
    except (ModelNotFound, InvalidName):
        raise NotFound(f"model: {ref}") from None


async def prepared(request: Request, req: InferenceRequest) -> InferenceRequest:
    record = await found(req.model, inference(request).record(req.model, req.dialect))
    convert.fit_to_model(req, record.capabilities(), record.parameters.get("stop"))
    return req


async def events(session: Session, renderer: MessageStream) -> AsyncIterator[dict[str, Any]]:
    for item in renderer.start(len(session.prompt)):
        yield item
    async for chunk in session.chunks():
        for item in renderer.feed(chunk):
            yield item


@api.post("/messages")
async def messages(request: Request) -> Response:
    dialect = engine_dialect(request)
    body = await read_body(request, MessagesRequest)
    req = await prepared(request, convert.inference_request(body, dialect))
    session = await found(body.model, inference(request).open(req))
    ident = new_id("msg")
    if body.stream:
        renderer = MessageStream(
            ident, body.model, body.stop_sequences, lambda: session.stops.matched
        )
        return sse_stream(events(session, renderer))
    final = await collect(request, session)
    return json_response(
        convert.message(ident, body.model, final, session.stops.matched, body.stop_sequences)
    )


@api.post("/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    dialect = engine_dialect(request)
    body = await read_body(request, CountTokensRequest)
    req = await prepared(request, convert.inference_request(body, dialect))
    count = await found(body.model, inference(request).count_tokens(req))
    return json_response({"input_tokens": count})


router = APIRouter()
for prefix in ("/v1", "/anthropic/v1", "/engines/v1", "/engines/{backend}/v1"):
    router.include_router(api, prefix=prefix)
