"""DMR's wire conventions: plain-text errors (Go's http.Error), JSON bodies."""

from __future__ import annotations

from fastapi import Response
from fastapi.responses import PlainTextResponse

from modelrunner.api.common import error_route


def error_response(status: int, message: str) -> Response:
    return PlainTextResponse(message + "\n", status_code=status)


DMRRoute = error_route(error_response)
