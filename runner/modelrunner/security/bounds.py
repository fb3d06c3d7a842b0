"""Bounded JSON input: checks one parse of the body can make before any router sees it. A body
that is not JSON at all is left to the routers (each already says so in its own words)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from modelrunner.settings import Settings

_IMAGE_PARTS = {"image", "image_url", "input_image"}
_PREDICT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


class Refusal(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(f"number {text[:40]} is out of range")
    return value


@dataclass
class _Census:
    depth: int = 0
    images: int = 0


def _walk(data: Any, max_depth: int) -> _Census:
    """Depth and image count without recursion (the body may nest thousands deep)."""
    census = _Census()
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        item, depth, key = stack.pop()
        if not isinstance(item, dict | list):
            continue
        census.depth = max(census.depth, depth)
        if census.depth > max_depth:
            return census
        if isinstance(item, dict):
            if isinstance(item.get("type"), str) and item["type"] in _IMAGE_PARTS:
                census.images += 1
            stack.extend((v, depth + 1, str(k)) for k, v in item.items())
        else:
            if key == "images":
                census.images += len(item)
            stack.extend((v, depth + 1, "") for v in item)
    return census


def _shown(number: float) -> str:
    return str(int(number)) if number == int(number) and abs(number) < 1e18 else f"{number:g}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def check_json(raw: bytes, settings: Settings) -> None:
    """Raise ``Refusal`` (400) for a JSON body past this runner's bounds."""
    if not raw.strip():
        return
    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except _NonFinite as exc:
        raise Refusal(400, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise Refusal(400, "invalid JSON: nested too deeply") from None
    except ValueError:
        return  # not JSON: the route's own parser answers in its words
    census = _walk(data, settings.max_json_depth)
    if census.depth > settings.max_json_depth:
        raise Refusal(400, f"invalid JSON: nested deeper than {settings.max_json_depth} levels")
    if not isinstance(data, dict):
        return
    _check_counts(data, census, settings)
    _check_ceilings(data, settings)


def _check_counts(data: dict[str, Any], census: _Census, settings: Settings) -> None:
    for field, limit in (("messages", settings.max_messages), ("input", settings.max_messages)):
        value = data.get(field)
        if isinstance(value, list) and len(value) > limit:
            raise Refusal(400, f"too many items in {field}: {len(value)} (limit {limit})")
    tools = data.get("tools")
    if isinstance(tools, list) and len(tools) > settings.max_tools:
        raise Refusal(400, f"too many tools: {len(tools)} (limit {settings.max_tools})")
    if census.images > settings.max_images:
        raise Refusal(400, f"too many images: {census.images} (limit {settings.max_images})")


def _check_ceilings(data: dict[str, Any], settings: Settings) -> None:
    options = data.get("options")
    options = options if isinstance(options, dict) else {}
    num_ctx = _number(options.get("num_ctx"))
    if num_ctx is not None and num_ctx > settings.max_num_ctx:
        raise Refusal(
            400,
            f"num_ctx {_shown(num_ctx)} is larger than this runner allows ({settings.max_num_ctx}); "
            "ask for a smaller context",
        )
    fields = [("num_predict", options.get("num_predict"))]
    fields += [(name, data.get(name)) for name in _PREDICT_FIELDS]
    for name, value in fields:
        number = _number(value)
        if number is not None and number > settings.max_num_predict:
            raise Refusal(
                400,
                f"{name} {_shown(number)} is larger than this runner allows "
                f"({settings.max_num_predict})",
            )
