"""``keep_alive`` values: a number of seconds or a Go duration string, negative meaning forever."""

from __future__ import annotations

import math
import re
from typing import Any

from modelrunner.errors import InvalidRequest

FOREVER = math.inf
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration such as ``5m``, ``1h30m``, ``-1m`` or ``0``."""
    value = text.strip()
    sign = -1.0 if value.startswith("-") else 1.0
    body = value.lstrip("+-")
    if body == "0":
        return 0.0
    if not body:
        raise InvalidRequest(f'time: invalid duration "{text}"')
    pos, total = 0, 0.0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            if re.fullmatch(r"[\d.]+", body[pos:]):
                raise InvalidRequest(f'time: missing unit in duration "{text}"')
            raise InvalidRequest(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def parse_keep_alive(value: Any, *, lenient: bool = False) -> float | None:
    """Seconds to keep a model loaded: ``None`` when unset, ``FOREVER`` when negative.
    ``lenient`` also accepts bare numbers in strings (DMR's "-1" and "0")."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequest("keep_alive must be a number of seconds or a duration string")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value) if lenient else parse_go_duration(value)
        except ValueError:
            seconds = parse_go_duration(value)
    else:
        raise InvalidRequest("keep_alive must be a number of seconds or a duration string")
    return FOREVER if seconds < 0 else seconds
