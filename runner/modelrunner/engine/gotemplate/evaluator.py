"""Evaluator: execute a parse tree against Python data with Go's ``text/template`` semantics.

Field access ``.Name`` on a mapping reads the key ``Name``, else ``name`` in snake case
(``ToolCalls`` -> ``tool_calls``), else ``name`` in lower case, so Ollama's templates run on
plain JSON-shaped dicts. A missing key reads as nil (Go's zero value for a struct field), except
on the root mapping, where it reads as Go's ``<no value>`` (Ollama passes a ``map[string]any``).
On other objects ``.Name`` reads an attribute (same name fallbacks) and calls it if it is a
method, with the command's arguments. Field access on nil gives nil instead of Go's error.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from .errors import TemplateError
from .funcs import BUILTINS, LAZY, Builtin, FuncError
from .nodes import (
    Action,
    Arg,
    Branch,
    Break,
    Chain,
    Dot,
    Field,
    Identifier,
    Literal,
    Nil,
    Node,
    Pipeline,
    Text,
    Variable,
)
from .values import (
    NO_VALUE,
    format_value,
    go_type_name,
    is_nil,
    is_true,
    sorted_items,
    to_text,
)


class _BreakLoop(Exception):
    pass


class _ContinueLoop(Exception):
    pass


class _Absent:
    pass


_NO_FINAL: Final = _Absent()  # no value piped into a command
_ABSENT: Final = _Absent()  # no such key or attribute
_SCALARS = (str, bytes, int, float, bool, list, tuple)


@functools.lru_cache(maxsize=1024)
def _candidates(name: str) -> tuple[str, ...]:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return tuple(dict.fromkeys((name, snake, name.lower())))


def _lookup_key(mapping: Mapping[Any, Any], name: str) -> Any:
    for key in _candidates(name):
        if key in mapping:
            return mapping[key]
    return _ABSENT


def _lookup_attr(obj: object, name: str) -> Any:
    for key in _candidates(name):
        if not key.startswith("_") and hasattr(obj, key):
            return getattr(obj, key)
    return _ABSENT


def _describe(node: Arg) -> str:
    if isinstance(node, Literal):
        return format_value(node.value)
    return "." if isinstance(node, Dot) else "(pipeline)"


def _arity(builtin: Builtin) -> str:
    if builtin.max_args is None:
        return f"at least {builtin.min_args}"
    if builtin.min_args == builtin.max_args:
        return str(builtin.min_args)
    return f"{builtin.min_args} to {builtin.max_args}"


class Evaluator:
    """One execution: the variable stack and the output of a single render."""

    def __init__(self, funcs: Mapping[str, Builtin], data: Any) -> None:
        self.funcs = funcs
        self.root = data
        self.names: list[str] = ["$"]
        self.values: list[Any] = [data]
        self.out: list[str] = []
        self.line = 1

    def execute(self, nodes: tuple[Node, ...]) -> str:
        self.walk(self.root, nodes)
        return "".join(self.out)

    def error(self, message: str) -> TemplateError:
        return TemplateError(message, self.line)

    # statements

    def walk(self, dot: Any, nodes: tuple[Node, ...]) -> None:
        for node in nodes:
            if isinstance(node, Text):
                self.out.append(node.text)
            elif isinstance(node, Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.append(to_text(value))
            elif isinstance(node, Branch):
                self.branch(dot, node)
            elif isinstance(node, Break):
                raise _BreakLoop
            else:
                raise _ContinueLoop

    def branch(self, dot: Any, node: Branch) -> None:
        mark = len(self.names)
        try:
            if node.kind == "range":
                self.range(dot, node)
                return
            value = self.pipeline(dot, node.pipe)
            if is_true(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            elif node.else_ is not None:
                self.walk(dot, node.else_)
        finally:
            self.pop(mark)

    def range(self, dot: Any, node: Branch) -> None:
        value = self.pipeline(dot, node.pipe)
        items = self.iteration(value, len(node.pipe.decl))
        if not items and node.else_ is not None:
            self.walk(dot, node.else_)
        for key, element in items:
            self.bind_range(node.pipe, key, element)
            mark = len(self.names)
            try:
                self.walk(element, node.body)
            except _ContinueLoop:
                pass
            except _BreakLoop:
                break
            finally:
                self.pop(mark)

    def iteration(self, value: Any, variables: int) -> list[tuple[Any, Any]]:
        if is_nil(value):
            return []
        if isinstance(value, Mapping):
            return sorted_items(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if variables > 1:
                raise self.error(f"can't use {value} to iterate over more than one variable")
            return [(index, index) for index in range(value)]
        if isinstance(value, Iterable) and not isinstance(value, str | bytes):
            return list(enumerate(value))
        raise self.error(f"range can't iterate over {to_text(value)}")

    def bind_range(self, pipe: Pipeline, key: Any, element: Any) -> None:
        if not pipe.decl:
            return
        if pipe.is_assign:
            self.set_var(pipe.decl[0], key if len(pipe.decl) > 1 else element)
            if len(pipe.decl) > 1:
                self.set_var(pipe.decl[1], element)
            return
        self.values[-1] = element
        if len(pipe.decl) > 1:
            self.values[-2] = key

    # variables

    def pop(self, mark: int) -> None:
        del self.names[mark:]
        del self.values[mark:]

    def get_var(self, name: str) -> Any:
        for index in range(len(self.names) - 1, -1, -1):
            if self.names[index] == name:
                return self.values[index]
        raise self.error(f'undefined variable "{name}"')

    def set_var(self, name: str, value: Any) -> None:
        for index in range(len(self.names) - 1, -1, -1):
            if self.names[index] == name:
                self.values[index] = value
                return
        raise self.error(f'undefined variable "{name}"')

    # expressions

    def pipeline(self, dot: Any, pipe: Pipeline) -> Any:
        self.line = pipe.line
        value: Any = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd.args, value)
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.names.append(name)
                self.values.append(value)
        return value

    def command(self, dot: Any, args: tuple[Arg, ...], final: Any) -> Any:
        first, rest = args[0], args[1:]
        if isinstance(first, Field):
            return self.field_chain(dot, dot, first.names, rest, final)
        if isinstance(first, Chain):
            return self.field_chain(dot, self.arg(dot, first.node), first.names, rest, final)
        if isinstance(first, Identifier):
            return self.call(dot, first.name, rest, final)
        if isinstance(first, Variable):
            return self.variable(dot, first, rest, final)
        if rest or final is not _NO_FINAL:
            raise self.error(f"can't give argument to non-function {_describe(first)}")
        if isinstance(first, Nil):
            raise self.error("nil is not a command")
        return self.arg(dot, first)

    def arg(self, dot: Any, node: Arg) -> Any:
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Nil):
            return None
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Pipeline):
            return self.pipeline(dot, node)
        return self.command(dot, (node,), _NO_FINAL)

    def variable(self, dot: Any, node: Variable, args: tuple[Arg, ...], final: Any) -> Any:
        value = self.get_var(node.names[0])
        if len(node.names) > 1:
            return self.field_chain(dot, value, node.names[1:], args, final)
        if args or final is not _NO_FINAL:
            raise self.error(f"can't give argument to non-function {node.names[0]}")
        return value

    def field_chain(
        self, dot: Any, receiver: Any, names: tuple[str, ...], args: tuple[Arg, ...], final: Any
    ) -> Any:
        for name in names[:-1]:
            receiver = self.field(dot, receiver, name, (), _NO_FINAL)
        return self.field(dot, receiver, names[-1], args, final)

    def field(self, dot: Any, receiver: Any, name: str, args: tuple[Arg, ...], final: Any) -> Any:
        has_args = bool(args) or final is not _NO_FINAL
        if isinstance(receiver, Mapping):
            if has_args:
                raise self.error(f"{name} is not a method but has arguments")
            value = _lookup_key(receiver, name)
            if value is _ABSENT:
                return NO_VALUE if receiver is self.root else None
            return value
        if is_nil(receiver):
            return None
        attr = _ABSENT if isinstance(receiver, _SCALARS) else _lookup_attr(receiver, name)
        if attr is _ABSENT:
            raise self.error(f"can't evaluate field {name} in type {go_type_name(receiver)}")
        if inspect.ismethod(attr):
            values = [self.arg(dot, node) for node in args]
            return self.invoke(name, attr, values + ([] if final is _NO_FINAL else [final]))
        if has_args:
            raise self.error(f"{name} has arguments but cannot be invoked as function")
        return attr

    def call(self, dot: Any, name: str, args: tuple[Arg, ...], final: Any) -> Any:
        builtin = self.funcs[name]
        count = len(args) + (final is not _NO_FINAL)
        if count < builtin.min_args or (builtin.max_args is not None and count > builtin.max_args):
            raise self.error(f"wrong number of args for {name}: want {_arity(builtin)} got {count}")
        values = self._lazy_args(dot, args, final)
        if name in LAZY and builtin is BUILTINS[name]:
            value: Any = None
            for value in values:
                if is_true(value) == (name == "or"):
                    break
            return value
        plain = [None if value is NO_VALUE else value for value in values]
        return self.invoke(name, builtin.fn, plain)

    def _lazy_args(self, dot: Any, args: tuple[Arg, ...], final: Any) -> Iterator[Any]:
        for node in args:
            yield self.arg(dot, node)
        if final is not _NO_FINAL:
            yield final

    def invoke(self, name: str, function: Any, args: list[Any]) -> Any:
        try:
            return function(*args)
        except TemplateError:
            raise
        except FuncError as error:
            raise self.error(f"error calling {name}: {error}") from None
        except Exception as error:
            raise self.error(f"error calling {name}: {error}") from error
