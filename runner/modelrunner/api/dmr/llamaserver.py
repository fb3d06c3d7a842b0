"""llama-server's own routes as DMR proxies them: ``/tokenize`` and ``/detokenize`` at the root,
under ``/engines`` and ``/engines/{backend}``; ``/rerank`` (and llama-server's ``/reranking``) and
vLLM's ``/score`` there and under ``/v1`` of each.

DMR answers a request it cannot route as it answers every routing error, in plain text (``model is
required``, ``model not found``, ``backend not found``); what the engine refuses comes back in
llama-server's error object ``{"error": {"code", "message", "type"}}``.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from modelrunner.api.common import inference, services
from modelrunner.api.dmr.wire import DMRRoute
from modelrunner.core import tokenize as tok
from modelrunner.core.rerank import NotReranker, RankResult, rank
from modelrunner.errors import InvalidName, InvalidRequest, ModelNotFound, NotFound
from modelrunner.names import Dialect

BACKEND = "llama.cpp"
MAX_BODY = 10 << 20  # DMR refuses larger inference bodies

router = APIRouter()
_api = APIRouter(route_class=DMRRoute)
_ranking = APIRouter(route_class=DMRRoute)


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


def _text(item: Any) -> str:
    """A document: a string, or an object with ``text`` (as Cohere and Jina send them)."""
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return str(item["text"])
    if not isinstance(item, str):
        raise InvalidRequest('"documents" must be an array of strings')
    return item


async def _ranked(request: Request, model: str, query: str, docs: list[str]) -> RankResult:
    try:
        return await rank(inference(request), model, Dialect.DMR, query, docs)
    except NotReranker as exc:
        raise _EngineError(501, exc.message) from None


class _EngineError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@_ranking.post("/rerank")
@_ranking.post("/reranking")
async def rerank(request: Request) -> Response:
    """llama-server's reranking: Jina/Cohere's shape with ``documents``, TEI's with ``texts``."""
    body, model = await routed(request)
    tei = "texts" in body
    try:
        query = body.get("query")
        if not isinstance(query, str):
            raise InvalidRequest('"query" must be provided')
        raw = body.get("texts") if tei else body.get("documents")
        if not isinstance(raw, list) or not raw:
            raise InvalidRequest('"documents" must be a non-empty string array')
        docs = [_text(d) for d in raw]
        top_n = body.get("top_n", len(docs))
        if isinstance(top_n, bool) or not isinstance(top_n, int):
            raise InvalidRequest('"top_n" must be an integer')
        result = await _ranked(request, model, query, docs)
    except InvalidRequest as exc:
        return engine_error(400, exc.message)
    except _EngineError as exc:
        return engine_error(exc.status, exc.message)
    label = "score" if tei else "relevance_score"
    items: list[dict[str, Any]] = [
        {"index": i, label: score} for i, score in enumerate(result.scores)
    ]
    if tei and body.get("return_text") is True:
        for item in items:
            item["text"] = docs[item["index"]]
    items.sort(key=lambda x: -x[label])
    items = items[: max(top_n, 0)]
    if tei:
        return JSONResponse(items)
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return JSONResponse({"model": model, "object": "list", "usage": usage, "results": items})


def _texts(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequest(f'"{name}" must be a string or a non-empty array of strings')


@_ranking.post("/score")
async def score(request: Request) -> Response:
    """vLLM's ``/score``: ``text_1`` against each ``text_2`` (or pairwise when both are lists
    of one length); a single-logit head's score goes through a sigmoid, as vLLM's does."""
    body, model = await routed(request)
    try:
        first = _texts(body.get("text_1"), "text_1")
        second = _texts(body.get("text_2"), "text_2")
        if len(first) not in (1, len(second)):
            raise InvalidRequest('"text_1" must hold one text or as many as "text_2"')
        pairs = [(first[0] if len(first) == 1 else first[i], t) for i, t in enumerate(second)]
        scores = [0.0] * len(pairs)
        tokens = 0
        for query in dict.fromkeys(q for q, _ in pairs):
            idx = [i for i, (q, _) in enumerate(pairs) if q == query]
            result = await _ranked(request, model, query, [pairs[i][1] for i in idx])
            for i, value in zip(idx, result.scores, strict=True):
                scores[i] = 1 / (1 + math.exp(-value)) if result.labels == 1 else value
            tokens += result.prompt_tokens
    except InvalidRequest as exc:
        return engine_error(400, exc.message)
    except _EngineError as exc:
        return engine_error(exc.status, exc.message)
    data = [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)]
    return JSONResponse(
        {
            "id": f"score-{secrets.token_hex(16)}",
            "object": "list",
            "created": int(time.time()),
            "model": model,
            "data": data,
            "usage": {
                "prompt_tokens": tokens,
                "total_tokens": tokens,
                "completion_tokens": 0,
                "prompt_tokens_details": None,
            },
        }
    )


for _prefix in ("", "/engines", "/engines/{backend}"):
    router.include_router(_api, prefix=_prefix)
# /engines/v1 before /engines/{backend}, which would read "v1" as a backend
for _prefix in (
    "",
    "/v1",
    "/engines",
    "/engines/v1",
    "/engines/{backend}/v1",
    "/engines/{backend}",
):
    router.include_router(_ranking, prefix=_prefix)
