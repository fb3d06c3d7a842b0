from __future__ import annotations

import pytest

from modelrunner.core.textstream import (
    StopMatcher,
    ThinkingSplitter,
    ToolCallParser,
    parse_tool_calls,
)


def feed_all(matcher: StopMatcher, pieces: list[str]) -> str:
    return "".join(matcher.feed(p) for p in pieces) + matcher.flush()


@pytest.mark.parametrize(
    ("pieces", "stops", "out"),
    [
        (["Hello", " wor", "ld"], ["\n"], "Hello world"),
        (["Hello <e", "nd> more"], ["<end>"], "Hello "),
        (["<e", "x"], ["<end>"], "<ex"),  # a false start is released
        (["ab", "c"], ["abc", "b"], "a"),  # the earliest stop wins
        (["x"], [], "x"),
    ],
)
def test_stop_matcher(pieces: list[str], stops: list[str], out: str) -> None:
    assert feed_all(StopMatcher(stops), pieces) == out


def test_stop_matcher_never_leaks_a_partial_stop() -> None:
    matcher = StopMatcher(["<|end|>"])
    assert matcher.feed("answer<|e") == "answer"
    assert matcher.feed("nd|>tail") == ""
    assert matcher.stopped


def split(pieces: list[str], **kwargs: bool) -> tuple[str, str]:
    splitter = ThinkingSplitter(**kwargs)
    thinking = content = ""
    for piece in pieces:
        t, c = splitter.feed(piece)
        thinking, content = thinking + t, content + c
    t, c = splitter.flush()
    return thinking + t, content + c


@pytest.mark.parametrize(
    ("pieces", "inside", "expected"),
    [
        (["<thi", "nk>plan", "</th", "ink>\nanswer"], False, ("plan", "answer")),
        (["plain answer"], False, ("", "plain answer")),
        (["  <think>a</think>b"], False, ("a", "b")),
        (["reasoning</think>final"], True, ("reasoning", "final")),
        (["unfinished thought"], True, ("unfinished thought", "")),
    ],
)
def test_thinking_splitter(pieces: list[str], inside: bool, expected: tuple[str, str]) -> None:
    assert split(pieces, starts_inside=inside) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "f", "arguments": {"x": 1}}',
        '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>',
        '[TOOL_CALLS] [{"name": "f", "arguments": {"x": 1}}]',
        '{"type": "function", "function": {"name": "f", "parameters": {"x": 1}}}',
        '{"name": "f", "arguments": "{\\"x\\": 1}"}',
    ],
)
def test_tool_call_formats(text: str) -> None:
    (call,) = parse_tool_calls(text, {"f"})
    assert (call.name, call.arguments) == ("f", {"x": 1})


def test_unknown_tools_are_not_calls() -> None:
    assert parse_tool_calls('{"name": "other", "arguments": {}}', {"f"}) == []


def test_streaming_parser_holds_back_until_complete() -> None:
    parser = ToolCallParser(["f"])
    assert parser.feed('{"name": "f", ') == ("", [])
    content, calls = parser.feed('"arguments": {"x": 2}}')
    assert content == "" and [c.arguments for c in calls] == [{"x": 2}]
    text_parser = ToolCallParser(["f"])
    assert text_parser.feed("Sure, ") == ("Sure, ", [])
