"""Ollama inference: ``/api/generate``, ``/api/chat``, ``/api/embed``, ``/api/embeddings``."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from modelrunner.api.common import collect, inference, read_model
from modelrunner.api.ollama.schemas import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    InferenceBase,
)
from modelrunner.api.ollama.wire import OllamaRoute, ndjson_stream, timestamp
from modelrunner.core.inference import normalize
from modelrunner.core.session import Session
from modelrunner.core.types import Chunk, InferenceRequest, Timings
from modelrunner.durations import parse_keep_alive
from modelrunner.errors import InvalidName, InvalidRequest, ModelNotFound
from modelrunner.names import Dialect
from modelrunner.store.records import ModelRecord

router = APIRouter(route_class=OllamaRoute)
FAR_FUTURE_SECONDS = 100 * 365 * 86400


def _metrics(t: Timings) -> dict[str, int]:
    return {
        "total_duration": t.total_ns,
        "load_duration": t.load_ns,
        "prompt_eval_count": t.prompt_eval_count,
        "prompt_eval_duration": t.prompt_eval_ns,
        "eval_count": t.eval_count,
        "eval_duration": t.eval_ns,
    }


def _tool_calls(chunk: Chunk) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "function": {"index": c.index, "name": c.name, "arguments": c.arguments}}
        for c in chunk.tool_calls
    ]


def _base_request(body: InferenceBase, ref: str) -> dict[str, Any]:
    return {
        "model": ref,
        "format": body.format,
        "options": body.options or {},
        "keep_alive": parse_keep_alive(body.keep_alive),
        "think": body.think,
        "logprobs": body.logprobs,
        "top_logprobs": body.top_logprobs,
    }


async def _load_or_unload(
    request: Request, ref: str, keep_alive: float | None, options: dict[str, Any] | None
) -> tuple[str, Timings]:
    svc = inference(request)
    if keep_alive == 0:
        record = await svc.unload(ref, Dialect.OLLAMA)
        return record.display(), Timings()
    record, timings = await svc.preload(ref, Dialect.OLLAMA, keep_alive, options)
    return record.display(), timings


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    body = await read_model(request, GenerateRequest)
    ref = body.ref
    if not ref:
        raise ModelNotFound("")
    if not body.prompt and not body.suffix and not body.images:
        keep_alive = parse_keep_alive(body.keep_alive)
        name, timings = await _wrap(_load_or_unload(request, ref, keep_alive, body.options))
        reason = "unload" if keep_alive == 0 else "load"
        return JSONResponse(
            {"model": name, "created_at": timestamp(), "response": "", "done": True,
             "done_reason": reason} | ({} if reason == "unload" else _metrics(timings))
        )  # fmt: skip
    # The Go client always sends system, template and suffix: empty means not given.
    req = InferenceRequest(
        **_base_request(body, ref),
        prompt=body.prompt,
        system=body.system or None,
        template=body.template or None,
        suffix=body.suffix or None,
        raw=body.raw,
        context=body.context,
        images=body.images or [],
    )
    if body.debug_render_only:
        return await _debug_render(request, req, {"response": ""})
    session = await _wrap(inference(request).open(req))
    name = session.record.display()

    def render(chunk: Chunk) -> dict[str, Any]:
        out: dict[str, Any] = {"model": name, "created_at": timestamp(), "response": chunk.content}
        if chunk.thinking:
            out["thinking"] = chunk.thinking
        if chunk.tool_calls:
            out["tool_calls"] = _tool_calls(chunk)
        if chunk.logprobs:
            out["logprobs"] = chunk.logprobs
        out["done"] = chunk.done
        if chunk.done:
            out["done_reason"] = chunk.done_reason
            if chunk.context is not None:
                out["context"] = chunk.context
            out |= _metrics(chunk.timings or Timings())
        return out

    if body.stream:
        return ndjson_stream(_rendered(session, render))
    return JSONResponse(render(await collect(request, session)))


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    body = await read_model(request, ChatRequest)
    ref = body.ref
    if not ref:
        raise InvalidRequest("model is required")
    if not body.messages:
        keep_alive = parse_keep_alive(body.keep_alive)
        name, timings = await _wrap(_load_or_unload(request, ref, keep_alive, body.options))
        reason = "unload" if keep_alive == 0 else "load"
        return JSONResponse(
            {"model": name, "created_at": timestamp(),
             "message": {"role": "assistant", "content": ""}, "done": True,
             "done_reason": reason} | ({} if reason == "unload" else _metrics(timings))
        )  # fmt: skip
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    for m in messages:
        m["role"] = str(m["role"]).lower()
    images = [img for m in body.messages for img in m.images or []]
    req = InferenceRequest(
        **_base_request(body, ref), messages=messages, tools=body.tools, images=images
    )
    if body.debug_render_only:
        return await _debug_render(request, req, {"message": {"role": "", "content": ""}})
    session = await _wrap(inference(request).open(req))
    name = session.record.display()

    def render(chunk: Chunk) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": chunk.content}
        if chunk.thinking:
            message["thinking"] = chunk.thinking
        if chunk.tool_calls:
            message["tool_calls"] = _tool_calls(chunk)
        out: dict[str, Any] = {"model": name, "created_at": timestamp(), "message": message}
        if chunk.logprobs:
            out["logprobs"] = chunk.logprobs
        out["done"] = chunk.done
        if chunk.done:
            out["done_reason"] = chunk.done_reason
            out |= _metrics(chunk.timings or Timings())
        return out

    if body.stream:
        return ndjson_stream(_rendered(session, render))
    return JSONResponse(render(await collect(request, session)))


async def _debug_render(request: Request, req: InferenceRequest, empty: dict[str, Any]) -> Response:
    """One JSON object (streaming or not) with the prompt in ``_debug_info``, as Ollama answers."""
    prompt = await _wrap(inference(request).render(req))
    info: dict[str, Any] = {"rendered_template": prompt}
    if req.images:
        info["image_count"] = len(req.images)
    return JSONResponse(
        {"model": req.model, "created_at": timestamp(), **empty, "done": False,
         "_debug_info": info}
    )  # fmt: skip


async def _rendered(
    session: Session, render: Callable[[Chunk], dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    async for chunk in session.chunks():
        yield render(chunk)


async def _wrap(awaitable: Any) -> Any:
    """Unknown or malformed model names read as "not found" in Ollama's inference routes."""
    try:
        return await awaitable
    except InvalidName as exc:
        raise ModelNotFound(str(exc.message)) from None


@router.post("/api/embed")
async def embed(request: Request) -> dict[str, Any]:
    body = await read_model(request, EmbedRequest)
    if not body.ref:
        raise InvalidRequest("model is required")
    raw = body.input
    if raw is None or raw == "":
        inputs: list[str] = []
    elif isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        inputs = list(raw)
    else:
        raise InvalidRequest("invalid input type")
    if body.dimensions is not None and body.dimensions < 1:
        raise InvalidRequest("dimensions must be a positive integer")
    result = await _wrap(
        inference(request).embed(
            body.ref, inputs, truncate=body.truncate, options=body.options,
            keep_alive=parse_keep_alive(body.keep_alive),
        )
    )  # fmt: skip
    vectors = [normalize(v) for v in result.vectors]
    if body.dimensions:
        vectors = [normalize(v[: body.dimensions]) for v in vectors]
    return {
        "model": body.ref,
        "embeddings": vectors,
        "total_duration": result.timings.total_ns,
        "load_duration": result.timings.load_ns,
        "prompt_eval_count": result.prompt_tokens,
    }


@router.post("/api/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    body = await read_model(request, EmbeddingsRequest)
    if not body.ref:
        raise InvalidRequest("model is required")
    inputs = [body.prompt] if body.prompt else []
    result = await _wrap(
        inference(request).embed(
            body.ref, inputs, options=body.options, keep_alive=parse_keep_alive(body.keep_alive)
        )
    )
    return {"embedding": result.vectors[0] if result.vectors else []}


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    svc = inference(request)
    now = time.monotonic()
    models = []
    for runner in svc.scheduler.loaded():
        if runner.options.embedding and any(
            r.digest == runner.digest and not r.options.embedding for r in svc.scheduler.loaded()
        ):
            continue  # one entry per model, as Ollama lists it
        record = runner.details.get("record")
        if svc.scheduler.pinned(runner):
            remaining = math.inf  # a pinned model stays: shown as keep_alive -1 would be
        elif runner.active or runner.expires_at == math.inf:
            remaining = runner.keep_alive if runner.active else math.inf
        else:
            remaining = runner.expires_at - now
        models.append(
            {
                "name": runner.name,
                "model": runner.name,
                "size": runner.memory_bytes,  # as Ollama's: weights and KV cache
                "digest": runner.digest,
                "details": record.details() if isinstance(record, ModelRecord) else {},
                "expires_at": _expiry(remaining),
                "size_vram": int(getattr(runner.model, "size_vram", 0)),
                "context_length": runner.model.context_length,
            }
        )
    return {"models": models}


def _expiry(seconds: float) -> str:
    if seconds == math.inf or seconds > FAR_FUTURE_SECONDS:
        return timestamp(datetime(2318, 1, 1, tzinfo=UTC))
    return timestamp(datetime.now(UTC) + timedelta(seconds=max(seconds, 0)))
