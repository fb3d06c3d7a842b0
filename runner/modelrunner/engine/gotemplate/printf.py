"""Go's ``fmt.Sprint``, ``Sprintln`` and a ``Sprintf`` covering the common verbs.

``Sprintf`` knows the flags ``-+# 0``, width and precision, and the verbs ``v s d q t f F e E
g G x X o b c U %``. Argument indexes (``%[1]d``) and ``*`` widths are not supported. Errors are
written into the output the way Go does: ``%!d(string=x)``, ``%!s(MISSING)``, ``%!(EXTRA ...)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .values import (
    JSONDict,
    JSONList,
    format_float,
    format_value,
    go_json,
    go_quote,
    go_type_name,
    is_nil,
    sorted_items,
)

_DIRECTIVE = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d*))?(.?)", re.DOTALL)


def sprint(args: Sequence[Any]) -> str:
    """``fmt.Sprint``: a space between operands when neither side is a string."""
    out: list[str] = []
    previous_string = False
    for index, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if index and not is_string and not previous_string:
            out.append(" ")
        out.append(format_value(arg))
        previous_string = is_string
    return "".join(out)


def sprintln(args: Sequence[Any]) -> str:
    return " ".join(format_value(arg) for arg in args) + "\n"


def sprintf(template: str, args: Sequence[Any]) -> str:
    out: list[str] = []
    position = 0
    used = 0
    for match in _DIRECTIVE.finditer(template):
        out.append(template[position : match.start()])
        position = match.end()
        flags, width, precision, verb = match.groups()
        if verb == "%":
            out.append("%")
            continue
        if not verb:
            out.append("%!(NOVERB)")
            continue
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        spec = _Spec(flags, int(width) if width else None, _precision(precision), verb)
        out.append(spec.format(args[used]))
        used += 1
    out.append(template[position:])
    if used < len(args):
        extra = ", ".join(f"{go_type_name(arg)}={format_value(arg)}" for arg in args[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _hex_float(value: float, verb: str) -> str:
    """Go's shortest ``%x`` of a float: ``0x1.4p+01``."""
    mantissa, _, exponent = value.hex().partition("p")
    mantissa = mantissa.rstrip("0").rstrip(".")
    sign, digits = exponent[0], exponent[1:]
    text = f"{mantissa}p{sign}{int(digits):02d}"
    return text.upper() if verb == "X" else text


def _precision(text: str | None) -> int | None:
    if text is None:
        return None
    return int(text) if text else 0


class _Spec:
    def __init__(self, flags: str, width: int | None, precision: int | None, verb: str) -> None:
        self.flags = flags
        self.width = width
        self.precision = precision
        self.verb = verb

    def format(self, arg: Any) -> str:
        if isinstance(arg, JSONDict | JSONList) and self.verb in "vsqxX":
            arg = go_json(arg)  # a Go Stringer: the verb applies to its String()
        if isinstance(arg, list | tuple):
            return "[" + " ".join(self.format(item) for item in arg) + "]"
        if isinstance(arg, Mapping):
            pairs = (f"{self.format(k)}:{self.format(v)}" for k, v in sorted_items(arg))
            return "map[" + " ".join(pairs) + "]"
        body = self._body(arg)
        if body is None and is_nil(arg):
            return f"%!{self.verb}(<nil>)"
        if body is None:
            return f"%!{self.verb}({go_type_name(arg)}={format_value(arg)})"
        numeric = isinstance(arg, int | float) and not isinstance(arg, bool)
        return self._pad(body, numeric=numeric and self.verb not in "scqU")

    def _body(self, arg: Any) -> str | None:
        verb = self.verb
        if isinstance(arg, float) and verb in "veEfFgGxX":
            return self._float(arg)
        if isinstance(arg, int) and not isinstance(arg, bool) and verb in "vdxXobcU":
            return self._integer(arg)
        if verb == "v":
            return format_value(arg)
        if verb == "s" and not isinstance(arg, bool | int | float) and not is_nil(arg):
            text = format_value(arg)
            return text[: self.precision] if self.precision is not None else text
        if verb == "t" and isinstance(arg, bool):
            return "true" if arg else "false"
        if verb == "q":
            return self._quoted(arg)
        if verb in "xX" and isinstance(arg, str):
            encoded = arg.encode().hex()
            return encoded.upper() if verb == "X" else encoded
        return None

    def _quoted(self, arg: Any) -> str | None:
        if isinstance(arg, str):
            if "#" in self.flags and "`" not in arg and arg.isprintable():
                return f"`{arg}`"
            return go_quote(arg)
        if isinstance(arg, int) and not isinstance(arg, bool):
            return go_quote(chr(arg), "'")
        return None

    def _integer(self, value: int) -> str:
        verb = self.verb
        if verb == "c":
            return chr(value)
        if verb == "U":
            return f"U+{value:04X}"
        digits = format(abs(value), {"v": "d"}.get(verb, verb))
        if self.precision is not None:
            digits = digits.zfill(self.precision)
        if "#" in self.flags and verb in "xXo":
            digits = {"x": "0x", "X": "0X", "o": "0"}[verb] + digits
        return self._sign(value < 0) + digits

    def _float(self, value: float) -> str:
        verb = self.verb
        negative = math.copysign(1.0, value) < 0
        if math.isnan(value) or math.isinf(value):
            return format_float(value, "g")
        if verb in "xX":
            return self._sign(negative) + _hex_float(abs(value), verb)
        if verb in "gGv" and self.precision is None:
            text = format_float(abs(value), "g")
            text = text.upper() if verb == "G" else text
        else:
            precision = 6 if self.precision is None else self.precision
            text = format(abs(value), f".{precision}{'g' if verb == 'v' else verb}")
        return self._sign(negative) + text

    def _sign(self, negative: bool) -> str:
        if negative:
            return "-"
        if "+" in self.flags:
            return "+"
        return " " if " " in self.flags else ""

    def _pad(self, body: str, numeric: bool) -> str:
        if self.width is None or len(body) >= self.width:
            return body
        gap = self.width - len(body)
        if "-" in self.flags:
            return body + " " * gap
        if "0" in self.flags and numeric and body[:1] in ("+", "-", " "):
            return body[0] + "0" * gap + body[1:]
        if "0" in self.flags:
            return "0" * gap + body
        return " " * gap + body
