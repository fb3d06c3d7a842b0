"""Ollama model management: tags, show, copy, delete, blobs, create."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from modelrunner import __version__
from modelrunner.api.common import read_model, registry_auth, services
from modelrunner.api.ollama.registry import render as render_progress
from modelrunner.api.ollama.registry import transfers
from modelrunner.api.ollama.schemas import CopyRequest, CreateRequest, ModelRef, ShowRequest
from modelrunner.api.ollama.wire import OllamaRoute, ndjson_lines, ndjson_stream, timestamp
from modelrunner.core.transfer import Transfer
from modelrunner.errors import (
    InvalidName,
    InvalidRequest,
    ModelNotFound,
    ModelRunnerError,
    NotFound,
)
from modelrunner.names import Dialect, parse
from modelrunner.options import check_options, merge_parameters
from modelrunner.registry.errors import ManifestNotFound
from modelrunner.store.create import CreateSpec
from modelrunner.store.gguf_info import read_gguf
from modelrunner.store.modelfile import (
    RenderInput,
    parse_modelfile,
    render_modelfile,
    render_parameters,
)
from modelrunner.store.models import ModelStore
from modelrunner.store.records import ModelRecord

# The Ollama release whose API this server follows; clients gate features on it. Codex speaks the
# Responses API only to servers reporting >= 0.13.4 (Ollama shipped /v1/responses in 0.13.3); we
# claim no later release than needed, as we have not checked all that later ones added. Open WebUI
# parses the version as x.y.z integers.
OLLAMA_COMPAT_VERSION = "0.13.5"
DEFAULT_TEMPLATE = "{{ .Prompt }}"

router = APIRouter(route_class=OllamaRoute)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root() -> Response:
    return PlainTextResponse("Ollama is running")


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> dict[str, str]:
    return {"version": OLLAMA_COMPAT_VERSION, "modelrunner": __version__}


def tag_entry(record: ModelRecord) -> dict[str, Any]:
    """One ``/api/tags`` entry; the lengths come from the GGUF (omitted when unknown, as Go's
    omitempty does), as Ollama's model list reads them."""
    name = record.display(Dialect.OLLAMA)
    details = record.details()
    info = record.gguf
    lengths = {
        "context_length": info.context_length if info else None,
        "embedding_length": info.embedding_length if info else None,
    }
    details |= {key: value for key, value in lengths.items() if value}
    return {
        "name": name,
        "model": name,
        "modified_at": timestamp(record.modified_at),
        "size": record.size,
        "digest": record.digest,
        "details": details,
        "capabilities": record.capabilities(),
    }


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(request: Request) -> dict[str, Any]:
    records = await services(request).models.list_models()
    return {"models": [tag_entry(r) for r in records]}


@router.post("/api/show")
async def show(request: Request) -> dict[str, Any]:
    body = await read_model(request, ShowRequest)
    if not body.ref:
        raise InvalidRequest("model is required")
    models = services(request).models
    try:
        record = await models.get(body.ref, Dialect.OLLAMA)
    except InvalidName:
        raise ModelNotFound(body.ref) from None
    # The Go client always sends "system" and "template": empty means not given, and Ollama
    # ignores the deprecated template field altogether.
    if body.system:
        record.system = body.system
    if body.options:
        record.parameters = merge_parameters(record.parameters, check_options(body.options))
    info = await models.gguf_verbose(record) if body.verbose else record.gguf
    out: dict[str, Any] = {
        "modelfile": render_modelfile(_render_input(record)),
        "parameters": render_parameters(record.parameters),
        "template": _selected_template(record),
        "system": record.system,
        "license": "\n".join(record.license) or None,
        "details": record.details(),
        "messages": record.messages or None,
        "model_info": info.model_info(verbose=body.verbose) if info else {},
        "capabilities": record.capabilities(),
        "modified_at": timestamp(record.modified_at),
    }
    if info is not None:  # Ollama lists tensors whether or not verbose is set
        out["tensors"] = [
            {"name": t.name, "type": t.type, "shape": list(t.shape)} for t in info.tensors
        ]
    if record.projectors:  # a vision model: the projector GGUF's key/value map too
        try:
            projector = await anyio.to_thread.run_sync(read_gguf, record.projectors[0])
            out["projector_info"] = projector.model_info(verbose=body.verbose)
        except InvalidRequest:  # an unreadable projector fails at load, not when shown
            pass
    if record.requires:
        out["requires"] = record.requires
    return {k: v for k, v in out.items() if v not in (None, "")}


def _selected_template(record: ModelRecord) -> str:
    """The template that renders chats: the Modelfile's, else the GGUF's chat template (Ollama
    0.33 hands those to llama.cpp), else Ollama's default."""
    jinja = record.jinja_template or (record.gguf.chat_template if record.gguf else None)
    return record.template or jinja or DEFAULT_TEMPLATE


def _render_input(record: ModelRecord) -> RenderInput:
    return RenderInput(
        short_name=record.display(Dialect.OLLAMA),
        model_paths=[str(p) for p in record.model_files],
        adapters=[str(p) for p in record.adapters],
        projectors=[str(p) for p in record.projectors],
        template=record.template,
        system=record.system,
        parameters=record.parameters,
        license=record.license,
        messages=record.messages,
        requires=record.requires,
    )


@router.post("/api/copy")
async def copy(request: Request) -> Response:
    body = await read_model(request, CopyRequest)
    models = services(request).models
    for field, value in (("source", body.source), ("destination", body.destination)):
        try:
            parse(value, Dialect.OLLAMA)
        except InvalidName:
            raise InvalidRequest(f'{field} "{value}" is invalid') from None
    try:
        await models.copy(body.source, body.destination)
    except ModelNotFound:
        raise NotFound(f'model "{body.source}" not found') from None
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(request: Request) -> Response:
    body = await read_model(request, ModelRef)
    if not body.ref:
        raise InvalidRequest("model is required")
    try:
        await services(request).models.delete(body.ref, Dialect.OLLAMA)
    except InvalidName:
        raise ModelNotFound(body.ref) from None
    return Response(status_code=200)


@router.head("/api/blobs/{digest}")
async def blob_head(digest: str, request: Request) -> Response:
    if not services(request).models.blob_exists(digest):
        return Response(status_code=404)
    return Response(status_code=200)


@router.post("/api/blobs/{digest}")
async def blob_upload(digest: str, request: Request) -> Response:
    created = await services(request).models.upload_blob(digest, _body_chunks(request))
    return Response(status_code=201 if created else 200)


async def _body_chunks(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


@router.post("/api/create")
async def create(request: Request) -> Response:
    body = await read_model(request, CreateRequest)
    if not body.ref:
        raise InvalidRequest("model is required")
    try:
        parse(body.ref, Dialect.OLLAMA)
    except InvalidName:
        raise InvalidRequest("invalid model name") from None
    spec = _spec(body)
    models = services(request).models
    if spec.from_ and _pullable(models.store, spec.from_):
        return await _pull_then_create(request, body.ref, spec, body.stream)
    statuses: list[str] = []
    await models.create(body.ref, spec, statuses.append)
    if not body.stream:
        return JSONResponse({"status": "success"})
    return ndjson_lines({"status": s} for s in statuses)


def _pullable(store: ModelStore, source: str) -> bool:
    """A ``FROM`` model name that is not local: Ollama pulls it before creating."""
    if source.startswith("@"):
        return False
    try:
        parse(source, Dialect.OLLAMA)
    except InvalidName:
        return False
    return store.find(source, Dialect.OLLAMA) is None


async def _pull_then_create(request: Request, ref: str, spec: CreateSpec, stream: bool) -> Response:
    """Pull the base model (its progress first in the stream, as Ollama sends it), then create."""
    source = spec.from_ or ""
    auth = registry_auth(request)
    models = services(request).models

    async def start() -> Transfer:
        try:
            return await transfers(request).pull(source, Dialect.OLLAMA, registry_auth=auth)
        except ManifestNotFound:
            raise NotFound("pull model manifest: file does not exist") from None

    if not stream:
        await (await start()).run()
        await models.create(ref, spec, lambda _: None)
        return JSONResponse({"status": "success"})

    async def events() -> AsyncIterator[dict[str, Any]]:
        try:
            transfer = await start()
        except ModelRunnerError:
            yield {"status": "pulling manifest"}
            raise
        async for event in transfer.events:
            yield render_progress(event)
        statuses: list[str] = []
        await models.create(ref, spec, statuses.append)
        for status in statuses:
            yield {"status": status}

    return ndjson_stream(events())


def _spec(body: CreateRequest) -> CreateSpec:
    if body.modelfile is not None and not (body.from_ or body.files):
        return _legacy_spec(body.modelfile)
    if body.quantize:
        raise InvalidRequest("quantization is not supported by this server")
    license_ = [body.license] if isinstance(body.license, str) else body.license
    return CreateSpec(
        from_=body.from_,
        files=body.files or {},
        adapters=body.adapters or {},
        template=body.template,
        system=body.system,
        parameters=check_options(body.parameters) if body.parameters is not None else None,
        messages=body.messages,
        license=license_,
        requires=body.requires,
    )


def _legacy_spec(text: str) -> CreateSpec:
    modelfile = parse_modelfile(text)
    source = modelfile.from_ or ""
    files: dict[str, str] = {}
    from_: str | None = source
    if source.startswith("@"):
        files, from_ = {"model.gguf": source[1:]}, None
    elif source.startswith(("sha256:", "sha256-")):
        files, from_ = {"model.gguf": source}, None
    return CreateSpec(
        from_=from_,
        files=files,
        template=modelfile.template,
        system=modelfile.system,
        parameters=modelfile.parameters or None,
        messages=modelfile.messages or None,
        license=modelfile.license or None,
        requires=modelfile.requires,
    )
