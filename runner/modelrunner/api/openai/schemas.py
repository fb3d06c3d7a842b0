"""OpenAI request bodies as Ollama's compatibility layer accepts them.

Unknown fields are accepted and ignored (``user``, ``logit_bias``, ``tool_choice``...); a known field
with the wrong type is a 400. Values are strict: ``"0.5"`` is not a number. Beyond OpenAI's fields,
``num_ctx`` (top level or in ``options``, as Ollama spells it) sets the context size.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class ImageURL(OpenAIRequest):
    url: str


class ContentPart(OpenAIRequest):
    type: str
    text: str | None = None
    image_url: str | ImageURL | None = None


class ToolCallFunction(OpenAIRequest):
    name: str = ""
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(OpenAIRequest):
    id: str | None = None
    type: str = "function"
    function: ToolCallFunction


class Message(OpenAIRequest):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning: str | None = None


class StreamOptions(OpenAIRequest):
    include_usage: bool = False


class JSONSchemaFormat(OpenAIRequest):
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(OpenAIRequest):
    type: str
    json_schema: JSONSchemaFormat | None = None


class Reasoning(OpenAIRequest):
    effort: str | None = None


class SamplingFields(OpenAIRequest):
    """Fields chat and legacy completions share."""

    model: str = ""
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    n: int | None = None
    num_ctx: int | None = None
    options: dict[str, Any] | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(SamplingFields):
    messages: list[Message] = Field(default_factory=list)
    max_completion_tokens: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    reasoning_effort: str | None = None
    reasoning: Reasoning | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] = ""
    suffix: str | None = None
    logprobs: int | None = None


class EmbeddingRequest(OpenAIRequest):
    model: str = ""
    input: Any = None
    encoding_format: str | None = None
    dimensions: int | None = None
