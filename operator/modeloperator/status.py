"""Status writes only when something changed, and the SIZE column's text (pure)."""

from __future__ import annotations

from typing import Any


def changes(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``new`` whose value differs from ``old`` (a missing key equals None): the
    merge patch that brings ``old`` to ``new``, empty when nothing changed."""
    old = old or {}
    return {key: value for key, value in new.items() if old.get(key) != value}


def human_size(size: int) -> str:
    """Bytes as ``ollama list`` shows them (decimal units): 291 MB, 1.3 GB."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            if unit in ("B", "KB", "MB"):
                return f"{value:.0f} {unit}"
            return f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
