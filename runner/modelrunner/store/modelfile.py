"""The Modelfile language: parse it into commands, and render a model back as Ollama shows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelrunner.errors import InvalidRequest
from modelrunner.options import DEPRECATED_OPTIONS, LIST_OPTIONS, go_repr, parse_parameter

INSTRUCTIONS = (
    "from", "parameter", "template", "system", "adapter", "license", "message", "requires",
    "renderer", "parser",
)  # fmt: skip
MESSAGE_ROLES = ("system", "user", "assistant")


@dataclass
class Modelfile:
    """The meaning of a Modelfile: each field is ``None`` when the file did not set it."""

    from_: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    adapters: list[str] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    requires: str | None = None


class ModelfileError(InvalidRequest):
    pass


def parse_modelfile(text: str) -> Modelfile:
    result = Modelfile()
    lines = text.replace("\r\n", "\n").split("\n")
    index = 0
    while index < len(lines):
        lineno = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if "\t" in word:
            word, _, more = word.partition("\t")
            rest = more + " " + rest
        command = word.lower()
        if command not in INSTRUCTIONS:
            raise ModelfileError(
                f"line {lineno}: command must be one of "
                + ", ".join(f'"{c}"' for c in INSTRUCTIONS)
            )
        rest = rest.strip()
        if command in ("parameter", "message"):
            key, _, value_text = rest.partition(" ")
            value, index = _value(value_text.strip(), lines, index, lineno)
            _apply_pair(result, command, key.strip(), value, lineno)
            continue
        value, index = _value(rest, lines, index, lineno)
        if not value and command != "system":
            raise ModelfileError(f"line {lineno}: missing value for {command.upper()}")
        _apply(result, command, value)
    if result.from_ is None:
        raise ModelfileError("no FROM line")
    return result


def _value(text: str, lines: list[str], index: int, lineno: int) -> tuple[str, int]:
    """Read an argument that may be quoted with one or three double quotes (spanning lines)."""
    for quote in ('"""', '"'):
        if not text.startswith(quote):
            continue
        body = text[len(quote) :]
        end = body.find(quote)
        if end >= 0:
            if body[end + len(quote) :].strip():
                raise ModelfileError(f"line {lineno}: unexpected text after closing quote")
            return body[:end], index
        if quote == '"':
            raise ModelfileError(f"line {lineno}: unterminated quoted string")
        parts = [body]
        while index < len(lines):
            current = lines[index]
            index += 1
            end = current.find(quote)
            if end >= 0:
                if current[end + len(quote) :].strip():
                    raise ModelfileError(f"line {index}: unexpected text after closing quote")
                parts.append(current[:end])
                return "\n".join(parts), index
            parts.append(current)
        raise ModelfileError(f'line {lineno}: unterminated """ block')
    return text, index


def _apply(result: Modelfile, command: str, value: str) -> None:
    if command == "from":
        result.from_ = value
    elif command == "template":
        result.template = value
    elif command == "system":
        result.system = value
    elif command == "adapter":
        result.adapters.append(value)
    elif command == "license":
        result.license.append(value)
    elif command == "requires":
        result.requires = value
    # RENDERER and PARSER name Go-side components of Ollama; they are accepted and ignored here.


def _apply_pair(result: Modelfile, command: str, key: str, value: str, lineno: int) -> None:
    if not key:
        raise ModelfileError(f"line {lineno}: missing name for {command.upper()}")
    if command == "message":
        role = key.lower()
        if role not in MESSAGE_ROLES:
            raise ModelfileError(
                f"line {lineno}: message role must be one of system, user, assistant"
            )
        result.messages.append({"role": role, "content": value})
        return
    name = key.lower()
    if name in DEPRECATED_OPTIONS:
        return
    try:
        typed = parse_parameter(name, value)
    except InvalidRequest as exc:
        raise ModelfileError(f"line {lineno}: {exc.message}") from None
    if name in LIST_OPTIONS:
        result.parameters.setdefault(name, []).append(typed)
    else:
        result.parameters[name] = typed


def quote(value: str) -> str:
    """Quote a value only when a reader would otherwise lose part of it."""
    if "\n" in value or value != value.strip() or value == "":
        return f'"""{value}"""' if '"' in value or "\n" in value else f'"{value}"'
    return value


@dataclass
class RenderInput:
    short_name: str
    model_paths: list[str]
    adapters: list[str]
    projectors: list[str]
    template: str | None
    system: str | None
    parameters: dict[str, Any]
    license: list[str]
    messages: list[dict[str, Any]]
    requires: str | None = None


def render_modelfile(model: RenderInput) -> str:
    out = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {model.short_name}",
        "",
    ]
    out += [f"FROM {path}" for path in model.model_paths]
    out += [f"ADAPTER {path}" for path in model.adapters]
    out += [f"FROM {path}" for path in model.projectors]
    if model.template:
        out.append(f"TEMPLATE {quote(model.template)}")
    if model.system:
        out.append(f"SYSTEM {quote(model.system)}")
    for key, value in model.parameters.items():
        values = value if isinstance(value, list) else [value]
        out += [f"PARAMETER {key} {quote(_plain(v))}" for v in values]
    out += [f"LICENSE {quote(text)}" for text in model.license]
    out += [
        f"MESSAGE {m.get('role', '')} {quote(str(m.get('content', '')))}" for m in model.messages
    ]
    if model.requires:
        out.append(f"REQUIRES {model.requires}")
    return "\n".join(out) + "\n"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def render_parameters(parameters: dict[str, Any]) -> str:
    """``/api/show``'s ``parameters``: one ``%-30s %#v`` line per value, ``stop`` once per value."""
    lines = []
    for key, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {go_repr(item)}")
    return "\n".join(lines)
