"""Dialect-neutral inference requests and results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelrunner.core.textstream import ToolCall
from modelrunner.names import Dialect


@dataclass
class InferenceRequest:
    """A generate (``prompt``) or chat (``messages``) request after dialect parsing."""

    model: str
    dialect: Dialect = Dialect.OLLAMA
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    system: str | None = None
    template: str | None = None
    suffix: str | None = None
    raw: bool = False
    context: list[int] | None = None
    images: list[str] = field(default_factory=list)
    format: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    keep_alive: float | None = None
    tools: list[dict[str, Any]] | None = None
    think: bool | str | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    api: str = "ollama"  # for metrics labels

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass
class Timings:
    total_ns: int = 0
    load_ns: int = 0
    prompt_eval_count: int = 0
    prompt_eval_ns: int = 0
    eval_count: int = 0
    eval_ns: int = 0
    cached_tokens: int = 0


@dataclass
class Chunk:
    content: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    done_reason: str = ""
    timings: Timings | None = None
    context: list[int] | None = None


@dataclass
class EmbedResult:
    vectors: list[list[float]]
    prompt_tokens: int
    timings: Timings
