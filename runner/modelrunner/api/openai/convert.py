"""Pure conversions between OpenAI's wire format and the dialect-neutral core.

Requests follow Ollama's compatibility layer (``openai/openai.go``): ``temperature`` and ``top_p``
default to 1.0 and override the Modelfile, ``response_format`` becomes ``format``, reasoning
effort becomes ``think``. The answers are built in ``replies.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from modelrunner.api.openai.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    ContentPart,
    ImageURL,
    Message,
    ResponseFormat,
    SamplingFields,
)
from modelrunner.core.types import InferenceRequest
from modelrunner.core.vision import decode_base64
from modelrunner.errors import InvalidRequest
from modelrunner.names import Dialect

SYSTEM_FINGERPRINT = "fp_modelrunner"
_DATA_URL = re.compile(r"^data:(?:image/(?:jpeg|jpg|png|webp))?;base64,(.*)$", re.DOTALL)
_EFFORTS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "max",
    "ultra": "max",
    "max": "max",
}


# -- requests ------------------------------------------------------------------------------------


def sampling_options(body: SamplingFields, max_tokens: int | None) -> dict[str, Any]:
    """Ollama options for the shared sampling fields; absent temperature/top_p mean 1.0."""
    options: dict[str, Any] = {
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
    }
    if body.stop is not None:
        options["stop"] = [body.stop] if isinstance(body.stop, str) else list(body.stop)
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    if body.seed is not None:
        options["seed"] = body.seed
    if body.frequency_penalty is not None:
        options["frequency_penalty"] = body.frequency_penalty
    if body.presence_penalty is not None:
        options["presence_penalty"] = body.presence_penalty
    num_ctx = context_size(body)
    if num_ctx is not None:
        options["num_ctx"] = num_ctx
    return options


def context_size(body: SamplingFields) -> int | None:
    """``num_ctx`` at the top level wins over ``options.num_ctx`` (Ollama's spelling)."""
    value: Any = body.num_ctx
    if value is None and body.options is not None:
        value = body.options.get("num_ctx")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"invalid num_ctx: {value!r} (must be a positive integer)")
    return value


def response_format(value: ResponseFormat | None) -> Any:
    """``json_object`` -> ``"json"``; ``json_schema.schema`` -> the schema; ``text`` -> none."""
    if value is None or value.type == "text":
        return None
    if value.type == "json_object":
        return "json"
    if value.type == "json_schema":
        if value.json_schema is None or value.json_schema.schema_ is None:
            raise InvalidRequest("response_format json_schema requires a schema")
        return value.json_schema.schema_
    raise InvalidRequest(f"invalid response_format type: {value.type!r}")


def think_level(body: ChatCompletionRequest) -> bool | str | None:
    effort = body.reasoning_effort
    if effort is None and body.reasoning is not None:
        effort = body.reasoning.effort
    if effort is None:
        return None
    if effort not in _EFFORTS:
        raise InvalidRequest(
            f"invalid reasoning value: {effort!r} (must be one of {', '.join(_EFFORTS)})"
        )
    return _EFFORTS[effort]


def _image(part: ContentPart) -> str:
    url = part.image_url.url if isinstance(part.image_url, ImageURL) else part.image_url
    if not isinstance(url, str):
        raise InvalidRequest("invalid image input")
    if url.startswith(("http://", "https://")):
        raise InvalidRequest(
            "image URLs are not currently supported, please use base64 encoded data instead"
        )
    match = _DATA_URL.match(url)
    if match is None:
        raise InvalidRequest("invalid image input")
    try:
        decode_base64(match.group(1))
    except InvalidRequest:
        raise InvalidRequest("invalid image input") from None
    return match.group(1)


def _content(message: Message) -> tuple[str, list[str]]:
    if message.content is None or isinstance(message.content, str):
        return message.content or "", []
    texts: list[str] = []
    images: list[str] = []
    for part in message.content:
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type == "image_url":
            images.append(_image(part))
        else:
            raise InvalidRequest(f"invalid message content part type: {part.type!r}")
    return "\n".join(texts), images


def _arguments(raw: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        raise InvalidRequest(f"invalid tool call arguments: {raw}") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"invalid tool call arguments: {raw}")
    return value


def chat_messages(messages: list[Message]) -> tuple[list[dict[str, Any]], list[str]]:
    """OpenAI messages as the core's (Ollama's) message dicts, plus every image they carry."""
    if not messages:
        raise InvalidRequest("[] is too short - 'messages'")
    out: list[dict[str, Any]] = []
    all_images: list[str] = []
    call_names: dict[str, str] = {}
    for m in messages:
        role = m.role.lower()
        content, images = _content(m)
        msg: dict[str, Any] = {"role": "system" if role == "developer" else role}
        msg["content"] = content
        if images:
            msg["images"] = images
            all_images += images
        if m.reasoning:
            msg["thinking"] = m.reasoning
        if m.tool_calls:
            msg["tool_calls"] = []
            for i, call in enumerate(m.tool_calls):
                if call.id:
                    call_names[call.id] = call.function.name
                function = {
                    "index": i,
                    "name": call.function.name,
                    "arguments": _arguments(call.function.arguments),
                }
                msg["tool_calls"].append({"id": call.id or "", "function": function})
        if role == "tool":
            name = m.name or call_names.get(m.tool_call_id or "", "")
            if name:
                msg["tool_name"] = name
            if m.tool_call_id:
                msg["tool_call_id"] = m.tool_call_id
        out.append(msg)
    return out, all_images


def chat_request(body: ChatCompletionRequest, dialect: Dialect) -> InferenceRequest:
    messages, images = chat_messages(body.messages)
    max_tokens = body.max_completion_tokens
    if max_tokens is None:
        max_tokens = body.max_tokens
    return InferenceRequest(
        model=body.model,
        dialect=dialect,
        messages=messages,
        images=images,
        tools=body.tools or None,
        format=response_format(body.response_format),
        options=sampling_options(body, max_tokens),
        think=think_level(body),
        logprobs=bool(body.logprobs) or bool(body.top_logprobs),
        top_logprobs=body.top_logprobs or 0,
        api="openai",
    )


def prompts(body: CompletionRequest) -> list[str]:
    if isinstance(body.prompt, str):
        return [body.prompt]
    if not body.prompt:
        raise InvalidRequest("prompt must be a string or a non-empty list of strings")
    return list(body.prompt)


def completion_request(
    body: CompletionRequest, dialect: Dialect, prompt: str | None = None
) -> InferenceRequest:
    return InferenceRequest(
        model=body.model,
        dialect=dialect,
        prompt=prompts(body)[0] if prompt is None else prompt,
        suffix=body.suffix or None,
        options=sampling_options(body, body.max_tokens),
        logprobs=body.logprobs is not None,
        top_logprobs=body.logprobs or 0,
        api="openai",
    )


def embedding_inputs(raw: Any) -> list[str]:
    """``""`` embeds one empty string; ``[]``, token arrays and other types are invalid."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        return list(raw)
    raise InvalidRequest("invalid input")


def encoding_format(value: str | None) -> str:
    fmt = value or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequest(f"invalid encoding_format: {fmt!r} (must be 'float' or 'base64')")
    return fmt


# -- responses -----------------------------------------------------------------------------------
