"""Streaming text post-processing: stop sequences, thinking blocks and tool calls.

Each filter takes text pieces as the model produces them and releases what is safe to show, holding
back only what could still turn into a stop sequence, a tag or a tool call.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any


class StopMatcher:
    """Cuts the output at the first stop sequence, never showing any part of it."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buffer = ""
        self.stopped = False
        self.matched: str | None = None  # which stop sequence ended the output

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.buffer += text
        hits = [(i, s) for s in self.stops if (i := self.buffer.find(s)) >= 0]
        if hits:
            cut, self.matched = min(hits)
            out, self.buffer, self.stopped = self.buffer[:cut], "", True
            return out
        hold = max((_overlap(self.buffer, s) for s in self.stops), default=0)
        out = self.buffer[: len(self.buffer) - hold]
        self.buffer = self.buffer[len(out) :]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``stop``."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0


class ThinkingSplitter:
    """Separates a leading ``<think>...</think>`` block (the reasoning) from the answer."""

    def __init__(
        self, open_tag: str = "<think>", close_tag: str = "</think>", *, starts_inside: bool = False
    ) -> None:
        self.open_tag, self.close_tag = open_tag, close_tag
        self.state = "thinking" if starts_inside else "start"
        self.buffer = ""

    def feed(self, text: str) -> tuple[str, str]:
        """Returns the (thinking, content) this piece releases."""
        if self.state == "content":
            return "", text
        self.buffer += text
        if self.state == "start":
            head = self.buffer.lstrip()
            if head.startswith(self.open_tag):
                self.state, self.buffer = "thinking", head[len(self.open_tag) :]
            elif self.open_tag.startswith(head):
                return "", ""  # still ambiguous
            else:
                self.state = "content"
                out, self.buffer = self.buffer, ""
                return "", out
        index = self.buffer.find(self.close_tag)
        if index >= 0:
            thinking = self.buffer[:index]
            content = self.buffer[index + len(self.close_tag) :].lstrip("\n")
            self.state, self.buffer = "content", ""
            return thinking, content
        hold = _overlap(self.buffer, self.close_tag)
        thinking, self.buffer = (
            self.buffer[: len(self.buffer) - hold],
            self.buffer[len(self.buffer) - hold :],
        )
        return thinking, ""

    def flush(self) -> tuple[str, str]:
        rest, self.buffer = self.buffer, ""
        return (rest, "") if self.state == "thinking" else ("", rest)


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: new_call_id())
    index: int = 0


def new_call_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))


_WRAPPERS = (("<tool_call>", "</tool_call>"), ("[TOOL_CALLS]", ""), ("<|python_tag|>", ""),
             ("<function_call>", "</function_call>"), ("```json", "```"))  # fmt: skip


class ToolCallParser:
    """Recognises tool calls in model output. Output that starts like a call (JSON, or one of the
    wrappers models are trained with) is held back until it either parses as calls to the offered
    tools or clearly is not one, in which case it is released as content."""

    def __init__(self, tool_names: list[str]) -> None:
        self.names = set(tool_names)
        self.buffer = ""
        self.mode = "undecided"  # undecided | calls | content

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        if self.mode == "content" or not self.names:
            return text, []
        self.buffer += text
        stripped = self.buffer.lstrip()
        if self.mode == "undecided":
            if not stripped:
                return "", []
            if not _could_be_call(stripped):
                self.mode = "content"
                out, self.buffer = self.buffer, ""
                return out, []
            self.mode = "calls"
        calls = parse_tool_calls(self.buffer, self.names)
        if calls and _balanced(self.buffer) and _closed(stripped):
            self.buffer = ""
            self.mode = "undecided"
            return "", calls
        return "", []

    def flush(self) -> tuple[str, list[ToolCall]]:
        rest, self.buffer = self.buffer, ""
        calls = parse_tool_calls(rest, self.names) if rest.strip() else []
        return ("", calls) if calls else (rest, [])


def _could_be_call(text: str) -> bool:
    if text[0] in "{[":
        return True
    return any(w.startswith(text[: len(w)]) or text.startswith(w) for w, _ in _WRAPPERS)


def _closed(text: str) -> bool:
    """A call opened with a tag that has a closing tag is complete only once that tag came."""
    for opener, closer in _WRAPPERS:
        if closer and text.startswith(opener):
            return closer in text
    return True


def _balanced(text: str) -> bool:
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped = not escaped and ch == "\\"
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return depth == 0


def parse_tool_calls(text: str, names: set[str]) -> list[ToolCall]:
    body = text.strip()
    for opener, closer in _WRAPPERS:
        body = body.replace(opener, "\n")
        if closer:
            body = body.replace(closer, "\n")
    calls: list[ToolCall] = []
    decoder = json.JSONDecoder()
    pos = 0
    while pos < len(body):
        start = min((i for i in (body.find("{", pos), body.find("[", pos)) if i >= 0), default=-1)
        if start < 0:
            break
        try:
            value, end = decoder.raw_decode(body, start)
        except ValueError:
            pos = start + 1
            continue
        for item in value if isinstance(value, list) else [value]:
            call = _as_call(item, names)
            if call is not None:
                call.index = len(calls)
                calls.append(call)
        pos = end
    return calls


def _as_call(item: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):
        item = item["function"]
    name = item.get("name")
    args = item.get("arguments", item.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(name, str) or name not in names or not isinstance(args, dict):
        return None
    return ToolCall(name=name, arguments=args)


def strip_thinking(text: str) -> str:
    return re.sub(r"<think>.*?</think>\s*", "", text, flags=re.DOTALL)
