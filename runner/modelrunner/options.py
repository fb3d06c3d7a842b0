"""Ollama's model options: names, types and built-in defaults.

Precedence everywhere: built-in defaults < Modelfile ``PARAMETER`` < request ``options``.
Unknown keys are ignored (Ollama logs and drops them); a known key with the wrong type is an error.
"""

from __future__ import annotations

from typing import Any

from modelrunner.errors import InvalidRequest

INT_OPTIONS = frozenset(
    {
        "num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "num_keep", "seed",
        "num_predict", "top_k", "repeat_last_n", "draft_num_predict",
    }
)  # fmt: skip
FLOAT_OPTIONS = frozenset(
    {
        "top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
        "frequency_penalty",
    }
)  # fmt: skip
BOOL_OPTIONS = frozenset({"use_mmap"})
LIST_OPTIONS = frozenset({"stop"})
KNOWN_OPTIONS = INT_OPTIONS | FLOAT_OPTIONS | BOOL_OPTIONS | LIST_OPTIONS
# Accepted by the Modelfile parser for old files, with no effect (Ollama warns "deprecated").
DEPRECATED_OPTIONS = frozenset(
    {"mirostat", "mirostat_eta", "mirostat_tau", "penalize_newline", "numa", "low_vram",
     "f16_kv", "logits_all", "vocab_only", "use_mlock", "tfs_z"}
)  # fmt: skip

DEFAULTS: dict[str, Any] = {
    "num_batch": 512,
    "num_gpu": -1,
    "num_thread": 0,
    "num_keep": 4,
    "seed": -1,
    "num_predict": -1,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_last_n": 64,
    "temperature": 0.8,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "stop": [],
}


def check_options(values: Any) -> dict[str, Any]:
    """Validate request ``options``: keep known keys with the right type, drop unknown ones."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InvalidRequest("options must be an object")
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in KNOWN_OPTIONS or value is None:
            continue
        out[key] = _coerce(key, value)
    return out


def _coerce(key: str, value: Any) -> Any:
    if key in INT_OPTIONS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f'option "{key}" must be of type integer')
        return int(value)
    if key in FLOAT_OPTIONS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f'option "{key}" must be of type float')
        return float(value)
    if key in BOOL_OPTIONS:
        if not isinstance(value, bool):
            raise InvalidRequest(f'option "{key}" must be of type boolean')
        return value
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f'option "{key}" must be of type array of strings')
    return list(value)


def parse_parameter(key: str, text: str) -> Any:
    """Type one Modelfile ``PARAMETER`` value (always text in the file)."""
    name = key.lower()
    try:
        if name in INT_OPTIONS:
            return int(text)
        if name in FLOAT_OPTIONS:
            return float(text)
        if name in BOOL_OPTIONS:
            lowered = text.lower()
            if lowered in ("true", "1", "t"):
                return True
            if lowered in ("false", "0", "f"):
                return False
            raise ValueError(text)
    except ValueError:
        raise InvalidRequest(f"invalid value for parameter {name}: {text!r}") from None
    if name in LIST_OPTIONS:
        return text
    raise InvalidRequest(f"unknown parameter '{name}'")


def merge_parameters(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Later values win; ``stop`` lists from the same source replace earlier ones."""
    merged = dict(base)
    merged.update(extra)
    return merged


def go_repr(value: Any) -> str:
    """Go's ``%#v`` for the JSON-ish values a params layer holds (used by ``/api/show``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)
