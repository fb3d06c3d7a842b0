"""Ollama request bodies. Unknown fields are ignored; wrong types are a 400, as in Ollama."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class OllamaRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class ModelRef(OllamaRequest):
    model: str | None = None
    name: str | None = None

    @property
    def ref(self) -> str:
        return self.model or self.name or ""


class ShowRequest(ModelRef):
    verbose: bool = False
    system: str | None = None
    template: str | None = None
    options: dict[str, Any] | None = None


class CopyRequest(OllamaRequest):
    source: str = ""
    destination: str = ""


class CreateRequest(ModelRef):
    from_: str | None = Field(default=None, alias="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    license: str | list[str] | None = None
    requires: str | None = None
    quantize: str | None = None
    stream: bool = True
    modelfile: str | None = None  # removed from Ollama in v0.10; still accepted for old clients
    path: str | None = None
