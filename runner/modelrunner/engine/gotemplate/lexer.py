"""Lexer: cut a Go ``text/template`` source into text runs and action tokens.

Trim markers are applied here: ``{{- `` drops the whitespace before the action and `` -}}`` the
whitespace after it (space, tab, CR and LF, as in Go). Comments ``{{/* */}}`` produce no token.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass

from .errors import TemplateError

SPACE_CHARS = " \t\r\n"
_SPACES = frozenset(SPACE_CHARS)
LEFT_DELIM = "{{"
RIGHT_DELIM = "}}"
KEYWORDS = frozenset(
    {"block", "break", "continue", "define", "else", "end", "if", "range", "template", "with"}
)
_TERMINATORS = frozenset(".,|:()")


class Kind(enum.Enum):
    TEXT = "text"
    LEFT = "{{"
    RIGHT = "}}"
    SPACE = "space"
    KEYWORD = "keyword"
    IDENT = "identifier"
    FIELD = "field"
    VARIABLE = "variable"
    DOT = "."
    STRING = "string"
    RAW_STRING = "raw string"
    CHAR = "character constant"
    NUMBER = "number"
    BOOL = "bool"
    NIL = "nil"
    PIPE = "|"
    LPAREN = "("
    RPAREN = ")"
    DECLARE = ":="
    ASSIGN = "="
    COMMA = ","
    EOF = "EOF"


_ONE_CHAR_TOKENS = {
    "|": Kind.PIPE,
    "(": Kind.LPAREN,
    ")": Kind.RPAREN,
    ",": Kind.COMMA,
    "=": Kind.ASSIGN,
}


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    line: int

    def describe(self) -> str:
        if self.kind is Kind.EOF:
            return "EOF"
        if self.kind is Kind.KEYWORD:
            return f"<{self.text}>"
        return repr(self.text)


def tokenize(source: str) -> list[Token]:
    """Split ``source`` into tokens, ending with one ``EOF`` token."""
    return _Lexer(source).run()


def _is_alnum(char: str) -> bool:
    return char == "_" or char.isalpha() or char.isdecimal()


class _Lexer:
    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0
        self.tokens: list[Token] = []
        self.trim_next_text = False
        self.paren_depth = 0
        self._newlines = [i for i, char in enumerate(source) if char == "\n"]

    def line_at(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def fail(self, message: str, pos: int | None = None) -> TemplateError:
        return TemplateError(message, self.line_at(self.pos if pos is None else pos))

    def emit(self, kind: Kind, start: int, end: int | None = None) -> None:
        stop = self.pos if end is None else end
        self.tokens.append(Token(kind, self.src[start:stop], self.line_at(start)))

    def run(self) -> list[Token]:
        while True:
            start = self.src.find(LEFT_DELIM, self.pos)
            end = len(self.src) if start < 0 else start
            after = end + len(LEFT_DELIM)
            trim_left = start >= 0 and self._has_left_trim(after)
            self._text(end, trim_left)
            if start < 0:
                break
            self.pos = after + (2 if trim_left else 0)
            if self.src.startswith("/*", self.pos):
                self._comment(start)
            else:
                self.tokens.append(Token(Kind.LEFT, LEFT_DELIM, self.line_at(start)))
                self._inside_action()
        self.tokens.append(Token(Kind.EOF, "", self.line_at(len(self.src))))
        return self.tokens

    def _has_left_trim(self, pos: int) -> bool:
        return self.src[pos : pos + 1] == "-" and self.src[pos + 1 : pos + 2] in _SPACES

    def _right_delim_at(self, pos: int) -> int:
        """Length of a right delimiter at ``pos`` (4 with a trim marker), or 0."""
        if (
            self.src[pos : pos + 1] in _SPACES
            and self.src[pos + 1 : pos + 2] == "-"
            and self.src.startswith(RIGHT_DELIM, pos + 2)
        ):
            return 4
        return 2 if self.src.startswith(RIGHT_DELIM, pos) else 0

    def _text(self, end: int, trim_left: bool) -> None:
        start = self.pos
        text = self.src[start:end]
        if self.trim_next_text:
            stripped = text.lstrip(SPACE_CHARS)
            start += len(text) - len(stripped)
            text = stripped
            self.trim_next_text = False
        if trim_left:
            text = text.rstrip(SPACE_CHARS)
        if text:
            self.tokens.append(Token(Kind.TEXT, text, self.line_at(start)))
        self.pos = end

    def _comment(self, start: int) -> None:
        close = self.src.find("*/", self.pos + 2)
        if close < 0:
            raise self.fail("unclosed comment", start)
        self.pos = close + 2
        width = self._right_delim_at(self.pos)
        if not width:
            raise self.fail("comment ends before closing delimiter")
        self.pos += width
        self.trim_next_text = width == 4

    def _inside_action(self) -> None:
        while True:
            width = self._right_delim_at(self.pos)
            if width:
                if self.paren_depth:
                    raise self.fail("unclosed left paren")
                self.emit(Kind.RIGHT, self.pos, self.pos + width)
                self.pos += width
                self.trim_next_text = width == 4
                return
            if self.pos >= len(self.src):
                raise self.fail("unclosed action")
            self._action_token(self.src[self.pos])

    def _action_token(self, char: str) -> None:
        start = self.pos
        if char in _SPACES:
            self._space()
        elif char in _ONE_CHAR_TOKENS:
            self.pos += 1
            self._paren(char)
            self.emit(_ONE_CHAR_TOKENS[char], start)
        elif char == ":":
            if self.src[self.pos + 1 : self.pos + 2] != "=":
                raise self.fail("expected :=")
            self.pos += 2
            self.emit(Kind.DECLARE, start)
        elif char in "\"'":
            self._quoted(char)
        elif char == "`":
            self._raw_string()
        elif char == "$":
            self.pos += 1
            self._word()
            self.emit(Kind.VARIABLE, start)
        elif char == "." and self.src[self.pos + 1 : self.pos + 2].isdecimal():
            self._number()
        elif char == ".":
            self.pos += 1
            self._word()
            self.emit(Kind.FIELD if self.pos - start > 1 else Kind.DOT, start)
        elif char in "+-" or char.isdecimal():
            self._number()
        elif _is_alnum(char):
            self._word()
            self.emit(self._word_kind(self.src[start : self.pos]), start)
        else:
            raise self.fail(f"unrecognized character in action: U+{ord(char):04X} {char!r}")

    def _paren(self, char: str) -> None:
        if char == "(":
            self.paren_depth += 1
        elif char == ")":
            self.paren_depth -= 1
            if self.paren_depth < 0:
                raise self.fail("unexpected right paren")

    @staticmethod
    def _word_kind(word: str) -> Kind:
        if word in KEYWORDS:
            return Kind.KEYWORD
        if word in ("true", "false"):
            return Kind.BOOL
        return Kind.NIL if word == "nil" else Kind.IDENT

    def _space(self) -> None:
        start = self.pos
        while self.pos < len(self.src) and self.src[self.pos] in _SPACES:
            self.pos += 1
        if self._right_delim_at(self.pos - 1) == 4:
            self.pos -= 1  # the last space belongs to a " -}}" delimiter
        if self.pos > start:
            self.emit(Kind.SPACE, start)

    def _word(self) -> None:
        while self.pos < len(self.src) and _is_alnum(self.src[self.pos]):
            self.pos += 1
        self._expect_terminator()

    def _expect_terminator(self) -> None:
        if self.pos >= len(self.src):
            return
        char = self.src[self.pos]
        if char in _SPACES or char in _TERMINATORS or self._right_delim_at(self.pos):
            return
        raise self.fail(f"bad character U+{ord(char):04X} {char!r}")

    def _number(self) -> None:
        start = self.pos
        src = self.src
        digits = "0123456789_"
        if src[self.pos] in "+-":
            self.pos += 1
        if src.startswith(("0x", "0X"), self.pos):
            self.pos += 2
            digits = "0123456789abcdefABCDEF_"
        elif src.startswith(("0o", "0O", "0b", "0B"), self.pos):
            self.pos += 2
        self._accept_run(digits)
        if src[self.pos : self.pos + 1] == ".":
            self.pos += 1
            self._accept_run(digits)
        exponent = "pP" if "a" in digits else "eE"
        if src[self.pos : self.pos + 1] and src[self.pos] in exponent:
            self.pos += 1
            if src[self.pos : self.pos + 1] in ("+", "-"):
                self.pos += 1
            self._accept_run("0123456789_")
        if self.pos < len(src) and (_is_alnum(src[self.pos]) or src[self.pos] == "."):
            raise self.fail(f"bad number syntax: {src[start : self.pos + 1]!r}")
        if self.pos == start or src[start : self.pos] in ("+", "-"):
            raise self.fail(f"bad number syntax: {src[start : self.pos + 1]!r}")
        self.emit(Kind.NUMBER, start)

    def _accept_run(self, chars: str) -> None:
        while self.pos < len(self.src) and self.src[self.pos] in chars:
            self.pos += 1

    def _quoted(self, quote: str) -> None:
        start = self.pos
        self.pos += 1
        while True:
            char = self.src[self.pos : self.pos + 1]
            if char == "\\" and self.pos + 1 < len(self.src) and self.src[self.pos + 1] != "\n":
                self.pos += 2
                continue
            if char in ("", "\n"):
                what = "quoted string" if quote == '"' else "character constant"
                raise self.fail(f"unterminated {what}", start)
            self.pos += 1
            if char == quote:
                break
        self.emit(Kind.STRING if quote == '"' else Kind.CHAR, start)

    def _raw_string(self) -> None:
        start = self.pos
        close = self.src.find("`", self.pos + 1)
        if close < 0:
            raise self.fail("unterminated raw quoted string", start)
        self.pos = close + 1
        self.emit(Kind.RAW_STRING, start)
