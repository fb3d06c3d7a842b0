"""How Docker Model Runner describes a stored model: its config summary (format, quantization,
parameters, architecture, size, GGUF metadata, context size), shared by DMR's ``/models`` objects,
the ``dmr`` block of OpenAI model objects and the config of artifacts pushed as DMR models."""

from __future__ import annotations

from typing import Any

from modelrunner.store.records import ModelRecord


def human_size(size: int) -> str:
    """go-units' binary sizes as DMR prints them (``256.35 MiB``)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.2f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


def weights_size(record: ModelRecord) -> int:
    return sum(p.stat().st_size for p in record.model_files if p.exists())


def context_size(record: ModelRecord) -> int | None:
    """The artifact's ``context_size``, else the GGUF's trained length (DMR packages that)."""
    value = record.docker_config.get("context_size") or record.context_length
    return int(value) if value else None


def gguf_strings(record: ModelRecord) -> dict[str, str]:
    """Scalar GGUF metadata as strings (arrays and the chat template are left out)."""
    if record.gguf is None:
        return {}
    return {
        key: str(value)
        for key, value in record.gguf.kv.items()
        if isinstance(value, str | int | float | bool) and key != "tokenizer.chat_template"
    }


def docker_config(record: ModelRecord) -> dict[str, Any]:
    """The ``config`` object of DMR's Model (every field omitted when empty, as Go's omitempty)."""
    config: dict[str, Any] = {
        "format": "gguf",
        "quantization": record.quantization_level,
        "parameters": record.parameter_size,
        "architecture": record.family,
        "size": human_size(weights_size(record)),
    }
    config = {k: v for k, v in config.items() if v}
    gguf = gguf_strings(record)
    if gguf:
        config["gguf"] = gguf
    context = context_size(record)
    if context:
        config["context_size"] = context
    return config


def dmr_metadata(record: ModelRecord) -> dict[str, Any]:
    """The ``dmr`` block of DMR's OpenAI model objects (omitempty fields)."""
    config = docker_config(record)
    out = {
        "context_window": config.get("context_size"),
        "architecture": config.get("architecture"),
        "parameters": config.get("parameters"),
        "quantization": config.get("quantization"),
        "size": config.get("size"),
    }
    return {k: v for k, v in out.items() if v}
