"""A stored model as a Docker Model Runner artifact, for models pushed through DMR's API.

DMR's registry format (``pkg/distribution``): an OCI manifest whose config is
``application/vnd.docker.ai.model.config.v0.1+json`` (``{"config": {format, quantization,
parameters, architecture, size, gguf, context_size}, "descriptor": {"created"}, "rootfs":
{"type": "rootfs", "diff_ids"}}``) and whose layers are uncompressed files: the GGUF
(``application/vnd.docker.ai.gguf.v3``), a projector (``...ai.mmproj``), licenses
(``...ai.license``) and a Jinja chat template (``...ai.chat.template.jinja``), each annotated with
its file path and file metadata.

The layers are the stored blobs themselves (same digests, other media types), so only the config
blob is new. What DMR's format has no place for (an Ollama Go template, system prompt, parameters
other than ``num_ctx``, messages, adapters) is left out; ``num_ctx`` becomes ``context_size``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from modelrunner.core.model_info import docker_config
from modelrunner.errors import InvalidRequest
from modelrunner.store import media
from modelrunner.store.manifests import Descriptor, Manifest
from modelrunner.store.models import ModelStore
from modelrunner.store.records import ModelRecord

# Ollama (or CNCF) layer media type -> DMR's, and the file name DMR's packager gives it.
_LAYERS = {
    media.OLLAMA_MODEL: (media.DOCKER_GGUF, "model.gguf"),
    media.CNCF_GGUF: (media.DOCKER_GGUF, "model.gguf"),
    media.DOCKER_GGUF: (media.DOCKER_GGUF, "model.gguf"),
    media.OLLAMA_PROJECTOR: (media.DOCKER_MMPROJ, "model.mmproj"),
    media.DOCKER_MMPROJ: (media.DOCKER_MMPROJ, "model.mmproj"),
    media.OLLAMA_LICENSE: (media.DOCKER_LICENSE, "LICENSE"),
    media.DOCKER_LICENSE: (media.DOCKER_LICENSE, "LICENSE"),
    media.DOCKER_CHAT_TEMPLATE: (media.DOCKER_CHAT_TEMPLATE, "template.jinja"),
}
FILE_METADATA = "org.cncf.model.file.metadata+json"
UNTESTED = "org.cncf.model.file.mediatype.untested"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _layer(store: ModelStore, layer: Descriptor, media_type: str, filename: str) -> Descriptor:
    path = store.blobs.path(layer.digest)
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    metadata = {
        "name": filename,
        "mode": 0o644,
        "uid": 0,
        "gid": 0,
        "size": layer.size,
        "mtime": _rfc3339(mtime),
        "typeflag": 0,
    }
    annotations = {
        media.FILEPATH_ANNOTATION: filename,
        FILE_METADATA: json.dumps(metadata, separators=(",", ":")),
        UNTESTED: "false",
    }
    return Descriptor(media_type, layer.digest, layer.size, annotations)


def layers(store: ModelStore, manifest: Manifest) -> list[Descriptor]:
    """DMR's layers for the model's files, GGUF shards first, as DMR's packager orders them."""
    out: list[Descriptor] = []
    counts: dict[str, int] = {}
    for layer in manifest.layers:
        mapped = _LAYERS.get(layer.media_type)
        if mapped is None:
            continue
        media_type, filename = mapped
        counts[media_type] = counts.get(media_type, 0) + 1
        if counts[media_type] > 1:  # a second license or shard keeps a distinct file name
            stem, dot, ext = filename.rpartition(".")
            filename = (
                f"{stem}-{counts[media_type]}.{ext}" if dot else f"{filename}-{counts[media_type]}"
            )
        out.append(_layer(store, layer, media_type, filename))
    out.sort(key=lambda d: d.media_type != media.DOCKER_GGUF)
    return out


def config_file(record: ModelRecord, diff_ids: list[str]) -> dict[str, Any]:
    config = docker_config(record)
    num_ctx = record.parameters.get("num_ctx")
    if isinstance(num_ctx, int) and num_ctx > 0:
        config["context_size"] = num_ctx
    return {
        "config": config,
        "descriptor": {"created": _rfc3339(record.created)},
        "rootfs": {"type": "rootfs", "diff_ids": diff_ids},
    }


def docker_artifact(store: ModelStore, record: ModelRecord) -> Manifest:
    """The model as DMR's artifact; the config blob is written to the store. A model that
    already is one is returned as stored (its bytes, and so its digest, unchanged)."""
    if record.manifest.is_docker_model:
        return record.manifest
    files = layers(store, record.manifest)
    if not any(d.media_type == media.DOCKER_GGUF for d in files):
        raise InvalidRequest(f"model {record.name} has no GGUF weights to push as a DMR model")
    raw = json.dumps(config_file(record, [d.digest for d in files]), separators=(",", ":"))
    digest = store.blobs.put(raw.encode())
    config = Descriptor(media.DOCKER_CONFIG_V01, digest, len(raw.encode()))
    return Manifest.build(config, files, media_type=media.OCI_MANIFEST)


def with_context_size(store: ModelStore, record: ModelRecord, context_size: int | None) -> Manifest:
    """DMR's repackage: the same layers under a config whose ``context_size`` is changed (only a
    new config blob and manifest are written). A model in another format becomes DMR's first."""
    if context_size is None:
        return record.manifest
    manifest, config = record.manifest, dict(record.config)
    if manifest.config.media_type not in (media.DOCKER_CONFIG_V01, media.DOCKER_CONFIG_V02):
        manifest = docker_artifact(store, record)
        config = json.loads(store.blobs.read(manifest.config.digest))
    inner = config.get("config")
    config["config"] = {**(inner if isinstance(inner, dict) else {}), "context_size": context_size}
    raw = json.dumps(config, separators=(",", ":")).encode()
    digest = store.blobs.put(raw)
    body = json.loads(manifest.raw)
    body["config"] = {**body["config"], "digest": digest, "size": len(raw)}
    return Manifest.parse(json.dumps(body, separators=(",", ":")).encode())
