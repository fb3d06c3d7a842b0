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


class Message(OllamaRequest):
    role: str
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class InferenceBase(ModelRef):
    format: Any = None
    options: dict[str, Any] | None = None
    stream: bool = True
    keep_alive: float | int | str | None = None
    think: bool | str | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    truncate: bool = True
    shift: bool = True
    # Answer with the rendered prompt instead of running the model.
    debug_render_only: bool = Field(default=False, alias="_debug_render_only")


class GenerateRequest(InferenceBase):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class ChatRequest(InferenceBase):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class EmbedRequest(ModelRef):
    input: Any = None
    truncate: bool = True
    dimensions: int | None = None
    options: dict[str, Any] | None = None
    keep_alive: float | int | str | None = None


class EmbeddingsRequest(ModelRef):
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: float | int | str | None = None
