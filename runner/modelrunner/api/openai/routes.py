"""OpenAI-compatible routes, mounted at ``/v1`` (Ollama's names) and at ``/engines/v1`` and
``/engines/{backend}/v1`` (DMR's names). Each route parses, converts, calls the core, renders."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from modelrunner.api.common import engine_dialect, inference, read_model, services
from modelrunner.api.openai import convert, replies
from modelrunner.api.openai.choices import (
    Choices,
    Renderer,
    chat_requests,
    choice_count,
    completion_requests,
)
from modelrunner.api.openai.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from modelrunner.api.openai.wire import OpenAIRoute, sse_stream
from modelrunner.core.session import Session
from modelrunner.core.types import Chunk
from modelrunner.errors import InvalidName, InvalidRequest, ModelNotFound, NotFound
from modelrunner.names import Dialect

T = TypeVar("T")

api = APIRouter(route_class=OpenAIRoute)


async def found(ref: str, awaitable: Awaitable[T]) -> T:
    """Unknown or malformed names are OpenAI's 404 ``model "x" not found``."""
    try:
        return await awaitable
    except (ModelNotFound, InvalidName):
        raise NotFound(f'model "{ref}" not found') from None


def meta(prefix: str, model: str, include_usage: bool) -> replies.Meta:
    # Ollama numbers responses chatcmpl-0..998; clients treat the id as opaque.
    return replies.Meta(
        f"{prefix}-{secrets.randbelow(999)}", int(time.time()), model, include_usage
    )


async def events(session: Session, renderer: Renderer) -> AsyncIterator[dict[str, Any]]:
    for item in renderer.start():
        yield item
    async for chunk in session.chunks():
        for item in renderer.feed(chunk):
            yield item


@api.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    dialect = engine_dialect(request)
    models = services(request).models
    data: dict[str, dict[str, Any]] = {}
    for record in await models.list_models():
        if dialect is Dialect.OLLAMA:
            data[record.display()] = replies.model_object(record, dialect)
        elif record.manifest.digest not in data:
            tags = [n.display(Dialect.DMR) for n in models.tags_of(record)]
            data[record.manifest.digest] = replies.model_object(record, dialect, tags)
    return {"object": "list", "data": list(data.values())}


@api.get("/models/{model:path}")
async def get_model(model: str, request: Request) -> dict[str, Any]:
    dialect = engine_dialect(request)
    models = services(request).models
    record = await found(model, models.get(model, dialect))
    tags = [n.display(Dialect.DMR) for n in models.tags_of(record)]
    return replies.model_object(record, dialect, tags)


@api.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    dialect = engine_dialect(request)
    body = await read_model(request, ChatCompletionRequest)
    if not body.model:
        raise InvalidRequest("model is required")
    if request.headers.get("x-preload-only", "").lower() == "true":
        await found(body.model, inference(request).preload(body.model, dialect, None))
        return Response(status_code=200)
    choices = Choices(request, chat_requests(body, dialect), inference(request).open)
    session = await found(body.model, choices.open(0))
    info = meta("chatcmpl", body.model, body.include_usage)
    if not body.stream:
        return JSONResponse(replies.chat_completion(info, await choices.collect(session)))
    if len(choices.reqs) == 1:
        return sse_stream(events(session, replies.ChatStream(info)))
    return sse_stream(
        choices.stream(
            session,
            lambda i: replies.ChatStream(info, i, usage_chunk=False),
            lambda finals: _usage(info, "chat.completion.chunk", finals, len(finals)),
        )
    )


def _usage(info: replies.Meta, kind: str, finals: list[Chunk], per_prompt: int) -> Any:
    if not info.include_usage:
        return None
    timings = replies.total_timings([f.timings for f in finals], per_prompt)
    return replies.usage_chunk(info, kind, timings)


@api.post("/completions")
async def completions(request: Request) -> Response:
    dialect = engine_dialect(request)
    body = await read_model(request, CompletionRequest)
    if not body.model:
        raise InvalidRequest("model is required")
    choices = Choices(request, completion_requests(body, dialect), inference(request).open)
    per_prompt = choice_count(body)
    session = await found(body.model, choices.open(0))
    info = meta("cmpl", body.model, body.include_usage)
    if not body.stream:
        finals = await choices.collect(session)
        return JSONResponse(replies.completion(info, finals, per_prompt))
    if len(choices.reqs) == 1:
        return sse_stream(events(session, replies.CompletionStream(info)))
    return sse_stream(
        choices.stream(
            session,
            lambda i: replies.CompletionStream(info, i, usage_chunk=False),
            lambda finals: _usage(info, "text_completion", finals, per_prompt),
        )
    )


@api.post("/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    dialect = engine_dialect(request)
    body = await read_model(request, EmbeddingRequest)
    if not body.model:
        raise InvalidRequest("model is required")
    inputs = convert.embedding_inputs(body.input)
    fmt = convert.encoding_format(body.encoding_format)
    if body.dimensions is not None and body.dimensions < 1:
        raise InvalidRequest("dimensions must be a positive integer")
    result = await found(
        body.model, inference(request).embed(body.model, inputs, dialect=dialect, api="openai")
    )
    return replies.embeddings(
        body.model, result.vectors, result.prompt_tokens, fmt, body.dimensions
    )


router = APIRouter()
router.include_router(api, prefix="/v1")
router.include_router(api, prefix="/engines/v1")
router.include_router(api, prefix="/engines/{backend}/v1")
