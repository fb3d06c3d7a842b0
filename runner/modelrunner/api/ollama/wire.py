"""Ollama's wire conventions: error shape, NDJSON streams, timestamps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse, StreamingResponse

from modelrunner.api.common import error_route

NDJSON = "application/x-ndjson"


def error_response(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


OllamaRoute = error_route(error_response)


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 with nanosecond precision, as Go's time.RFC3339Nano prints it."""
    value = (moment or datetime.now(UTC)).astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}000Z"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def ndjson_lines(items: Iterable[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for item in items:
            yield dumps(item)

    return StreamingResponse(body(), media_type=NDJSON)


def ndjson_stream(items: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for item in items:
                yield dumps(item)
        except Exception as exc:  # mid-stream failures become a final error line (status is sent)
            message = getattr(exc, "message", None) or str(exc)
            yield dumps({"error": message})

    return StreamingResponse(body(), media_type=NDJSON)
