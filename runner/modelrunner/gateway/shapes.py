"""Errors in the caller's dialect, shaped as the runner shapes them (Ollama ``{"error"}``, OpenAI's
error object, Anthropic's typed error with a request id, DMR's plain text). The gateway may not
import the runner's dialect packages, so the shapes are written out here once."""

from __future__ import annotations

import re
import secrets
import string

from starlette.responses import JSONResponse, PlainTextResponse, Response

from modelrunner.names import Dialect

_ANTHROPIC = re.compile(r"^(/anthropic|/engines(/[^/]+)?)?/v1/messages(/|$)")
_OPENAI = re.compile(r"^(/engines(/[^/]+)?)?/v1(/|$)")
_OPENAI_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", None),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_ALPHABET = string.ascii_letters + string.digits


def dialect_of(path: str) -> str:
    if path.startswith("/anthropic/") or _ANTHROPIC.match(path):
        return "anthropic"
    if _OPENAI.match(path):
        return "openai"
    if path == "/" or path.startswith("/api/"):
        return "ollama"
    return "dmr"


def name_dialect(path: str) -> Dialect:
    """Under ``/engines/`` (and DMR's ``/models/``) names read as DMR's; elsewhere as Ollama's
    (the runner's rule)."""
    return Dialect.DMR if path.startswith(("/engines/", "/models/")) else Dialect.OLLAMA


def error_for(
    path: str, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    dialect = dialect_of(path)
    response: Response
    if dialect == "anthropic":
        status = 529 if status == 503 else status  # Anthropic's "overloaded", as the runner maps it
        kind = _ANTHROPIC_KINDS.get(
            status, "invalid_request_error" if status < 500 else "api_error"
        )
        request_id = "req_01" + "".join(secrets.choice(_ALPHABET) for _ in range(22))
        body = {"type": "error", "error": {"type": kind, "message": message}}
        response = JSONResponse(
            body | {"request_id": request_id}, status, headers={"request-id": request_id}
        )
    elif dialect == "openai":
        kind, code = _OPENAI_KINDS.get(status, ("api_error", None))
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        response = JSONResponse(body, status)
    elif dialect == "ollama":
        response = JSONResponse({"error": message}, status)
    else:
        response = PlainTextResponse(message + "\n", status)
    response.headers.update(headers or {})
    return response


def model_not_found(path: str, ref: str) -> Response:
    """The 404 the runner gives for an unknown model on this path."""
    dialect = dialect_of(path)
    if dialect == "anthropic":
        return error_for(path, 404, f"model: {ref}")
    if dialect == "openai":
        return error_for(path, 404, f'model "{ref}" not found')
    if dialect == "ollama":
        return error_for(path, 404, f"model '{ref}' not found")
    if path.startswith("/models/"):
        return error_for(path, 404, "Model not found")
    return error_for(path, 404, "model not found")
