"""Anthropic's wire conventions: the error object, request ids, and named server-sent events."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse, StreamingResponse

from modelrunner.api.common import error_route

SSE = "text/event-stream"
OVERLOADED = 529  # Anthropic's status for "try again later"; the core's 503 maps here
_ALPHABET = string.ascii_letters + string.digits
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    OVERLOADED: "overloaded_error",
}


def new_id(prefix: str) -> str:
    """Ids shaped like Anthropic's (``msg_01…``, ``toolu_01…``, ``req_01…``); opaque to clients."""
    return f"{prefix}_01" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def status_for(status: int) -> int:
    return OVERLOADED if status == 503 else status


def error_type(status: int) -> str:
    if status in _TYPES:
        return _TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type(status_for(status)), "message": message},
        "request_id": new_id("req"),
    }


def error_response(status: int, message: str) -> Response:
    body = error_body(status, message)
    headers = {"request-id": body["request_id"]}
    return JSONResponse(body, status_code=status_for(status), headers=headers)


AnthropicRoute = error_route(error_response)


def json_response(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers={"request-id": new_id("req")})


def event(obj: dict[str, Any]) -> bytes:
    """``event: NAME`` then ``data: {...}`` whose ``type`` is that same name."""
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return f"event: {obj['type']}\ndata: {data}\n\n".encode()


def sse_stream(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """Named events; a failure after the first byte (the status is already sent) becomes an
    ``error`` event, which Anthropic's SDKs raise as an API error."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for item in events:
                yield event(item)
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            yield event(error_body(int(getattr(exc, "status", 500)), message))

    headers = {"Cache-Control": "no-cache", "request-id": new_id("req")}
    return StreamingResponse(body(), media_type=SSE, headers=headers)
