"""Parser: tokens to a tree of :mod:`.nodes`, with Go's parse-time checks.

Like Go, it rejects unknown functions, undefined variables, ``{{break}}`` outside ``{{range}}``,
unbalanced ``{{end}}``/``{{else}}`` and malformed pipelines. ``define``, ``template`` and
``block`` are not supported.
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Literal as TypingLiteral

from .errors import TemplateError
from .lexer import Kind, Token, tokenize
from .nodes import (
    Action,
    Arg,
    Branch,
    Break,
    Chain,
    Command,
    Continue,
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

_OPERAND_START = frozenset(
    {
        Kind.BOOL,
        Kind.CHAR,
        Kind.DOT,
        Kind.FIELD,
        Kind.IDENT,
        Kind.NUMBER,
        Kind.NIL,
        Kind.RAW_STRING,
        Kind.STRING,
        Kind.VARIABLE,
        Kind.LPAREN,
    }
)
BranchKind = TypingLiteral["if", "with", "range"]
_BRANCH_KINDS: dict[str, BranchKind] = {"if": "if", "with": "with", "range": "range"}
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.DOTALL)


def parse(source: str, funcs: Container[str]) -> tuple[Node, ...]:
    """Parse ``source``; ``funcs`` holds the names of the functions it may call."""
    return _Parser(tokenize(source), funcs).parse()


class _Parser:
    def __init__(self, tokens: list[Token], funcs: Container[str]) -> None:
        self.tokens = tokens
        self.index = 0
        self.funcs = funcs
        self.vars = ["$"]
        self.range_depth = 0

    # token access

    def next(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.EOF:
            self.index += 1
        return token

    def peek(self) -> Token:
        return self.tokens[self.index]

    def next_non_space(self) -> Token:
        token = self.next()
        while token.kind is Kind.SPACE:
            token = self.next()
        return token

    def peek_non_space(self) -> Token:
        token = self.next_non_space()
        self.backup(token)
        return token

    def backup(self, token: Token) -> None:
        if token.kind is not Kind.EOF:
            self.index -= 1

    def expect(self, kind: Kind, context: str) -> Token:
        token = self.next_non_space()
        if token.kind is not kind:
            raise self.unexpected(token, context)
        return token

    @staticmethod
    def unexpected(token: Token, context: str) -> TemplateError:
        if token.kind is Kind.EOF:
            return TemplateError(f"unexpected EOF in {context}", token.line)
        return TemplateError(f"unexpected {token.describe()} in {context}", token.line)

    # lists and control structures

    def parse(self) -> tuple[Node, ...]:
        nodes, end = self.item_list()
        if end is not None:
            raise TemplateError(f"unexpected {{{{{end.text}}}}}", end.line)
        return nodes

    def item_list(self) -> tuple[tuple[Node, ...], Token | None]:
        """Nodes up to EOF or to an ``end``/``else`` keyword (returned, its action still open)."""
        nodes: list[Node] = []
        while True:
            token = self.next()
            if token.kind is Kind.EOF:
                return tuple(nodes), None
            if token.kind is Kind.TEXT:
                nodes.append(Text(token.text))
                continue
            keyword = self.peek_non_space()
            if keyword.kind is Kind.KEYWORD and keyword.text in ("end", "else"):
                self.next_non_space()
                if keyword.text == "end":
                    self.expect(Kind.RIGHT, "end")
                return tuple(nodes), keyword
            nodes.append(self.action())

    def nested_list(self, context: str) -> tuple[tuple[Node, ...], Token]:
        nodes, end = self.item_list()
        if end is None:
            raise TemplateError(f"unexpected EOF in {{{{{context}}}}}", self.peek().line)
        return nodes, end

    def action(self) -> Node:
        token = self.peek_non_space()
        if token.kind is Kind.KEYWORD:
            self.next_non_space()
            if token.text in _BRANCH_KINDS:
                return self.control(_BRANCH_KINDS[token.text])
            if token.text in ("break", "continue"):
                return self.loop_control(token)
            raise TemplateError(f"{{{{{token.text}}}}} is not supported", token.line)
        return Action(self.pipeline("command", Kind.RIGHT))

    def loop_control(self, token: Token) -> Node:
        self.expect(Kind.RIGHT, f"{{{{{token.text}}}}}")
        if not self.range_depth:
            raise TemplateError(f"{{{{{token.text}}}}} outside {{{{range}}}}", token.line)
        return Break(token.line) if token.text == "break" else Continue(token.line)

    def control(self, kind: BranchKind) -> Branch:
        mark = len(self.vars)
        pipe = self.pipeline(kind, Kind.RIGHT)
        self.range_depth += kind == "range"
        body, end = self.nested_list(kind)
        self.range_depth -= kind == "range"
        else_: tuple[Node, ...] | None = None
        if end.text == "else":
            else_ = self.else_list(kind)
        del self.vars[mark:]
        return Branch(kind, pipe, body, else_)

    def else_list(self, kind: BranchKind) -> tuple[Node, ...]:
        token = self.peek_non_space()
        if token.kind is Kind.KEYWORD and token.text in ("if", "with"):
            if token.text != kind or kind == "range":
                raise TemplateError(
                    f"unexpected {{{{else {token.text}}}}} in {{{{{kind}}}}}", token.line
                )
            self.next_non_space()
            return (self.control(kind),)
        self.expect(Kind.RIGHT, "else")
        nodes, end = self.nested_list(kind)
        if end.text != "end":
            raise TemplateError("expected end; found {{else}}", end.line)
        return nodes

    # pipelines

    def pipeline(self, context: str, end: Kind) -> Pipeline:
        line = self.peek_non_space().line
        decl, is_assign = self.declarations(context)
        cmds: list[Command] = []
        while True:
            token = self.next_non_space()
            if token.kind is end:
                break
            if token.kind not in _OPERAND_START:
                raise self.unexpected(token, context)
            self.backup(token)
            cmds.append(self.command())
        if not cmds:
            raise TemplateError(f"missing value for {context}", line)
        for stage, cmd in enumerate(cmds[1:], start=1):
            if isinstance(cmd.args[0], Literal | Nil | Dot):
                raise TemplateError(f"non executable command in pipeline stage {stage + 1}", line)
        return Pipeline(tuple(decl), is_assign, tuple(cmds), line)

    def declarations(self, context: str) -> tuple[list[str], bool]:
        start = self.index
        first = self.next_non_space()
        if first.kind is not Kind.VARIABLE:
            self.index = start
            return [], False
        names = [first.text]
        op = self.next_non_space()
        if op.kind is Kind.COMMA:
            if context != "range":
                raise TemplateError(f"too many declarations in {context}", op.line)
            second = self.next_non_space()
            if second.kind is not Kind.VARIABLE:
                raise TemplateError("range can only initialize variables", second.line)
            names.append(second.text)
            op = self.next_non_space()
            if op.kind not in (Kind.DECLARE, Kind.ASSIGN):
                raise self.unexpected(op, "range declaration")
        elif op.kind not in (Kind.DECLARE, Kind.ASSIGN):
            self.index = start
            return [], False
        for name in names:
            if op.kind is Kind.ASSIGN:
                self.use_variable(name, op.line)
            else:
                self.vars.append(name)
        return names, op.kind is Kind.ASSIGN

    def command(self) -> Command:
        args: list[Arg] = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            token = self.next()
            if token.kind is Kind.SPACE:
                continue
            if token.kind in (Kind.RIGHT, Kind.RPAREN):
                self.backup(token)
            elif token.kind is not Kind.PIPE:
                raise self.unexpected(token, "operand")
            break
        if not args:
            raise TemplateError("empty command", self.peek().line)
        return Command(tuple(args))

    def operand(self) -> Arg | None:
        node = self.term()
        if node is None or self.peek().kind is not Kind.FIELD:
            return node
        names: list[str] = []
        while self.peek().kind is Kind.FIELD:
            names.append(self.next().text[1:])
        if isinstance(node, Field):
            return Field(node.names + tuple(names))
        if isinstance(node, Variable):
            return Variable(node.names + tuple(names))
        if isinstance(node, Literal | Nil | Dot):
            raise TemplateError(f"unexpected . after term {_describe(node)}", self.peek().line)
        return Chain(node, tuple(names))

    def term(self) -> Arg | None:
        token = self.next_non_space()
        kind = token.kind
        if kind is Kind.IDENT:
            if token.text not in self.funcs:
                raise TemplateError(f'function "{token.text}" not defined', token.line)
            return Identifier(token.text)
        if kind is Kind.VARIABLE:
            self.use_variable(token.text, token.line)
            return Variable((token.text,))
        if kind is Kind.LPAREN:
            return self.pipeline("parenthesized pipeline", Kind.RPAREN)
        simple: dict[Kind, Arg] = {Kind.DOT: Dot(), Kind.NIL: Nil()}
        if kind in simple:
            return simple[kind]
        if kind is Kind.FIELD:
            return Field((token.text[1:],))
        if kind in (Kind.BOOL, Kind.NUMBER, Kind.CHAR, Kind.STRING, Kind.RAW_STRING):
            return Literal(literal_value(token))
        self.backup(token)
        return None

    def use_variable(self, name: str, line: int) -> None:
        if name not in self.vars:
            raise TemplateError(f'undefined variable "{name}"', line)


def _describe(node: Literal | Nil | Dot) -> str:
    if isinstance(node, Literal):
        return repr(node.value)
    return "nil" if isinstance(node, Nil) else "."


def literal_value(token: Token) -> str | int | float | bool:
    """The value of a bool, number, character or string token."""
    text = token.text
    try:
        if token.kind is Kind.BOOL:
            return text == "true"
        if token.kind is Kind.NUMBER:
            return _number(text)
        if token.kind is Kind.RAW_STRING:
            return text[1:-1].replace("\r", "")
        value = _unquote(text[1:-1], text[0])
        if token.kind is Kind.CHAR:
            if len(value) != 1:
                raise ValueError
            return ord(value)
        return value
    except ValueError:
        raise TemplateError(f"malformed {token.kind.value}: {text}", token.line) from None


def _number(text: str) -> int | float:
    body = text.lstrip("+-")
    is_hex = body[:2].lower() == "0x"
    if (not is_hex and any(c in body for c in ".eE")) or (is_hex and any(c in body for c in ".pP")):
        return float.fromhex(text) if is_hex else float(text)
    if re.fullmatch(r"0[0-7_]+", body):
        return (-1 if text[0] == "-" else 1) * int(body.replace("_", ""), 8)
    return int(text, 0)


def _unquote(body: str, quote: str) -> str:
    def replace(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[escape]
        if escape == quote:
            return quote
        if escape[0] in "xuU":
            return chr(int(escape[1:], 16))
        if escape[0] in "01234567" and len(escape) == 3:
            return chr(int(escape, 8))
        raise ValueError(escape)

    return _ESCAPE.sub(replace, body)
