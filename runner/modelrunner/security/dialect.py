"""Errors in the dialect of the path, for refusals made before any router runs. The renderers are
each dialect's own; only this module (outside the dialect packages) knows them all."""

from __future__ import annotations

import re

from fastapi import Response
from fastapi.responses import JSONResponse

from modelrunner.api.anthropic import wire as anthropic_wire
from modelrunner.api.anthropic.routes import is_anthropic_path
from modelrunner.api.dmr import wire as dmr_wire
from modelrunner.api.ollama import wire as ollama_wire
from modelrunner.api.openai import wire as openai_wire

_OPENAI = re.compile(r"^(/engines(/[^/]+)?)?/(v1(/|$)|responses(/|$))")  # DMR's bare /responses too
# OpenAI's own type and code for the refusals the generic renderer does not name.
_OPENAI_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    413: ("invalid_request_error", "request_too_large"),
    414: ("invalid_request_error", "uri_too_long"),
    431: ("invalid_request_error", "request_header_fields_too_large"),
    429: ("requests", "rate_limit_exceeded"),
}


def dialect_of(path: str) -> str:
    if is_anthropic_path(path):
        return "anthropic"
    if _OPENAI.match(path):
        return "openai"
    if path == "/" or path.startswith(("/api/", "/runner/")):
        return "ollama"  # /runner/ (runtime policies) answers JSON {"error": ...} too
    return "dmr"


def error_for(
    path: str, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """``status`` with ``message`` shaped as the dialect of ``path`` answers errors."""
    dialect = dialect_of(path)
    if dialect == "anthropic":
        response = anthropic_wire.error_response(status, message)
    elif dialect == "openai":
        body = openai_wire.error_body(status, message)
        if status in _OPENAI_KINDS:
            body["error"]["type"], body["error"]["code"] = _OPENAI_KINDS[status]
        response = JSONResponse(body, status_code=status)
    elif dialect == "ollama":
        response = ollama_wire.error_response(status, message)
    else:
        response = dmr_wire.error_response(status, message)
    response.headers.update(headers or {})
    return response
