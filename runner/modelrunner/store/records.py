"""A stored model as the rest of the runner sees it: files, prompt layers and reported details."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelrunner.names import Dialect, ModelName
from modelrunner.store.gguf_info import GGUFInfo, human_number
from modelrunner.store.manifests import Manifest

_GO_FIELD = re.compile(r"\.(Tools|Suffix|Think|ThinkLevel|IsThinkSet)\b")


@dataclass
class ModelRecord:
    name: ModelName
    manifest: Manifest
    modified_at: datetime
    config: dict[str, Any]
    # When the model's config blob was written: the same for every name of the model (a tag or a
    # copy writes a manifest only), unlike modified_at, which is per name.
    config_written_at: datetime | None = None
    model_files: list[Path] = field(default_factory=list)
    projectors: list[Path] = field(default_factory=list)
    adapters: list[Path] = field(default_factory=list)
    template: str | None = None
    jinja_template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    requires: str | None = None
    gguf: GGUFInfo | None = None

    @property
    def digest(self) -> str:
        """The manifest digest as Ollama lists it: bare hex."""
        return self.manifest.digest.removeprefix("sha256:")

    @property
    def size(self) -> int:
        return self.manifest.size

    def display(self, dialect: Dialect = Dialect.OLLAMA) -> str:
        return self.name.display(dialect)

    @property
    def docker_config(self) -> dict[str, Any]:
        inner = self.config.get("config")
        return inner if isinstance(inner, dict) else {}

    @property
    def family(self) -> str:
        value = self.config.get("model_family") or self.docker_config.get("architecture")
        if not value and self.gguf is not None:
            value = self.gguf.architecture
        return str(value or "")

    @property
    def families(self) -> list[str] | None:
        value = self.config.get("model_families")
        if isinstance(value, list) and value:
            return [str(v) for v in value]
        return [self.family] if self.family else None

    @property
    def parameter_size(self) -> str:
        value = self.config.get("model_type") or self.docker_config.get("parameters")
        if value:
            return str(value).replace(" ", "")
        if self.gguf is not None:
            return human_number(self.gguf.parameter_count)
        return ""

    @property
    def quantization_level(self) -> str:
        value = self.config.get("file_type") or self.docker_config.get("quantization")
        if value:
            return str(value)
        return self.gguf.file_type if self.gguf is not None else ""

    @property
    def context_length(self) -> int | None:
        return self.gguf.context_length if self.gguf is not None else None

    @property
    def created(self) -> datetime:
        descriptor = self.config.get("descriptor")
        if isinstance(descriptor, dict) and isinstance(descriptor.get("created"), str):
            try:
                return datetime.fromisoformat(descriptor["created"].replace("Z", "+00:00"))
            except ValueError:
                pass
        return (self.config_written_at or self.modified_at).astimezone(UTC)

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": str(self.config.get("parent_model", "")),
            "format": "gguf",
            "family": self.family,
            "families": self.families,
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def capabilities(self) -> list[str]:
        caps: list[str] = []
        if self.gguf is not None and self.gguf.is_embedding_model:
            caps.append("embedding")
        else:
            caps.append("completion")
        used = set(_GO_FIELD.findall(self.template or ""))
        jinja = self.jinja_template or (self.gguf.chat_template if self.gguf else None) or ""
        if "Tools" in used or (not self.template and "tools" in jinja):
            caps.append("tools")
        if "Suffix" in used:
            caps.append("insert")
        if self.projectors:
            caps.append("vision")
        thinks = used & {"Think", "ThinkLevel", "IsThinkSet"}
        if thinks or (not self.template and ("enable_thinking" in jinja or "<think>" in jinja)):
            caps.append("thinking")
        return caps
