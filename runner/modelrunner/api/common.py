"""Helpers every dialect shares: the services container, JSON body parsing, error routes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from modelrunner.core.inference import InferenceService
from modelrunner.core.models import ModelService
from modelrunner.core.session import Session
from modelrunner.core.types import Chunk
from modelrunner.errors import InvalidRequest, ModelRunnerError, NotFound
from modelrunner.names import Dialect
from modelrunner.settings import Settings

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Coroutine[Any, Any, Response]]
ErrorRenderer = Callable[[int, str], Response]


@dataclass
class Services:
    """Everything a route needs, created once per app (no module globals)."""

    settings: Settings
    models: ModelService
    extra: dict[str, Any]


def services(request: Request) -> Services:
    value: Services = request.app.state.services
    return value


def inference(request: Request) -> InferenceService:
    svc: InferenceService = services(request).extra["inference"]
    return svc


# The engines DMR's /engines/{backend}/... paths may name; llama.cpp is the one built in.
BACKENDS = ("llama.cpp",)


def engine_dialect(request: Request) -> Dialect:
    """Under ``/engines/`` names read as DMR's (and the backend must be ours); elsewhere as Ollama's."""
    if not request.url.path.startswith("/engines/"):
        return Dialect.OLLAMA
    if request.path_params.get("backend", BACKENDS[0]) not in BACKENDS:
        raise NotFound("backend not found")
    return Dialect.DMR


async def read_json(request: Request, *, required: bool = True) -> Any:
    """Parse the body as JSON whatever the Content-Type says (Ollama does the same)."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise InvalidRequest("missing request body")
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"invalid JSON: {exc}") from None


async def read_model(request: Request, model: type[M], *, required: bool = True) -> M:
    data = await read_json(request, required=required)
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation(exc)) from None


REGISTRY_CONFIG = "X-Registry-Config"


def registry_auth(request: Request) -> dict[str, Any] | None:
    """Per-request registry credentials from ``X-Registry-Config``, as Docker's API passes them:
    base64url JSON mapping registry hosts to auth entries (``{"auth": ...}`` or
    ``{"username": ..., "password": ...}``); a whole Docker config (``{"auths": ...}``) works too.
    """
    header = request.headers.get(REGISTRY_CONFIG)
    if not header:
        return None
    text = header.strip()
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        data = json.loads(decoded)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(f"invalid {REGISTRY_CONFIG} header: not base64url JSON") from None
    if isinstance(data, dict) and isinstance(data.get("auths"), dict):
        data = data["auths"]
    if not isinstance(data, dict):
        raise InvalidRequest(f"invalid {REGISTRY_CONFIG} header: not a JSON object")
    return data


def describe_validation(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"invalid value for {where}: {first['msg']}"


def error_route(render: ErrorRenderer) -> type[APIRoute]:
    """An APIRoute class that renders core errors with ``render(status, message)``."""

    class DialectRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except ModelRunnerError as exc:
                    return render(exc.status, exc.message)

            return guarded

    return DialectRoute


async def collect(request: Request, session: Session) -> Chunk:
    """Non-streaming answers: merge every chunk of ``session`` into its final one (timings,
    done_reason) and stop generating if the client goes away meanwhile."""
    watcher = asyncio.create_task(_cancel_on_disconnect(request, session))
    merged = Chunk()
    final = Chunk(done=True)
    try:
        async for chunk in session.chunks():
            merged.content += chunk.content
            merged.thinking += chunk.thinking
            merged.tool_calls += chunk.tool_calls
            merged.logprobs += chunk.logprobs
            if chunk.done:
                final = chunk
    finally:
        watcher.cancel()
    final.content, final.thinking = merged.content, merged.thinking
    final.tool_calls, final.logprobs = merged.tool_calls, merged.logprobs
    return final


async def _cancel_on_disconnect(request: Request, session: Session) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while (await request.receive())["type"] != "http.disconnect":
            pass
        session.cancel()
