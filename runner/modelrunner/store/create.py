"""Build a new model from uploaded GGUF blobs or an existing model, plus prompt layers.

This is what ``POST /api/create`` (and ``modelrunner create``) do: each small layer (template,
system, params, messages, license) becomes a blob, a config blob describes the model, and the
manifest is published last, so a failure at any step leaves no half-made model.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelrunner.errors import BlobNotFound, InvalidRequest
from modelrunner.names import Dialect, ModelName
from modelrunner.store import media
from modelrunner.store.digest import parse_digest
from modelrunner.store.gguf_info import human_number, is_gguf, read_gguf
from modelrunner.store.manifests import Descriptor, Manifest
from modelrunner.store.models import ModelStore

Progress = Callable[[str], None]

# Layers a create request replaces when it sets the matching field.
_REPLACED_BY = {
    "template": (*media.TEMPLATE_LAYERS, media.DOCKER_CHAT_TEMPLATE),
    "system": (media.OLLAMA_SYSTEM,),
    "parameters": (media.OLLAMA_PARAMS,),
    "messages": (media.OLLAMA_MESSAGES,),
    "license": media.LICENSE_LAYERS,
}


@dataclass
class CreateSpec:
    """What to build. ``from_`` names an existing model; ``files`` maps relative file names to
    uploaded blob digests (GGUF). Fields left ``None`` are inherited from the base model."""

    from_: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    license: list[str] | None = None
    requires: str | None = None


def check_relative_path(path: str) -> str:
    normal = posixpath.normpath(path.replace("\\", "/"))
    if path.startswith(("/", "\\")) or normal.startswith("..") or normal == "." or ":" in path:
        raise InvalidRequest("file path must be relative")
    return normal


def create_model(
    store: ModelStore, name: ModelName, spec: CreateSpec, progress: Progress = lambda _: None
) -> Manifest:
    base_layers, base_config, parent = _base(store, spec, progress)
    layers = list(base_layers)
    params = _base_params(store, base_layers)
    with store.pinned(layer.digest for layer in layers) as pin:
        for digest in spec.adapters.values():
            layers.append(_existing_blob(store, media.OLLAMA_ADAPTER, digest))
        # Empty means "not given", as in Ollama: the base model's layer stays.
        updates: list[tuple[str, str, bytes | None]] = [
            ("template", media.OLLAMA_TEMPLATE, _text(spec.template or None)),
            ("system", media.OLLAMA_SYSTEM, _text(spec.system or None)),
            ("messages", media.OLLAMA_MESSAGES, _json(spec.messages or None)),
        ]
        if spec.parameters is not None:
            params = {**params, **spec.parameters}
            updates.append(("parameters", media.OLLAMA_PARAMS, _json(params) if params else b""))
        for fieldname, media_type, body in updates:
            if body is None:
                continue
            layers = [x for x in layers if x.media_type not in _REPLACED_BY[fieldname]]
            if body:
                layers.append(_small_layer(store, media_type, body, progress, pin))
        if spec.license is not None:
            layers = [x for x in layers if x.media_type not in media.LICENSE_LAYERS]
            for text in spec.license:
                layers.append(
                    _small_layer(store, media.OLLAMA_LICENSE, text.encode(), progress, pin)
                )
        config = _config(store, layers, base_config, parent, spec.requires)
        config_desc = _small_layer(store, media.OLLAMA_CONFIG, config, lambda _: None, pin)
        manifest = Manifest.build(config_desc, layers)
        progress("writing manifest")
        store.write_manifest(name, manifest)
    progress("success")
    return manifest


def _base(
    store: ModelStore, spec: CreateSpec, progress: Progress
) -> tuple[list[Descriptor], dict[str, Any], str]:
    if spec.files:
        progress("parsing GGUF")
        layers = []
        for path, digest in sorted(spec.files.items()):
            check_relative_path(path)
            desc = _existing_blob(store, media.OLLAMA_MODEL, digest)
            blob = store.blobs.path(desc.digest)
            if not is_gguf(blob):
                raise InvalidRequest(f"{path} is not a GGUF file")
            if read_gguf(blob).architecture == "clip":
                desc = Descriptor(media.OLLAMA_PROJECTOR, desc.digest, desc.size)
            layers.append(desc)
        return layers, {}, ""
    if spec.from_:
        if spec.from_.startswith("@"):
            return [_existing_blob(store, media.OLLAMA_MODEL, spec.from_[1:])], {}, ""
        record = store.get(spec.from_, Dialect.OLLAMA)
        keep = [x for x in record.manifest.layers]
        return keep, record.config, record.display()
    raise InvalidRequest("neither 'from' or 'files' was specified")


def _base_params(store: ModelStore, layers: list[Descriptor]) -> dict[str, Any]:
    for layer in layers:
        if layer.media_type == media.OLLAMA_PARAMS:
            value = json.loads(store.blobs.read(layer.digest))
            return value if isinstance(value, dict) else {}
    return {}


def _existing_blob(store: ModelStore, media_type: str, digest: str) -> Descriptor:
    canonical = parse_digest(digest)
    if not store.blobs.exists(canonical):
        raise BlobNotFound(canonical)
    return Descriptor(media_type, canonical, store.blobs.size(canonical))


def _small_layer(
    store: ModelStore, media_type: str, body: bytes, progress: Progress, pin: Callable[[str], None]
) -> Descriptor:
    pin("sha256:" + hashlib.sha256(body).hexdigest())  # before it exists, so no delete races it
    digest = store.blobs.put(body)
    progress(f"creating new layer {digest}")
    return Descriptor(media_type, digest, len(body))


def _text(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def _json(value: Any) -> bytes | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":")).encode()


def _config(
    store: ModelStore,
    layers: list[Descriptor],
    base: dict[str, Any],
    parent: str,
    requires: str | None,
) -> bytes:
    config: dict[str, Any] = {
        key: base[key]
        for key in ("model_format", "model_family", "model_families", "model_type", "file_type")
        if key in base
    }
    inner = base.get("config") if isinstance(base.get("config"), dict) else None
    model_layers = [x for x in layers if x.media_type in media.MODEL_LAYERS]
    if model_layers and ("model_family" not in config or inner):
        info = read_gguf(store.blobs.path(model_layers[0].digest))
        config["model_format"] = "gguf"
        config["model_family"] = info.architecture
        config["model_families"] = [info.architecture]
        config["model_type"] = human_number(info.parameter_count)
        config["file_type"] = info.file_type
    if parent:
        config["parent_model"] = parent
    if requires:
        config["requires"] = requires
    config["architecture"] = "amd64"
    config["os"] = "linux"
    config["rootfs"] = {"type": "layers", "diff_ids": [x.digest for x in layers]}
    return json.dumps(config, separators=(",", ":")).encode()
