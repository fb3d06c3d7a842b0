"""Runtime policy routes (``/runner/policies``): how each model is loaded and kept.

Not part of any dialect: the operator (and people) declare per-model context size, parallel
slots, keep-alive, preload and pinning here; the runner stores them in the model store. Errors are
JSON ``{"error": "..."}``. Every route needs the management token when one is set.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from modelrunner.api.common import error_route, read_json, services
from modelrunner.core.runtime import PolicyService


def error_response(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


router = APIRouter(route_class=error_route(error_response))
POLICIES_KEY = "policies"


def policies(request: Request) -> PolicyService:
    svc: PolicyService = services(request).extra[POLICIES_KEY]
    return svc


@router.get("/runner/policies")
async def list_policies(request: Request) -> dict[str, Any]:
    return {"policies": policies(request).listing()}


@router.get("/runner/policies/{model:path}")
async def get_policy(request: Request, model: str) -> dict[str, Any]:
    svc = policies(request)
    return svc.table[svc.find_key(model)].to_json()


@router.put("/runner/policies/{model:path}")
async def put_policy(request: Request, model: str) -> dict[str, Any]:
    body = await read_json(request)
    _, policy = await policies(request).put(model, body)
    return policy.to_json()


@router.delete("/runner/policies/{model:path}")
async def delete_policy(request: Request, model: str) -> dict[str, Any]:
    key = await policies(request).delete(model)
    return {"deleted": key}
