"""Request bodies of the OpenAI Responses API (``POST /v1/responses``).

As for chat completions, unknown fields are ignored and a known field with the wrong type is a
400. Input items are one permissive model; what each ``type`` needs is checked in
``responses_convert`` so the error can say which item is wrong.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from modelrunner.api.openai.schemas import OpenAIRequest


class InputPart(OpenAIRequest):
    """A content part: ``input_text`` / ``output_text`` (``text``) or ``input_image``."""

    type: str
    text: str | None = None
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputItem(OpenAIRequest):
    """``message`` (``type`` may be left out), ``function_call``, ``function_call_output``,
    ``reasoning`` or ``item_reference``."""

    type: str | None = None
    id: str | None = None
    role: str | None = None
    content: str | list[InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputPart] | None = None
    summary: list[InputPart] | None = None


class FunctionTool(OpenAIRequest):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(OpenAIRequest):
    type: str
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(OpenAIRequest):
    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningConfig(OpenAIRequest):
    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(OpenAIRequest):
    model: str = ""
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    truncation: str | None = None
    user: str | None = None
