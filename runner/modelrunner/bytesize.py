"""Byte sizes as people write them: ``8589934592``, ``8GiB``, ``512MiB``, ``8GB``, ``1.5G``."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def parse_bytes(value: str | int) -> int:
    """Bytes in ``value``; raises ValueError for anything else (negative, unknown unit)."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or e.g. 8GiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    match = _SIZE.fullmatch(str(value))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"invalid size {value!r}: use bytes or a unit such as 512MiB, 8GiB, 8GB")
    return int(float(match.group(1)) * _UNITS[unit])
