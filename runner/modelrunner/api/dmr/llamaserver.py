"""llama-server's own routes as DMR proxies them: ``/tokenize`` and ``/detokenize`` at the root,
under ``/engines`` and ``/engines/{backend}``.

DMR answers a request it cannot route as it answers every routing error, in plain text (``model is
required``, ``model not found``, ``backend not found``); what the engine refuses comes back in
llama-server's error object ``{"error": {"code", "message", "type"}}``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from modelrunner.api.common import services
from modelrunner.api.dmr.wire import DMRRoute
from modelrunner.core import tokenize as tok
from modelrunner.core.inference import InferenceService
from modelrunner.errors import InvalidName, InvalidRequest, ModelNotFound, NotFound
from modelrunner.names import Dialect

BACKEND = "llama.cpp"
MAX_BODY = 10 << 20  # DMR refuses larger inference bodies

router = APIRouter()
_api = APIRouter(route_class=DMRRoute)


def engine_error(status: int, message: str) -> JSONResponse:
    kind = {400: "invalid_request_error", 404: "not_found_error", 501: "not_supported_error"}
    body = {"error": {"code": status, "message": message, "type": kind.get(status, "server_error")}}
    return JSONResponse(body, status_code=status)


async def routed(request: Request) -> tuple[dict[str, Any], str]:
    """DMR's routing checks: backend, body size, JSON object, a ``model`` that exists."""
    if request.path_params.get("backend", BACKEND) != BACKEND:
        raise NotFound("backend not found")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidRequest("request too large")
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidRequest("invalid request") from None
    if not isinstance(body, dict):
        raise InvalidRequest("invalid request")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required")
    try:
        await services(request).models.get(model, Dialect.DMR)
    except (ModelNotFound, InvalidName):
        raise NotFound("model not found") from None
    return body, model


def inference(request: Request) -> InferenceService:
    svc: InferenceService = services(request).extra["inference"]
    return svc


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f'"{key}" must be a boolean')
    return value


def _piece(data: bytes) -> str | list[int]:
    """A piece that is not valid UTF-8 on its own is sent as its bytes, as llama-server does."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)


@_api.post("/tokenize")
async def tokenize(request: Request) -> Response:
    body, model = await routed(request)
    content = body.get("content")
    try:
        if content is None:
            return JSONResponse({"tokens": []})
        if not isinstance(content, str):
            raise InvalidRequest('"content" must be a string')
        add_special = _flag(body, "add_special", False)
        with_pieces = _flag(body, "with_pieces", False)
        if not _flag(body, "parse_special", True):
            return engine_error(501, "parse_special=false is not supported by this runner")
        ids, pieces = await tok.tokenize(
            inference(request), model, Dialect.DMR, content, add_special
        )
    except InvalidRequest as exc:
        return engine_error(400, exc.message)
    if with_pieces:
        return JSONResponse({"tokens": [{"id": p.id, "piece": _piece(p.piece)} for p in pieces]})
    return JSONResponse({"tokens": ids})


@_api.post("/detokenize")
async def detokenize(request: Request) -> Response:
    body, model = await routed(request)
    tokens = body.get("tokens", [])
    if not isinstance(tokens, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in tokens
    ):
        return engine_error(400, '"tokens" must be an array of integers')
    try:
        content = await tok.detokenize(inference(request), model, Dialect.DMR, tokens)
    except InvalidRequest as exc:
        return engine_error(400, exc.message)
    return JSONResponse({"content": content})


for _prefix in ("", "/engines", "/engines/{backend}"):
    router.include_router(_api, prefix=_prefix)
