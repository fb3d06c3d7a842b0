"""The functions a template can call: Go's builtins and Ollama's additions.

Go: ``and or not eq ne lt le gt ge len index slice print printf println html js urlquery call``
(``and``/``or`` short-circuit and are evaluated by the evaluator). Ollama: ``json``,
``currentDate``, ``yesterdayDate``, ``toTypeScriptType``.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

from .printf import sprint, sprintf, sprintln
from .values import NO_VALUE, JSONList, UnsupportedJSONValue, go_json, go_type_name, is_nil, is_true


class FuncError(Exception):
    """A builtin function failed; the evaluator reports it as ``error calling <name>: ...``."""


@dataclass(frozen=True, slots=True)
class Builtin:
    fn: Callable[..., Any]
    min_args: int
    max_args: int | None = None  # None: variadic


LAZY = frozenset({"and", "or"})


# comparisons


def _kind(value: object) -> str:
    if is_nil(value):
        return "nil"
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "string")):
        if isinstance(value, kind):
            return name
    return "other"


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise FuncError("missing argument for comparison")
    first_kind = _kind(first)
    for other in others:
        other_kind = _kind(other)
        if first_kind != other_kind:
            if "nil" not in (first_kind, other_kind):
                raise FuncError(
                    "incompatible types for comparison: "
                    f"{go_type_name(first)} and {go_type_name(other)}"
                )
            continue
        if first_kind == "nil":
            return True
        if isinstance(first, Mapping | list | tuple) or isinstance(other, Mapping | list | tuple):
            raise FuncError(f"non-comparable type {go_type_name(first)}")
        if first == other:
            return True
    return False


def _ne(first: Any, second: Any) -> bool:
    return not _eq(first, second)


def _lt(first: Any, second: Any) -> bool:
    kinds = (_kind(first), _kind(second))
    if any(kind not in ("int", "float", "string") for kind in kinds):
        raise FuncError("invalid type for comparison")
    if kinds[0] != kinds[1]:
        raise FuncError("incompatible types for comparison")
    return bool(first < second)


def _le(first: Any, second: Any) -> bool:
    return _lt(first, second) or _eq(first, second)


def _gt(first: Any, second: Any) -> bool:
    return not _le(first, second)


def _ge(first: Any, second: Any) -> bool:
    return not _lt(first, second)


# collections


def _len(item: Any) -> int:
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, Sized):
        return len(item)
    if is_nil(item):
        raise FuncError("len of nil pointer")
    raise FuncError(f"len of type {go_type_name(item)}")


def _int_index(index: Any, limit: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        raise FuncError(f"cannot index slice/array with type {go_type_name(index)}")
    if not 0 <= index < limit:
        raise FuncError(f"index out of range: {index}")
    return index


def _index(item: Any, *indexes: Any) -> Any:
    if is_nil(item):
        raise FuncError("index of untyped nil")
    for index in indexes:
        if isinstance(item, str):
            data = item.encode()
            item = data[_int_index(index, len(data))]
        elif isinstance(item, list | tuple):
            item = item[_int_index(index, len(item))]
        elif isinstance(item, Mapping):
            item = item.get(index, NO_VALUE)  # Go: a map[string]any has no value there
        elif is_nil(item):
            raise FuncError("index of nil pointer")
        else:
            raise FuncError(f"can't index item of type {go_type_name(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if is_nil(item):
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
        data = item.encode()
        start, stop = _bounds(indexes, len(data))
        return data[start:stop].decode("utf-8", "replace")
    if isinstance(item, list | tuple):
        start, stop = _bounds(indexes, len(item))
        return JSONList(item[start:stop]) if isinstance(item, JSONList) else item[start:stop]
    raise FuncError(f"can't slice item of type {go_type_name(item)}")


def _bounds(indexes: Sequence[Any], length: int) -> tuple[int, int]:
    bounds = [0, length]
    for position, index in enumerate(indexes[:2]):
        bounds[position] = _int_index(index, length + 1)
    if bounds[0] > bounds[1]:
        raise FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(indexes) == 3 and bounds[1] > _int_index(indexes[2], length + 1):
        raise FuncError(f"invalid slice index: {bounds[1]} > {indexes[2]}")
    return bounds[0], bounds[1]


# text


def _joined(args: Sequence[Any]) -> str:
    """Go's evalArgs: a lone string as is, anything else through fmt.Sprint."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(args)


_HTML = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}
_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026"}
_JS["="] = "\\u003D"


def _html(*args: Any) -> str:
    return "".join(_HTML.get(char, char) for char in _joined(args))


def _js_char(char: str) -> str:
    if char in _JS:
        return _JS[char]
    if char < " " or (char >= "\x80" and not char.isprintable()):
        return f"\\u{ord(char):04X}"
    return char


def _js(*args: Any) -> str:
    return "".join(_js_char(char) for char in _joined(args))


def _urlquery(*args: Any) -> str:
    return urllib.parse.quote_plus(_joined(args), safe="")


def _printf(template: Any, *args: Any) -> str:
    if not isinstance(template, str):
        raise FuncError(f"wrong type for value; expected string; got {go_type_name(template)}")
    return sprintf(template, args)


# calls and Ollama's functions


def _not(value: Any) -> bool:
    return not is_true(value)


def _call(function: Any, *args: Any) -> Any:
    if not callable(function):
        raise FuncError(f"non-function of type {go_type_name(function)}")
    return function(*args)


def _json(value: Any) -> str:
    try:
        return go_json(value)
    except UnsupportedJSONValue:
        return ""  # Ollama ignores json.Marshal's error and prints nothing
    except TypeError as error:
        raise FuncError(str(error)) from None


def _date(days_back: int) -> Callable[..., str]:
    def date(*formats: Any) -> str:
        for argument in formats:
            if not isinstance(argument, str):
                raise FuncError(
                    f"wrong type for value; expected string; got {go_type_name(argument)}"
                )
        return (datetime.date.today() - datetime.timedelta(days=days_back)).isoformat()

    return date


_TS_TYPES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "array": "any[]",
    "object": "Record<string, any>",
    "null": "null",
}


def _typescript_type(prop: Any) -> str:
    """Ollama's ``ToolProperty.ToTypeScriptType`` over a JSON-schema property mapping."""
    if not isinstance(prop, Mapping):
        return "any"
    any_of = prop.get("anyOf")
    if isinstance(any_of, list | tuple) and any_of:
        return " | ".join(_typescript_type(option) for option in any_of)
    types = prop.get("type")
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list | tuple) or not types:
        return "any"
    return " | ".join(_TS_TYPES.get(name, "any") for name in types)


BUILTINS: dict[str, Builtin] = {
    "and": Builtin(lambda *args: args[-1], 1),
    "or": Builtin(lambda *args: args[-1], 1),
    "not": Builtin(_not, 1, 1),
    "eq": Builtin(_eq, 1),
    "ne": Builtin(_ne, 2, 2),
    "lt": Builtin(_lt, 2, 2),
    "le": Builtin(_le, 2, 2),
    "gt": Builtin(_gt, 2, 2),
    "ge": Builtin(_ge, 2, 2),
    "len": Builtin(_len, 1, 1),
    "index": Builtin(_index, 1),
    "slice": Builtin(_slice, 1),
    "print": Builtin(lambda *args: sprint(args), 0),
    "println": Builtin(lambda *args: sprintln(args), 0),
    "printf": Builtin(_printf, 1),
    "html": Builtin(_html, 0),
    "js": Builtin(_js, 0),
    "urlquery": Builtin(_urlquery, 0),
    "call": Builtin(_call, 1),
    "json": Builtin(_json, 1, 1),
    "currentDate": Builtin(_date(0), 0),
    "yesterdayDate": Builtin(_date(1), 0),
    "toTypeScriptType": Builtin(_typescript_type, 1, 1),
}
