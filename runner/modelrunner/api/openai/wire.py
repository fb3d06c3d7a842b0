"""OpenAI's wire conventions: the error object and server-sent events ending in ``[DONE]``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse, StreamingResponse

from modelrunner.api.common import error_route

SSE = "text/event-stream"


def error_type(status: int) -> str:
    if status == 400:
        return "invalid_request_error"
    if status == 404:
        return "not_found_error"
    return "api_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": None, "code": None}}


def error_response(status: int, message: str) -> Response:
    return JSONResponse(error_body(status, message), status_code=status)


OpenAIRoute = error_route(error_response)


def event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def sse_stream(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """``data: {...}`` events, then ``data: [DONE]``. A failure after the first byte (the status
    is already sent) becomes a final error event, as Ollama's compatibility layer does."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for item in events:
                yield event(item)
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc)
            yield event(error_body(int(getattr(exc, "status", 500)), message))
            return
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type=SSE, headers={"Cache-Control": "no-cache"})
