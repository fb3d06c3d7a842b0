"""The FastAPI application factory: one app, one store, every dialect."""

from __future__ import annotations

import posixpath
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from modelrunner import __version__
from modelrunner.api import runtime as runtime_routes
from modelrunner.api import system
from modelrunner.api.anthropic import routes as anthropic_routes
from modelrunner.api.anthropic import wire as anthropic_wire
from modelrunner.api.common import Services
from modelrunner.api.dmr import archive as dmr_archive
from modelrunner.api.dmr import engines as dmr_engines
from modelrunner.api.dmr import llamaserver as dmr_llamaserver
from modelrunner.api.dmr import models as dmr_models
from modelrunner.api.dmr import registry as dmr_registry
from modelrunner.api.dmr import requests as dmr_requests
from modelrunner.api.dmr import service as dmr_service
from modelrunner.api.ollama import inference as ollama_inference
from modelrunner.api.ollama import models as ollama_models
from modelrunner.api.ollama import registry as ollama_registry
from modelrunner.api.openai import responses as openai_responses
from modelrunner.api.openai import routes as openai_routes
from modelrunner.core.inference import EngineDefaults, InferenceService
from modelrunner.core.logbuffer import LogBuffer
from modelrunner.core.models import ModelService
from modelrunner.core.responses import ResponseStore
from modelrunner.core.runtime import PolicyService
from modelrunner.durations import parse_keep_alive
from modelrunner.engine.base import Engine
from modelrunner.engine.prompts import check_template
from modelrunner.metrics import Metrics
from modelrunner.scheduler import Scheduler
from modelrunner.security.middleware import install_security
from modelrunner.settings import Settings
from modelrunner.store.models import ModelStore

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Docker Desktop's socket proxy adds this prefix to every DMR path.
_DMR_PREFIX = re.compile(r"^/exp/vDD4\.40(?=/|$)")
_LOCAL_ORIGINS = r"^(https?://(localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(:\d+)?|app://.*|file://.*|tauri://.*|vscode-webview://.*)$"


class PathNormalizer:
    """Strip the Docker Desktop prefix and clean ``//`` runs, as DMR's router does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = _DMR_PREFIX.sub("", scope["path"]) or "/"
            if "//" in path:
                path = posixpath.normpath(path) + ("/" if path.endswith("/") else "")
            if path != scope["path"]:
                scope = dict(scope, path=path, raw_path=path.encode())
        await self.app(scope, receive, send)


def default_engine(settings: Settings) -> Engine:
    """The engine ``settings.engine`` names (imported here: llama.cpp loads on import)."""
    if settings.engine == "simple":
        from modelrunner.engine.llama import LlamaEngine

        return LlamaEngine()
    from modelrunner.engine.batch_config import BatchTuning
    from modelrunner.engine.batched import BatchedLlamaEngine

    return BatchedLlamaEngine(BatchTuning(flash_attn=settings.flash_attention))


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    store = ModelStore(settings.models)
    scheduler = Scheduler(
        engine or default_engine(settings),
        max_loaded=settings.max_loaded_models,
        max_queue=settings.max_queue,
        default_keep_alive=parse_keep_alive(settings.keep_alive, lenient=True) or 0.0,
        memory_budget=settings.memory_budget_bytes,
        pinned_wait=settings.pinned_wait,
    )
    metrics = Metrics()
    defaults = EngineDefaults(
        context_size=settings.context_size,
        num_gpu=settings.num_gpu,
        num_thread=settings.num_thread,
        parallel=settings.num_parallel,
        max_context=settings.max_num_ctx,
    )
    inference = InferenceService(store, scheduler, metrics, defaults)
    policies = PolicyService(store, inference, settings.max_num_ctx)
    svc = Services(
        settings=settings,
        models=ModelService(store, check_template),
        extra={"inference": inference, "metrics": metrics, "responses": ResponseStore()},
    )
    svc.extra[runtime_routes.POLICIES_KEY] = policies

    logs = svc.extra[dmr_service.LOGS_KEY] = LogBuffer()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logs.install(settings.log_level)
        if settings.prune:
            store.prune()
        scheduler.start()
        policies.start()  # preload what the stored runtime policies say
        try:
            yield
        finally:
            await policies.stop()
            await scheduler.stop()
            logs.uninstall()

    app = FastAPI(title="modelrunner", version=__version__, lifespan=lifespan)
    app.state.services = svc
    # Registry routers first: POST /models/create must win over /models/{name}/... patterns.
    app.include_router(ollama_registry.router)
    app.include_router(dmr_registry.router)
    app.include_router(dmr_archive.router)
    app.include_router(ollama_models.router)
    app.include_router(ollama_inference.router)
    app.include_router(dmr_engines.router)
    app.include_router(dmr_llamaserver.router)
    app.include_router(dmr_models.router)
    app.include_router(dmr_requests.router)
    app.include_router(dmr_service.router)
    app.include_router(openai_routes.router)
    app.include_router(openai_responses.router)
    app.include_router(anthropic_routes.router)
    app.include_router(system.router)
    app.include_router(runtime_routes.router)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = "404 page not found" if exc.status_code == 404 else str(exc.detail)
        if anthropic_routes.is_anthropic_path(request.url.path):
            return anthropic_wire.error_response(exc.status_code, message)
        if request.url.path.startswith(("/v1/", "/engines/")):
            kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
            body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
            return JSONResponse(body, status_code=exc.status_code)
        return PlainTextResponse(message, status_code=exc.status_code)

    app.add_middleware(dmr_requests.RequestRecorder)
    app.state.keys = install_security(app, settings, metrics)  # inside CORS: preflights pass
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.origins,
        allow_origin_regex=_LOCAL_ORIGINS,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(PathNormalizer)
    return app
