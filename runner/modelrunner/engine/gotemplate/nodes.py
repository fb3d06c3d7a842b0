"""The parse tree: small immutable nodes, shaped like Go's ``text/template/parse`` nodes.

The shapes follow Go closely on purpose: Ollama inspects and rewrites the Go tree (collecting
identifiers, cutting everything after ``{{ .Response }}``), and those rewrites are reproduced
over these nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as TypingLiteral


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Field:
    """``.A.B``: a field chain on dot."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Variable:
    """``$x`` or ``$x.A.B``; ``names[0]`` is the variable, with its ``$``."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dot:
    pass


@dataclass(frozen=True, slots=True)
class Nil:
    pass


@dataclass(frozen=True, slots=True)
class Literal:
    """A string, number or bool constant."""

    value: str | int | float | bool


@dataclass(frozen=True, slots=True)
class Identifier:
    """A function name."""

    name: str


@dataclass(frozen=True, slots=True)
class Chain:
    """``(pipeline).A.B`` or ``func.A``: fields taken from a computed value."""

    node: Arg
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Command:
    args: tuple[Arg, ...]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """``[$a[, $b] := | =] cmd | cmd ...``; also a parenthesised argument."""

    decl: tuple[str, ...]
    is_assign: bool
    cmds: tuple[Command, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Action:
    pipe: Pipeline


@dataclass(frozen=True, slots=True)
class Branch:
    """``if``, ``with`` or ``range``; ``else if`` is an ``If`` alone in ``else_``."""

    kind: TypingLiteral["if", "with", "range"]
    pipe: Pipeline
    body: tuple[Node, ...]
    else_: tuple[Node, ...] | None


@dataclass(frozen=True, slots=True)
class Break:
    line: int


@dataclass(frozen=True, slots=True)
class Continue:
    line: int


Arg = Field | Variable | Dot | Nil | Literal | Identifier | Chain | Pipeline
Node = Text | Action | Branch | Break | Continue
