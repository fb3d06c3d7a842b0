"""A model's runtime policy: how it is loaded and kept (pure data and validation).

``context_size`` and ``parallel`` are what the model is loaded with; ``keep_alive`` is its default
keep-alive (a request's own still wins, as in Ollama); ``preload`` loads it at startup and when the
policy is set; ``pinned`` keeps it loaded: never evicted for another model, never expired.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from modelrunner.durations import parse_keep_alive
from modelrunner.errors import InvalidRequest, ModelRunnerError

FIELDS = ("context_size", "keep_alive", "parallel", "preload", "pinned")
MIN_CONTEXT = 256
MAX_PARALLEL = 64
MAX_DURATION_TEXT = 64


@dataclass(frozen=True)
class RuntimePolicy:
    context_size: int | None = None
    keep_alive: str | None = None  # Ollama duration syntax as given; "-1" (any negative): forever
    parallel: int | None = None
    preload: bool = False
    pinned: bool = False

    @property
    def keep_alive_seconds(self) -> float | None:
        return parse_keep_alive(self.keep_alive, lenient=True)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_policy(body: Any, max_context: int) -> RuntimePolicy:
    """A policy from a JSON body; every field optional, unknown fields refused (a typo would
    otherwise silently do nothing). Raises :class:`InvalidRequest` with the field named."""
    if not isinstance(body, dict):
        raise InvalidRequest("runtime policy must be a JSON object")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidRequest(
            f"unknown runtime policy field {unknown[0]!r}; known: {', '.join(FIELDS)}"
        )
    context = _int_or_none(body, "context_size", MIN_CONTEXT, max_context)
    parallel = _int_or_none(body, "parallel", 1, MAX_PARALLEL)
    keep_alive = _keep_alive(body.get("keep_alive"))
    preload, pinned = _bool(body, "preload"), _bool(body, "pinned")
    policy = RuntimePolicy(context, keep_alive, parallel, preload, pinned)
    if pinned and policy.keep_alive_seconds == 0:
        raise InvalidRequest("a pinned model cannot have keep_alive 0 (it would unload at once)")
    return policy


def _int_or_none(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer or null")
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false")
    return value


def _keep_alive(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidRequest('keep_alive must be a duration string (e.g. "10m", "-1") or null')
    text = value.strip() if isinstance(value, str) else repr(value)
    if not text or len(text) > MAX_DURATION_TEXT:
        raise InvalidRequest('keep_alive must be a duration string (e.g. "10m", "-1") or null')
    try:
        seconds = parse_keep_alive(text, lenient=True)
    except ModelRunnerError as exc:
        raise InvalidRequest(f"invalid keep_alive: {exc.message}") from None
    if seconds is not None and math.isnan(seconds):
        raise InvalidRequest(f"invalid keep_alive {text!r}")
    if seconds is not None and not math.isinf(seconds) and seconds > 10 * 365 * 86400:
        raise InvalidRequest("keep_alive must be at most ten years, or negative for forever")
    return text


def policy_from_stored(data: dict[str, Any], max_context: int) -> RuntimePolicy:
    """A stored entry (the policies file), validated as a request body would be."""
    return parse_policy({k: v for k, v in data.items() if k in FIELDS}, max_context)
