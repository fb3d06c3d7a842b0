"""Reading and rewriting parse trees the way Ollama does with Go's tree.

- :func:`identifiers` is Ollama's ``template.Identifiers``: every field and variable name in
  actions and control pipelines (not in ``(...).X`` chains nor in declarations).
- :func:`root_fields` lists the fields read from the root data (``.X`` where dot is the root,
  and ``$.X``).
- :func:`cut_after_field` is Ollama's ``deleteNode`` pass for legacy templates: everything after
  the first ``.Response`` field is dropped, and a pipeline that loses a whole command with it.
- :func:`append_field` adds ``{{ .Name }}`` at the end, as Ollama does for templates without
  ``.Messages`` or ``.Response``.
"""

from __future__ import annotations

from .nodes import (
    Action,
    Arg,
    Branch,
    Chain,
    Command,
    Field,
    Node,
    Pipeline,
    Variable,
)


def identifiers(nodes: tuple[Node, ...]) -> list[str]:
    names: list[str] = []
    for node in nodes:
        if isinstance(node, Action):
            names += _pipe_identifiers(node.pipe)
        elif isinstance(node, Branch):
            names += _pipe_identifiers(node.pipe)
            names += identifiers(node.body)
            names += identifiers(node.else_ or ())
    return names


def _pipe_identifiers(pipe: Pipeline) -> list[str]:
    names: list[str] = []
    for cmd in pipe.cmds:
        for arg in cmd.args:
            if isinstance(arg, Field | Variable):
                names += arg.names
            elif isinstance(arg, Pipeline):
                names += _pipe_identifiers(arg)
    return names


def root_fields(nodes: tuple[Node, ...], at_root: bool = True) -> set[str]:
    fields: set[str] = set()
    for node in nodes:
        if isinstance(node, Action):
            fields |= _pipe_root_fields(node.pipe, at_root)
        elif isinstance(node, Branch):
            fields |= _pipe_root_fields(node.pipe, at_root)
            fields |= root_fields(node.body, at_root and node.kind == "if")
            fields |= root_fields(node.else_ or (), at_root)
    return fields


def _pipe_root_fields(pipe: Pipeline, at_root: bool) -> set[str]:
    fields: set[str] = set()
    for cmd in pipe.cmds:
        for arg in cmd.args:
            fields |= _arg_root_fields(arg, at_root)
    return fields


def _arg_root_fields(arg: Arg, at_root: bool) -> set[str]:
    if isinstance(arg, Field) and at_root:
        return {arg.names[0]}
    if isinstance(arg, Variable) and arg.names[0] == "$" and len(arg.names) > 1:
        return {arg.names[1]}
    if isinstance(arg, Pipeline):
        return _pipe_root_fields(arg, at_root)
    if isinstance(arg, Chain):
        return _arg_root_fields(arg.node, at_root)
    return set()


def append_field(nodes: tuple[Node, ...], name: str, line: int) -> tuple[Node, ...]:
    action = Action(Pipeline((), False, (Command((Field((name,)),)),), line))
    return (*nodes, action)


class _Cutter:
    """Go's walk order: test a node, then descend; once the field is seen, drop the rest."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cut = False

    def drop(self, node: Node | Arg | Pipeline) -> bool:
        if isinstance(node, Field) and self.name in node.names:
            self.cut = True
            return False
        return self.cut

    def nodes(self, nodes: tuple[Node, ...]) -> tuple[Node, ...]:
        kept = (self.node(node) for node in nodes)
        return tuple(node for node in kept if node is not None)

    def node(self, node: Node) -> Node | None:
        if self.drop(node):
            return None
        if isinstance(node, Branch):
            body = self.nodes(node.body)
            else_ = None if node.else_ is None or self.cut else self.nodes(node.else_)
            return Branch(node.kind, node.pipe, body, else_)
        if isinstance(node, Action):
            pipe = self.pipeline(node.pipe)
            return None if pipe is None else Action(pipe)
        return node

    def pipeline(self, pipe: Pipeline) -> Pipeline | None:
        if self.drop(pipe):
            return None
        cmds: list[Command] = []
        for cmd in pipe.cmds:
            args = tuple(kept for arg in cmd.args if (kept := self.arg(arg)) is not None)
            if not args:
                return None
            cmds.append(Command(args))
        return Pipeline(pipe.decl, pipe.is_assign, tuple(cmds), pipe.line)

    def arg(self, arg: Arg) -> Arg | None:
        if isinstance(arg, Pipeline):
            return self.pipeline(arg)
        return None if self.drop(arg) else arg


def cut_after_field(nodes: tuple[Node, ...], name: str) -> tuple[Node, ...]:
    return _Cutter(name).nodes(nodes)
