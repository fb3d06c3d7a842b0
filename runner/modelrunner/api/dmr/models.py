"""DMR model management: list, inspect, delete (untag versus delete), tag, disk usage."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from modelrunner.api.common import registry_auth, services
from modelrunner.api.dmr.wire import DMRRoute
from modelrunner.core.model_info import docker_config
from modelrunner.core.transfer import TransferService
from modelrunner.errors import InvalidName, InvalidRequest, ModelNotFound, NotFound
from modelrunner.names import Dialect
from modelrunner.registry.errors import ManifestNotFound
from modelrunner.store.manifests import is_untagged
from modelrunner.store.records import ModelRecord

router = APIRouter(route_class=DMRRoute)


def model_object(record: ModelRecord, tags: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record.manifest.digest}
    if tags:  # omitempty: an untagged model (loaded, not yet tagged) has none
        out["tags"] = tags
    return out | {"created": int(record.created.timestamp()), "config": docker_config(record)}


async def _object(request: Request, record: ModelRecord) -> dict[str, Any]:
    tags = [n.display(Dialect.DMR) for n in services(request).models.tags_of(record)]
    return model_object(record, tags)


async def _record(request: Request, name: str) -> ModelRecord:
    try:
        return await services(request).models.get(name, Dialect.DMR)
    except (ModelNotFound, InvalidName):
        raise NotFound("Model not found") from None


@router.get("/models")
async def list_models(request: Request) -> list[dict[str, Any]]:
    models = services(request).models
    seen: dict[str, dict[str, Any]] = {}
    for record in await models.list_models():
        if record.manifest.digest not in seen:
            seen[record.manifest.digest] = await _object(request, record)
    for record in await anyio.to_thread.run_sync(models.store.untagged):
        seen.setdefault(record.manifest.digest, model_object(record, []))
    return list(seen.values())


@router.get("/models/{name:path}")
async def get_model(name: str, request: Request) -> dict[str, Any]:
    if request.query_params.get("remote", "").lower() in ("1", "t", "true"):
        return await _remote(request, name)
    return await _object(request, await _record(request, name))


async def _remote(request: Request, name: str) -> dict[str, Any]:
    """``docker model inspect -r``: the model in its registry (no local tags)."""
    svc = services(request)
    transfers = TransferService.shared(svc.extra, svc.models.store, svc.settings)
    try:
        manifest, config = await transfers.inspect_remote(
            name, Dialect.DMR, registry_auth=registry_auth(request)
        )
    except InvalidName:
        raise InvalidRequest("Invalid model reference") from None
    except ManifestNotFound:
        raise NotFound("Model not found") from None
    created = 0
    descriptor = config.get("descriptor")
    if isinstance(descriptor, dict) and isinstance(descriptor.get("created"), str):
        with contextlib.suppress(ValueError):
            stamp = descriptor["created"].replace("Z", "+00:00")
            created = int(datetime.fromisoformat(stamp).timestamp())
    inner = config.get("config")
    return {
        "id": manifest.digest,
        "created": created,
        "config": inner if isinstance(inner, dict) else {},
    }


@router.delete("/models/{name:path}")
async def delete_model(name: str, request: Request) -> Response:
    raw = request.query_params.get("force")
    force = raw is not None and raw.lower() not in ("0", "false", "no")
    try:
        removed, deleted = await services(request).models.remove_dmr(name, force)
    except (ModelNotFound, InvalidName):
        raise NotFound("Model not found") from None
    body: list[dict[str, str]] = [
        {"Untagged": n.display(Dialect.DMR)} for n in removed if not is_untagged(n)
    ]
    if deleted:
        body.append({"Deleted": deleted})
    return JSONResponse(body)


@router.post("/models/{name:path}/tag")
async def tag_model(name: str, request: Request) -> Response:
    repo = request.query_params.get("repo")
    tag = request.query_params.get("tag")
    if not repo or not tag:
        raise InvalidRequest("Missing repo or tag query parameter")
    await _record(request, name)
    target = f"{repo}:{tag}"
    try:
        created = await services(request).models.tag(name, target, Dialect.DMR)
    except InvalidName:
        raise InvalidRequest("Invalid model reference") from None
    return JSONResponse(
        {
            "message": f"Model tagged successfully with {target}",
            "target": created.display(Dialect.DMR),
        },
        status_code=201,
    )


@router.get("/engines/df")
async def disk_usage(request: Request) -> dict[str, int]:
    return {
        "models_disk_usage": services(request).models.disk_usage(),
        "default_backend_disk_usage": 0,
    }
