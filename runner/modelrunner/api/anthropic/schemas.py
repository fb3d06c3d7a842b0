"""Anthropic Messages API request bodies.

Known fields are typed strictly (``"0.5"`` is not a number) and content blocks are a union tagged
by ``type``, so malformed input is a 400 naming the field, as Anthropic answers it. Fields the
runner has no use for (``metadata``, ``cache_control``, ``citations``, ``service_tier``...) are
accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AnthropicModel(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class TextBlock(AnthropicModel):
    type: Literal["text"]
    text: str


class ImageSource(AnthropicModel):
    type: Literal["base64", "url", "file"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ImageBlock(AnthropicModel):
    type: Literal["image"]
    source: ImageSource


class DocumentSource(AnthropicModel):
    type: Literal["text", "content", "base64", "url", "file"]
    media_type: str | None = None
    data: str | None = None
    content: str | list[TextBlock | ImageBlock] | None = None


class DocumentBlock(AnthropicModel):
    type: Literal["document"]
    source: DocumentSource
    title: str | None = None


class ToolUseBlock(AnthropicModel):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


ResultPart = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]


class ToolResultBlock(AnthropicModel):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ResultPart] | None = None
    is_error: bool | None = None


class ThinkingBlock(AnthropicModel):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(AnthropicModel):
    type: Literal["redacted_thinking"]
    data: str


ContentBlock = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock,
    Field(discriminator="type"),
]


class Message(AnthropicModel):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class Tool(AnthropicModel):
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None


class ToolChoice(AnthropicModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(AnthropicModel):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class OutputConfig(AnthropicModel):
    effort: str | None = None


class PromptFields(AnthropicModel):
    """What ``/v1/messages`` and ``/v1/messages/count_tokens`` share."""

    model: str
    messages: list[Message]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None


class MessagesRequest(PromptFields):
    max_tokens: int = Field(ge=1)
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None


class CountTokensRequest(PromptFields):
    pass
