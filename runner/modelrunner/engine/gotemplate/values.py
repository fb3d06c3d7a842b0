"""Go value semantics over Python data: truth, printing (``%v``), ``json.Marshal``, quoting.

Python values stand for Go values: ``str``, ``int``, ``float``, ``bool``, ``None`` (nil),
``Mapping`` (map or struct), ``list``/``tuple`` (slice). Two marker types stand for Ollama's
types whose ``String()`` method prints JSON (``ToolCallFunctionArguments``, ``Tools``,
``ToolFunction``...): :class:`JSONDict` and :class:`JSONList`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sized
from typing import Any, Final


class _NoValue:
    """A missing key of the root data map: Go prints it as ``<no value>``; it is nil otherwise."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE: Final = _NoValue()


class JSONDict(dict[str, Any]):
    """A mapping that prints as compact JSON, like Go types with a JSON ``String()`` method."""


class JSONList(list[Any]):
    """A list that prints as compact JSON, like Ollama's ``api.Tools``."""


def is_nil(value: object) -> bool:
    return value is None or value is NO_VALUE


def is_true(value: object) -> bool:
    """Go's truth: false, 0, nil and empty strings, slices and maps are false."""
    if is_nil(value):
        return False
    if isinstance(value, bool | int | float | complex):
        return bool(value)
    if isinstance(value, str | bytes | Sized):
        return len(value) > 0
    return True


def to_text(value: object) -> str:
    """How an action prints its value: nil prints empty, a missing root key ``<no value>``."""
    if value is NO_VALUE:
        return "<no value>"
    if value is None:
        return ""
    return format_value(value)


def format_value(value: object) -> str:
    """Go's ``%v``."""
    if is_nil(value):
        return "<nil>"
    if isinstance(value, JSONDict | JSONList):
        return go_json(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value, "g")
    if isinstance(value, Mapping):
        items = sorted_items(value)
        return "map[" + " ".join(f"{format_value(k)}:{format_value(v)}" for k, v in items) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(format_value(item) for item in value) + "]"
    return str(value)


def sorted_items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """Items in Go's map order: sorted by key (insertion order if keys do not sort)."""
    try:
        return sorted(mapping.items(), key=lambda item: item[0])
    except TypeError:
        return list(mapping.items())


def go_type_name(value: object) -> str:
    if is_nil(value):
        return "<nil>"
    names: list[tuple[type, str]] = [
        (bool, "bool"),
        (int, "int"),
        (float, "float64"),
        (str, "string"),
        (Mapping, "map[string]interface {}"),
        (list, "[]interface {}"),
        (tuple, "[]interface {}"),
    ]
    for kind, name in names:
        if isinstance(value, kind):
            return name
    return type(value).__name__


# floats


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-trip digits of ``abs(value)`` and the decimal point position."""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    return (digits, point) if digits else ("0", 1)


def format_float(value: float, style: str) -> str:
    """Shortest formatting as Go's strconv: ``e`` (exponent), ``f`` (plain), ``g`` (``%v``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    digits, point = _shortest_digits(value)
    exponent = point - 1
    if style == "g":  # Go decides with precision 6 when printing the shortest digits
        style = "e" if exponent < -4 or exponent >= 6 else "f"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if style == "e":
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


# JSON, as Go's encoding/json Marshal writes it


class UnsupportedJSONValue(ValueError):
    """NaN or an infinity: Go's json.Marshal fails on them."""


_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_JSON_SPECIAL = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029\ud800-\udfff]')


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _JSON_ESCAPES:
        return _JSON_ESCAPES[char]
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"
    return f"\\u{ord(char):04x}"


def json_string(text: str) -> str:
    """A JSON string literal with Go's escaping (``<``, ``>``, ``&`` as ``\\u003c``...)."""
    return '"' + _JSON_SPECIAL.sub(_json_escape, text) + '"'


def _json_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise UnsupportedJSONValue(f"json: unsupported value: {format_float(value, 'g')}")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = format_float(value, "e")
        return re.sub(r"e-0(\d)$", r"e-\1", text)
    return format_float(value, "f")


def go_json(value: object) -> str:
    """Compact JSON as Go's ``json.Marshal``: mapping keys keep their insertion order."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: object, out: list[str]) -> None:
    if is_nil(value):
        out.append("null")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_json_float(value))
    elif isinstance(value, str):
        out.append(json_string(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            out.append("," if index else "")
            out.append(json_string(key if isinstance(key, str) else format_value(key)) + ":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            out.append("," if index else "")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"json: unsupported type: {type(value).__name__}")


# Go-syntax quoting (strconv.Quote), for printf's %q

_QUOTE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
}


def go_quote(text: str, quote: str = '"') -> str:
    out = [quote]
    for char in text:
        code = ord(char)
        if char == quote:
            out.append("\\" + char)
        elif char in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[char])
        elif char.isprintable() and not 0xD800 <= code <= 0xDFFF:
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append(quote)
    return "".join(out)
