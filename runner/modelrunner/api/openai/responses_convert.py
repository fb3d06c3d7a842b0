"""Pure conversions for the Responses API: input items to core chat messages, and the response
object around the output items.

Input items are first normalised to the wire shape a stored response lists (every item gets an
``id``, string content becomes parts), so a follow-up's ``previous_response_id`` replays exactly
what was stored. The chat-completions converter then turns them into core messages, which keeps
role, image and tool-call handling in one place. ``instructions`` become a leading system message
and, as OpenAI documents, are not carried over to follow-ups.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelrunner.api.openai import convert
from modelrunner.api.openai.responses_schemas import InputItem, InputPart, ResponsesRequest
from modelrunner.api.openai.schemas import (
    ChatCompletionRequest,
    ContentPart,
    Message,
    SamplingFields,
    ToolCallFunction,
    ToolCallIn,
)
from modelrunner.core.types import InferenceRequest, Timings
from modelrunner.errors import InvalidRequest
from modelrunner.names import Dialect

Item = dict[str, Any]
ItemLookup = Callable[[str], Item | None]

ROLES = ("user", "system", "developer", "assistant")
TOOL_CHOICES = ("none", "auto", "required")
TEXT_FORMATS = ("text", "json_object", "json_schema")
TRUNCATIONS = ("auto", "disabled")


def new_id(prefix: str) -> str:
    """OpenAI-looking ids (``resp_``, ``msg_``, ``fc_``, ``rs_`` + 48 hex digits)."""
    return f"{prefix}_{secrets.token_hex(24)}"


# -- input items -----------------------------------------------------------------------------------


def _part(part: InputPart, role: str, where: str) -> Item:
    if part.type in ("input_text", "output_text"):
        if part.text is None:
            raise InvalidRequest(f"{where}: {part.type} requires text")
        # Assistant text is output_text (with annotations) whichever type the client sent.
        if role == "assistant":
            return {"type": "output_text", "text": part.text, "annotations": []}
        return {"type": "input_text", "text": part.text}
    if part.type == "input_image":
        if not part.image_url:
            raise InvalidRequest(
                f"{where}: input_image needs an image_url (file_id is not supported)"
            )
        return {"type": "input_image", "image_url": part.image_url, "detail": part.detail or "auto"}
    if part.type == "refusal" and role == "assistant":
        return {"type": "refusal", "refusal": ""}
    if part.type == "input_file":
        raise InvalidRequest(f"{where}: file inputs are not currently supported")
    raise InvalidRequest(f"{where}: unknown content type: {part.type!r}")


def _parts(content: str | list[InputPart], role: str, where: str) -> list[Item]:
    if isinstance(content, str):
        kind = "output_text" if role == "assistant" else "input_text"
        return [_part(InputPart(type=kind, text=content), role, where)]
    return [_part(p, role, f"{where}.content[{i}]") for i, p in enumerate(content)]


def _message(item: InputItem, where: str) -> Item:
    role = item.role or ""
    if role not in ROLES:
        raise InvalidRequest(f"{where}: invalid role {role!r} (must be one of {', '.join(ROLES)})")
    if item.content is None:
        raise InvalidRequest(f"{where}: message content is required")
    return {
        "id": item.id or new_id("msg"),
        "type": "message",
        "role": role,
        "content": _parts(item.content, role, where),
        "status": "completed",
    }


def _function_call(item: InputItem, where: str) -> Item:
    if not item.call_id or not item.name:
        raise InvalidRequest(f"{where}: function_call requires call_id and name")
    arguments = item.arguments or "{}"
    try:
        parsed = json.loads(arguments)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest(f"{where}: function_call arguments must be a JSON object string")
    return {
        "id": item.id or new_id("fc"),
        "type": "function_call",
        "call_id": item.call_id,
        "name": item.name,
        "arguments": arguments,
        "status": "completed",
    }


def _function_output(item: InputItem, where: str) -> Item:
    if not item.call_id or item.output is None:
        raise InvalidRequest(f"{where}: function_call_output requires call_id and output")
    output = item.output if isinstance(item.output, str) else _parts(item.output, "tool", where)
    return {
        "id": item.id or new_id("fco"),
        "type": "function_call_output",
        "call_id": item.call_id,
        "output": output,
        "status": "completed",
    }


def _reasoning(item: InputItem) -> Item:
    texts = [p.text or "" for p in item.summary or []]
    if not texts and isinstance(item.content, list):
        texts = [p.text or "" for p in item.content]
    return {
        "id": item.id or new_id("rs"),
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": t} for t in texts],
    }


def input_items(raw: str | list[InputItem] | None, lookup: ItemLookup) -> list[Item]:
    """The request's ``input`` as stored items; ``item_reference`` is resolved with ``lookup``."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [_message(InputItem(type="message", role="user", content=raw), "input")]
    items: list[Item] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        kind = item.type or ("message" if item.role else "")
        if kind == "message":
            items.append(_message(item, where))
        elif kind == "function_call":
            items.append(_function_call(item, where))
        elif kind == "function_call_output":
            items.append(_function_output(item, where))
        elif kind == "reasoning":
            items.append(_reasoning(item))
        elif kind == "item_reference":
            found = lookup(item.id or "")
            if found is None:
                raise InvalidRequest(f"{where}: item with id {item.id!r} not found")
            items.append(found)
        elif not kind:
            raise InvalidRequest(f"{where}: input item missing required 'type' field")
        else:
            raise InvalidRequest(f"{where}: unknown input item type: {kind!r}")
    return items


# -- core request ----------------------------------------------------------------------------------


def _content_parts(parts: list[Item] | str) -> str | list[ContentPart]:
    if isinstance(parts, str):
        return parts
    out: list[ContentPart] = []
    for part in parts:
        if part["type"] == "input_image":
            out.append(ContentPart(type="image_url", image_url=part["image_url"]))
        elif part["type"] != "refusal":
            out.append(ContentPart(type="text", text=part["text"]))
    return out


def chat_history(items: list[Item]) -> list[Message]:
    """Stored items as chat messages: consecutive function calls join one assistant message, and
    a reasoning item becomes the reasoning of the assistant turn that follows it."""
    messages: list[Message] = []
    thinking = ""
    for item in items:
        kind = item["type"]
        if kind == "reasoning":
            thinking = "\n".join(s["text"] for s in item.get("summary", []))
        elif kind == "message":
            role = item["role"]
            reasoning = thinking if role == "assistant" and thinking else None
            if role == "assistant":
                thinking = ""
            content = _content_parts(item["content"])
            messages.append(Message(role=role, content=content, reasoning=reasoning))
        elif kind == "function_call":
            call = ToolCallIn(
                id=item["call_id"],
                function=ToolCallFunction(name=item["name"], arguments=item["arguments"]),
            )
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                messages.append(
                    Message(
                        role="assistant", content="", tool_calls=[call], reasoning=thinking or None
                    )
                )
            thinking = ""
        elif kind == "function_call_output":
            content = _content_parts(item["output"])
            messages.append(Message(role="tool", content=content, tool_call_id=item["call_id"]))
    return messages


def core_tools(body: ResponsesRequest) -> list[dict[str, Any]] | None:
    """Function tools in the core's (Ollama's) shape; ``tool_choice: "none"`` offers none."""
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(body.tools or []):
        if tool.type != "function":
            raise InvalidRequest(f"tools[{i}]: tool type {tool.type!r} is not supported")
        if not tool.name:
            raise InvalidRequest(f"tools[{i}]: function tools require a name")
        function: dict[str, Any] = {"name": tool.name, "description": tool.description or ""}
        function["parameters"] = tool.parameters or {"type": "object", "properties": {}}
        tools.append({"type": "function", "function": function})
    choice = body.tool_choice
    if isinstance(choice, str) and choice not in TOOL_CHOICES:
        raise InvalidRequest(f"invalid tool_choice: {choice!r}")
    if isinstance(choice, dict) and not isinstance(choice.get("type"), str):
        raise InvalidRequest("invalid tool_choice: an object needs a type")
    return tools if tools and choice != "none" else None


def text_format(body: ResponsesRequest) -> Any:
    """``text.format`` as the core's ``format``: ``"json"``, a JSON schema, or none."""
    fmt = body.text.format if body.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.type == "json_schema":
        if fmt.schema_ is None:
            raise InvalidRequest("text.format json_schema requires a schema")
        return fmt.schema_
    raise InvalidRequest(
        f"invalid text.format type: {fmt.type!r} (must be one of {', '.join(TEXT_FORMATS)})"
    )


def think(body: ResponsesRequest) -> bool | str | None:
    effort = body.reasoning.effort if body.reasoning else None
    return convert.think_level(ChatCompletionRequest(reasoning_effort=effort))


def inference_request(
    body: ResponsesRequest, items: list[Item], dialect: Dialect
) -> InferenceRequest:
    if not items and not body.instructions:
        raise InvalidRequest("input is required")
    if body.max_output_tokens is not None and body.max_output_tokens < 1:
        raise InvalidRequest("max_output_tokens must be a positive integer")
    if body.truncation is not None and body.truncation not in TRUNCATIONS:
        raise InvalidRequest(f"invalid truncation: {body.truncation!r}")
    messages, images = convert.chat_messages(chat_history(items)) if items else ([], [])
    if body.instructions:
        messages.insert(0, {"role": "system", "content": body.instructions})
    sampling = SamplingFields(temperature=body.temperature, top_p=body.top_p)
    return InferenceRequest(
        model=body.model,
        dialect=dialect,
        messages=messages,
        images=images,
        tools=core_tools(body),
        format=text_format(body),
        options=convert.sampling_options(sampling, body.max_output_tokens),
        think=think(body),
        api="openai",
    )


# -- response object -------------------------------------------------------------------------------


@dataclass
class ResponseHead:
    """What every rendering of one response shares: its id, time, and the request it echoes."""

    body: ResponsesRequest
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = 0


def usage(t: Timings | None) -> dict[str, Any]:
    t = t or Timings()
    return {
        "input_tokens": t.prompt_eval_count,
        "input_tokens_details": {"cached_tokens": t.cached_tokens},
        "output_tokens": t.eval_count,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": t.prompt_eval_count + t.eval_count,
    }


def _text_echo(body: ResponsesRequest) -> dict[str, Any]:
    fmt = body.text.format if body.text else None
    out: dict[str, Any] = {"type": "text"}
    if fmt is not None:
        out = {"type": fmt.type}
        if fmt.type == "json_schema":
            out |= {"name": fmt.name, "schema": fmt.schema_, "strict": fmt.strict}
            if fmt.description is not None:
                out["description"] = fmt.description
    text: dict[str, Any] = {"format": out}
    if body.text and body.text.verbosity:
        text["verbosity"] = body.text.verbosity
    return text


def _tools_echo(body: ResponsesRequest) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "name": t.name,
            "description": t.description,
            "parameters": t.parameters,
            "strict": True if t.strict is None else t.strict,
        }
        for t in body.tools or []
    ]


def response_object(
    head: ResponseHead,
    status: str,
    output: list[Item],
    *,
    timings: Timings | None = None,
    completed_at: int | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = head.body
    reasoning = body.reasoning
    return {
        "id": head.id,
        "object": "response",
        "created_at": head.created_at,
        "status": status,
        "background": False,
        "completed_at": completed_at,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": None,
        "model": body.model,
        "output": output,
        "parallel_tool_calls": True
        if body.parallel_tool_calls is None
        else body.parallel_tool_calls,
        "previous_response_id": body.previous_response_id,
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": reasoning.summary if reasoning else None,
        },
        "service_tier": "default",
        "store": body.store,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "text": _text_echo(body),
        "tool_choice": "auto" if body.tool_choice is None else body.tool_choice,
        "tools": _tools_echo(body),
        "top_logprobs": 0,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "truncation": body.truncation or "disabled",
        "usage": usage(timings) if status in ("completed", "incomplete") else None,
        "user": body.user,
        "metadata": body.metadata or {},
    }
