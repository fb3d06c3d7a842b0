"""A Model's Modelfile as the fields of Ollama's ``/api/create`` request (pure).

Ollama removed the ``modelfile`` field of ``/api/create`` in v0.10; a Modelfile is now sent as
its parts (``from``, ``system``, ``template``, ``parameters``, ``messages``, ``license``), which
every runner version accepts, so the operator works against current Ollama servers too.
"""

from __future__ import annotations

import re
from typing import Any

_INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)(?:\s+(.*))?$", re.DOTALL)
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class ModelfileError(ValueError):
    pass


def _statements(text: str) -> list[tuple[int, str, str]]:
    """``(line number, INSTRUCTION, argument)``; triple-quoted arguments may span lines."""
    out: list[tuple[int, str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _INSTRUCTION.match(line)
        if not match:
            raise ModelfileError(f"line {number}: expected an instruction, got {line.strip()!r}")
        word, rest = match.group(1).upper(), (match.group(2) or "").strip()
        if '"""' in rest:
            head, _, body = rest.partition('"""')
            while '"""' not in body:
                if i >= len(lines):
                    raise ModelfileError(f'line {number}: unterminated """')
                body += "\n" + lines[i]
                i += 1
            body, _, tail = body.partition('"""')
            if tail.strip():
                raise ModelfileError(f'line {number}: unexpected text after closing """')
            rest = head + '"""' + body + '"""'
        out.append((number, word, rest))
    return out


def _unquote(value: str) -> str:
    if value.startswith('"""') and value.endswith('"""') and len(value) >= 6:
        return value[3:-3]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def _typed(value: str) -> Any:
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def to_create_fields(text: str) -> dict[str, Any]:
    """The ``/api/create`` fields for a Modelfile; ModelfileError names the line at fault."""
    fields: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    messages: list[dict[str, str]] = []
    licenses: list[str] = []
    for number, word, rest in _statements(text):
        if not rest:
            raise ModelfileError(f"line {number}: {word} needs an argument")
        if word in ("FROM", "SYSTEM", "TEMPLATE", "REQUIRES"):
            fields[word.lower()] = _unquote(rest)
        elif word == "LICENSE":
            licenses.append(_unquote(rest))
        elif word == "PARAMETER":
            name, _, value = rest.partition(" ")
            value = _unquote(value.strip())
            if not value:
                raise ModelfileError(f"line {number}: PARAMETER {name} needs a value")
            if name.lower() == "stop":
                parameters.setdefault("stop", []).append(value)
            else:
                parameters[name.lower()] = _typed(value)
        elif word == "MESSAGE":
            role, _, content = rest.partition(" ")
            if role.lower() not in ("system", "user", "assistant", "tool"):
                raise ModelfileError(f"line {number}: MESSAGE role {role!r} is not valid")
            messages.append({"role": role.lower(), "content": _unquote(content.strip())})
        elif word == "ADAPTER":
            raise ModelfileError(f"line {number}: ADAPTER is not supported in a Model's modelfile")
        else:
            raise ModelfileError(f"line {number}: unknown instruction {word}")
    if "from" not in fields:
        raise ModelfileError("no FROM line")
    if parameters:
        fields["parameters"] = parameters
    if messages:
        fields["messages"] = messages
    if licenses:
        fields["license"] = licenses if len(licenses) > 1 else licenses[0]
    return fields
