"""OpenAI's response objects (completions, chat completions, their stream chunks, embeddings,
models) built from the core's ``Chunk`` values; requests are converted in ``convert.py``."""

from __future__ import annotations

import base64
import json
import re
import struct
from dataclasses import dataclass
from typing import Any

from modelrunner.core.inference import normalize
from modelrunner.core.model_info import dmr_metadata
from modelrunner.core.textstream import ToolCall
from modelrunner.core.types import Chunk, Timings
from modelrunner.names import Dialect
from modelrunner.store.records import ModelRecord

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


@dataclass(frozen=True)
class Meta:
    """What every object of one response shares."""

    id: str
    created: int
    model: str
    include_usage: bool = False


def usage(t: Timings | None) -> dict[str, Any]:
    t = t or Timings()
    return {
        "prompt_tokens": t.prompt_eval_count,
        "completion_tokens": t.eval_count,
        "total_tokens": t.prompt_eval_count + t.eval_count,
        "prompt_tokens_details": {"cached_tokens": t.cached_tokens},
    }


def total_timings(timings: list[Timings | None], per_prompt: int = 1) -> Timings:
    """Usage of several choices: every completion token, each prompt once (its first choice),
    as OpenAI counts ``n``."""
    total = Timings()
    for i, t in enumerate(timings):
        t = t or Timings()
        total.eval_count += t.eval_count
        if i % per_prompt == 0:
            total.prompt_eval_count += t.prompt_eval_count
            total.cached_tokens += t.cached_tokens
    return total


def finish_reason(final: Chunk, called_tools: bool) -> str:
    if called_tools:
        return "tool_calls"
    return "length" if final.done_reason == "length" else "stop"


def tool_calls(calls: list[ToolCall], start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id,
            "index": start + i,
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
        }
        for i, call in enumerate(calls)
    ]


def logprobs(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Core entries already carry OpenAI's fields; ``top_logprobs`` is always a list."""
    if not entries:
        return None
    return {"content": [{**e, "top_logprobs": e.get("top_logprobs", [])} for e in entries]}


def legacy_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``/v1/completions`` uses the older parallel-array shape."""
    if not entries:
        return None
    offsets, position = [], 0
    for e in entries:
        offsets.append(position)
        position += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [
            {t["token"]: t["logprob"] for t in e.get("top_logprobs", [])} for e in entries
        ],
        "text_offset": offsets,
    }


def _head(meta: Meta, kind: str) -> dict[str, Any]:
    return {
        "id": meta.id,
        "object": kind,
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def chat_choice(final: Chunk, index: int = 0) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": final.content}
    if final.thinking:
        message["reasoning"] = final.thinking
    if final.tool_calls:
        message["tool_calls"] = tool_calls(final.tool_calls)
    return {
        "index": index,
        "message": message,
        "logprobs": logprobs(final.logprobs),
        "finish_reason": finish_reason(final, bool(final.tool_calls)),
    }


def chat_completion(meta: Meta, final: Chunk | list[Chunk]) -> dict[str, Any]:
    finals = final if isinstance(final, list) else [final]
    choices = [chat_choice(f, i) for i, f in enumerate(finals)]
    used = usage(total_timings([f.timings for f in finals], len(finals)))
    return _head(meta, "chat.completion") | {"choices": choices, "usage": used}


def completion(meta: Meta, final: Chunk | list[Chunk], per_prompt: int = 1) -> dict[str, Any]:
    finals = final if isinstance(final, list) else [final]
    choices = [
        {
            "text": f.content,
            "index": i,
            "logprobs": legacy_logprobs(f.logprobs),
            "finish_reason": finish_reason(f, False),
        }
        for i, f in enumerate(finals)
    ]
    used = usage(total_timings([f.timings for f in finals], per_prompt))
    return _head(meta, "text_completion") | {"choices": choices, "usage": used}


class ChatStream:
    """Renders a session's chunks as ``chat.completion.chunk`` objects: a first delta with the
    role, reasoning and content split into separate deltas, a separate finish chunk with an
    empty delta, then (with ``include_usage``) a chunk with ``choices: []`` and ``usage``."""

    kind = "chat.completion.chunk"

    def __init__(self, meta: Meta, index: int = 0, usage_chunk: bool = True) -> None:
        self.meta = meta
        self.index = index
        self.usage_chunk = usage_chunk  # False: the caller sends one for several choices
        self.calls = 0

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        out = _head(self.meta, self.kind) | {"choices": choices}
        if self.meta.include_usage:
            out["usage"] = None
        return out

    def _delta(
        self, delta: dict[str, Any], finish: str | None = None, probs: Any = None
    ) -> dict[str, Any]:
        return self._chunk(
            [{"index": self.index, "delta": delta, "logprobs": probs, "finish_reason": finish}]
        )

    def start(self) -> list[dict[str, Any]]:
        return [self._delta({"role": "assistant", "content": ""})]

    def feed(self, chunk: Chunk) -> list[dict[str, Any]]:
        if chunk.done:
            return self.finish(chunk)
        deltas: list[dict[str, Any]] = []
        if chunk.thinking:
            deltas.append({"reasoning": chunk.thinking})
        if chunk.content or (chunk.logprobs and not deltas):
            deltas.append({"content": chunk.content})
        if chunk.tool_calls:
            deltas.append({"tool_calls": tool_calls(chunk.tool_calls, self.calls)})
            self.calls += len(chunk.tool_calls)
        probs = logprobs(chunk.logprobs)
        return [
            self._delta(d, probs=probs if i == len(deltas) - 1 else None)
            for i, d in enumerate(deltas)
        ]

    def finish(self, final: Chunk) -> list[dict[str, Any]]:
        out = [self._delta({}, finish=finish_reason(final, self.calls > 0))]
        if self.meta.include_usage and self.usage_chunk:
            out.append(usage_chunk(self.meta, self.kind, final.timings))
        return out


def usage_chunk(meta: Meta, kind: str, timings: Timings | None) -> dict[str, Any]:
    """The last streamed object with ``include_usage``: no choices, the request's usage."""
    return _head(meta, kind) | {"choices": [], "usage": usage(timings)}


class CompletionStream:
    """``text_completion`` chunks; the last one carries the finish reason."""

    kind = "text_completion"

    def __init__(self, meta: Meta, index: int = 0, usage_chunk: bool = True) -> None:
        self.meta = meta
        self.index = index
        self.usage_chunk = usage_chunk

    def _chunk(self, text: str, finish: str | None, probs: Any = None) -> dict[str, Any]:
        choice = {"text": text, "index": self.index, "logprobs": probs, "finish_reason": finish}
        out = _head(self.meta, self.kind) | {"choices": [choice]}
        if self.meta.include_usage:
            out["usage"] = None
        return out

    def start(self) -> list[dict[str, Any]]:
        return []

    def feed(self, chunk: Chunk) -> list[dict[str, Any]]:
        if not chunk.done:
            return [self._chunk(chunk.content, None, legacy_logprobs(chunk.logprobs))]
        out = [self._chunk("", finish_reason(chunk, False))]
        if self.meta.include_usage and self.usage_chunk:
            out.append(usage_chunk(self.meta, self.kind, chunk.timings))
        return out


def encode_vector(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embeddings(
    model: str, vectors: list[list[float]], prompt_tokens: int, fmt: str, dimensions: int | None
) -> dict[str, Any]:
    """Normalised vectors (cut to ``dimensions`` and renormalised), as Ollama's /api/embed."""
    data = []
    for i, raw in enumerate(vectors):
        vector = normalize(raw)
        if dimensions:
            vector = normalize(vector[:dimensions])
        data.append({"object": "embedding", "embedding": encode_vector(vector, fmt), "index": i})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def model_object(
    record: ModelRecord, dialect: Dialect, tags: list[str] | None = None
) -> dict[str, Any]:
    """Ollama lists each name, owned by its namespace; DMR lists each model under its first tag,
    owned by ``docker``, with its ``dmr`` metadata block."""
    if dialect is Dialect.OLLAMA:
        created = int(record.modified_at.timestamp())
        return {"id": record.display(), "object": "model", "created": created,
                "owned_by": record.name.namespace}  # fmt: skip
    out = {
        "id": tags[0] if tags else record.manifest.digest,
        "object": "model",
        "created": int(record.created.timestamp()),
        "owned_by": "docker",
    }
    metadata = dmr_metadata(record)
    return out | {"dmr": metadata} if metadata else out
