"""Pure conversions between Anthropic's Messages API and the dialect-neutral core.

Requests follow Ollama's Anthropic layer (``anthropic/anthropic.go``): the system prompt becomes a
leading system message, ``tool_result`` blocks become ``tool`` messages placed before the rest of
their user turn, ``thinking`` maps to ``think`` and is relaxed to the model's default when the model
cannot think (Claude Code always asks for it). Sampling fields override the Modelfile only when
given. Unlike Ollama, ``tool_choice`` is honoured: ``none`` offers no tools, and ``any``/``tool``
constrain the output with a grammar to a call of the offered (or named) tool.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

from modelrunner.api.anthropic.schemas import (
    DocumentBlock,
    ImageBlock,
    ImageSource,
    Message,
    MessagesRequest,
    PromptFields,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    Tool,
    ToolResultBlock,
    ToolUseBlock,
)
from modelrunner.api.anthropic.wire import new_id
from modelrunner.core.types import Chunk, InferenceRequest, Timings
from modelrunner.errors import InvalidRequest
from modelrunner.names import Dialect

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_EFFORTS = ("low", "medium", "high", "max")


# -- requests ------------------------------------------------------------------------------------


def _image(source: ImageSource, where: str) -> str:
    """The core takes images as base64 strings, as Ollama's JSON carries them."""
    if source.type != "base64":
        raise InvalidRequest(
            f"{where}.source: image sources of type {source.type!r} are not supported; "
            "send the image as base64 data"
        )
    if source.media_type not in IMAGE_TYPES:
        raise InvalidRequest(
            f"{where}.source.media_type: Input should be {', '.join(map(repr, IMAGE_TYPES))}"
        )
    try:
        base64.b64decode(source.data or "", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where}.source.data: invalid base64 data") from None
    if not source.data:
        raise InvalidRequest(f"{where}.source.data: image data is empty")
    return source.data


def _document(block: DocumentBlock, where: str) -> str:
    source = block.source
    if source.type == "text":
        text = source.data or ""
    elif source.type == "content" and isinstance(source.content, str):
        text = source.content
    elif source.type == "content":
        text = "\n".join(p.text for p in source.content or [] if isinstance(p, TextBlock))
    else:
        raise InvalidRequest(
            f"{where}.source: document sources of type {source.type!r} are not supported; "
            "send plain text"
        )
    return f"{block.title}\n{text}" if block.title else text


def _result(block: ToolResultBlock, where: str) -> tuple[str, list[str]]:
    if block.content is None or isinstance(block.content, str):
        return block.content or "", []
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(block.content):
        if isinstance(part, TextBlock):
            texts.append(part.text)
        elif isinstance(part, ImageBlock):
            images.append(_image(part.source, f"{where}.content.{j}"))
        else:
            texts.append(_document(part, f"{where}.content.{j}"))
    return "\n".join(texts), images


def system_text(system: str | list[TextBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n".join(block.text for block in system)


def _turn(m: Message, i: int, names: dict[str, str]) -> list[dict[str, Any]]:
    """One Anthropic turn as core messages: tool results first, then the turn itself."""
    if isinstance(m.content, str):
        return [{"role": m.role, "content": m.content}]
    texts: list[str] = []
    images: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[str] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(m.content):
        where = f"messages.{i}.content.{j}"
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ImageBlock):
            images.append(_image(block.source, where))
        elif isinstance(block, DocumentBlock):
            texts.append(_document(block, where))
        elif isinstance(block, ToolUseBlock):
            if m.role != "assistant":
                raise InvalidRequest(
                    f"{where}: tool_use blocks are only allowed in assistant turns"
                )
            names[block.id] = block.name
            function = {"index": len(calls), "name": block.name, "arguments": block.input}
            calls.append({"id": block.id, "function": function})
        elif isinstance(block, ToolResultBlock):
            if m.role != "user":
                raise InvalidRequest(f"{where}: tool_result blocks are only allowed in user turns")
            content, result_images = _result(block, where)
            result: dict[str, Any] = {"role": "tool", "content": content}
            result["tool_call_id"] = block.tool_use_id
            if block.tool_use_id in names:
                result["tool_name"] = names[block.tool_use_id]
            if result_images:
                result["images"] = result_images
            results.append(result)
        elif isinstance(block, ThinkingBlock):
            if m.role != "assistant":
                raise InvalidRequest(
                    f"{where}: thinking blocks are only allowed in assistant turns"
                )
            thinking.append(block.thinking)
        elif not isinstance(block, RedactedThinkingBlock):  # opaque to anyone but Claude
            raise InvalidRequest(f"{where}: unsupported content block")
    out = list(results)
    if texts or images or calls or thinking:
        msg: dict[str, Any] = {"role": m.role, "content": "\n".join(texts)}
        if images:
            msg["images"] = images
        if calls:
            msg["tool_calls"] = calls
        if thinking:
            msg["thinking"] = "\n".join(thinking)
        out.append(msg)
    return out


def chat_messages(body: PromptFields) -> tuple[list[dict[str, Any]], list[str]]:
    """The core's (Ollama's) message dicts, plus every image they carry."""
    if not body.messages:
        raise InvalidRequest("messages: at least one message is required")
    out: list[dict[str, Any]] = []
    system = system_text(body.system)
    if system:
        out.append({"role": "system", "content": system})
    names: dict[str, str] = {}
    for i, m in enumerate(body.messages):
        out += _turn(m, i, names)
    images = [img for m in out for img in m.get("images", [])]
    return out, images


def function_tool(tool: Tool) -> dict[str, Any]:
    function = {"name": tool.name, "description": tool.description or ""}
    return {"type": "function", "function": function | {"parameters": tool.input_schema}}


def _call_schema(tool: Tool) -> dict[str, Any]:
    """A JSON call of ``tool`` in the shape the core's tool-call parser reads."""
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": tool.input_schema},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


@dataclass
class ToolPlan:
    tools: list[dict[str, Any]] | None
    format: Any
    forced: bool


def tool_plan(body: PromptFields) -> ToolPlan:
    tools = body.tools or []
    choice = body.tool_choice.type if body.tool_choice else "auto"
    if not tools or choice == "none":
        return ToolPlan(None, None, False)
    offered = [function_tool(t) for t in tools]
    if choice == "auto":
        return ToolPlan(offered, None, False)
    if choice == "tool":
        name = body.tool_choice.name if body.tool_choice else None
        if not name:
            raise InvalidRequest("tool_choice.tool.name: Field required")
        named = [t for t in tools if t.name == name]
        if not named:
            raise InvalidRequest(f"tool_choice.name: tool {name!r} is not among the tools offered")
        return ToolPlan(offered, _call_schema(named[0]), True)
    schemas = [_call_schema(t) for t in tools]
    return ToolPlan(offered, schemas[0] if len(schemas) == 1 else {"anyOf": schemas}, True)


def think_value(body: PromptFields) -> bool | str | None:
    if body.thinking is not None:
        if body.thinking.type == "enabled":
            if body.thinking.budget_tokens is None:
                raise InvalidRequest("thinking.enabled.budget_tokens: Field required")
            return True
        return False if body.thinking.type == "disabled" else None
    if body.output_config is not None and body.output_config.effort:
        effort = body.output_config.effort.lower()
        return "max" if effort == "xhigh" else effort if effort in _EFFORTS else None
    return None


def inference_request(body: PromptFields, dialect: Dialect) -> InferenceRequest:
    """Everything the body alone says; ``fit_to_model`` then adds what depends on the model."""
    messages, images = chat_messages(body)
    plan = tool_plan(body)
    think = think_value(body)
    if plan.forced:
        if think not in (None, False):
            raise InvalidRequest("Thinking may not be enabled when tool_choice forces tool use.")
        think = False  # the grammar leaves no room to think
    options: dict[str, Any] = {}
    if isinstance(body, MessagesRequest):
        options["num_predict"] = body.max_tokens
        for key in ("temperature", "top_p", "top_k"):
            if getattr(body, key) is not None:
                options[key] = getattr(body, key)
        if body.stop_sequences:
            options["stop"] = list(body.stop_sequences)
    return InferenceRequest(
        model=body.model,
        dialect=dialect,
        messages=messages,
        images=images,
        tools=plan.tools,
        format=plan.format,
        options=options,
        think=think,
        api="anthropic",
    )


def fit_to_model(req: InferenceRequest, capabilities: list[str], model_stops: Any) -> None:
    """Thinking asked of a model that cannot think is dropped (as Ollama does for Anthropic
    clients: Claude Code always asks); the caller's stop sequences are added to the model's own,
    which end its turn in its template's words, rather than replacing them."""
    if "thinking" not in capabilities and req.think is not None:
        req.think = None
    if "stop" in req.options and isinstance(model_stops, list):
        req.options["stop"] = [*map(str, model_stops), *req.options["stop"]]


# -- responses -----------------------------------------------------------------------------------


def signature(thinking: str) -> str:
    """Anthropic signs thinking so it can be handed back verbatim; ours only has to be opaque
    and stable (the runner reads thinking back without checking it)."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


def usage(t: Timings | None, output: bool = True) -> dict[str, Any]:
    """Anthropic counts cache reads apart: the three input counts add up to the prompt."""
    t = t or Timings()
    cached = min(t.cached_tokens, t.prompt_eval_count)
    out: dict[str, Any] = {
        "input_tokens": t.prompt_eval_count - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }
    if output:
        out["output_tokens"] = t.eval_count
    return out


def stop_reason(
    final: Chunk, called_tools: bool, matched: str | None, requested: list[str] | None
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence); only the caller's own stop sequences are reported."""
    if called_tools:
        return "tool_use", None
    if final.done_reason == "length":
        return "max_tokens", None
    if matched is not None and matched in (requested or []):
        return "stop_sequence", matched
    return "end_turn", None


def tool_use_block(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": new_id("toolu"), "name": name, "input": arguments}


def content_blocks(final: Chunk) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if final.thinking:
        blocks.append(
            {"type": "thinking", "thinking": final.thinking, "signature": signature(final.thinking)}
        )
    if final.content:
        blocks.append({"type": "text", "text": final.content})
    blocks += [tool_use_block(c.name, c.arguments) for c in final.tool_calls]
    return blocks


def message(
    ident: str, model: str, final: Chunk, matched: str | None, requested: list[str] | None
) -> dict[str, Any]:
    reason, sequence = stop_reason(final, bool(final.tool_calls), matched, requested)
    return {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(final),
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(final.timings),
    }
