"""The Anthropic Messages API (/v1/messages, /anthropic/v1/messages, /engines[/llama.cpp]/v1/messages)
over real HTTP with the official ``anthropic`` client. A scripted engine makes the model say exactly
what a test needs (tool calls, thinking, stop sequences); the tiny GGUF checks the real engine
(tokenizer, grammar-forced tool calls); the real Gemma 3 270M is marked slow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from modelrunner.api.anthropic import wire
from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.support.fake_engine import FakeEngine
from tests.support.server import LiveServer

# Tools and every message with its tool calls: enough to see what reached the prompt and to
# give the model the "tools" capability; an open think tag when thinking adds "thinking".
TEMPLATE = (
    "{{- if .Tools }}Tools: {{ json .Tools }}\n{{ end }}"
    "{{- range .Messages }}<{{ .Role }}>{{ .Content }}"
    "{{- range .ToolCalls }}[call {{ .Function.Name }} {{ .Function.Arguments }}]{{ end }}\n{{ end }}"
)
THINK_TEMPLATE = TEMPLATE + "{{ if .Think }}<think>{{ end }}"
# For the tiny model, whose tokens are bytes and whose context is short: tools, not rendered.
SHORT_TEMPLATE = "{{ if .Tools }}{{ end }}{{ range .Messages }}{{ .Content }}{{ end }}"
READ_TOOL: Any = {
    "name": "Read",
    "description": "Read a file from the local filesystem.",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}},
        "required": ["file_path"],
        "additionalProperties": False,
    },
}
HELLO: Any = [{"role": "user", "content": "hello"}]
PREFIXES = ("", "/anthropic", "/engines", "/engines/llama.cpp")


@dataclass
class Scripted:
    engine: FakeEngine
    http: httpx.Client
    client: anthropic.Anthropic
    url: str


def sdk(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)


def start_scripted(root: Path, tiny_gguf: Path) -> Iterator[Scripted]:
    engine = FakeEngine()
    server = LiveServer(create_app(Settings(models=root, listen=[], prune=False), engine=engine))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            upload_and_create(http, tiny_gguf, "agent", template=TEMPLATE)
            upload_and_create(http, tiny_gguf, "thinker", template=THINK_TEMPLATE)
            yield Scripted(engine, http, sdk(server.url), server.url)
    finally:
        server.stop()


@pytest.fixture
def scripted(tmp_path: Path, tiny_gguf: Path) -> Iterator[Scripted]:
    yield from start_scripted(tmp_path / "models", tiny_gguf)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Scripted]:
    """One scripted runner for the tests that change nothing (bad input)."""
    yield from start_scripted(tmp_path_factory.mktemp("anthropic") / "models", tiny_gguf)


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs; every event's data names its own type."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    pairs = []
    for block in response.text.split("\n\n")[:-1]:
        head, data = block.split("\n")
        name = head.removeprefix("event: ")
        body = json.loads(data.removeprefix("data: "))
        assert body["type"] == name
        pairs.append((name, body))
    assert response.text.endswith("\n\n")
    return pairs


def post(s: Scripted, path: str = "/v1/messages", **body: Any) -> httpx.Response:
    return s.http.post(path, json={"model": "agent", "max_tokens": 64, **body})


# -- messages --------------------------------------------------------------------------------------


def test_message_shape_and_system_prompt(scripted: Scripted) -> None:
    s = scripted
    reply = s.client.messages.create(
        model="agent", max_tokens=64, system="Be terse.", messages=HELLO
    )
    assert reply.id.startswith("msg_") and reply.type == "message" and reply.role == "assistant"
    assert reply.model == "agent"
    assert [b.type for b in reply.content] == ["text"]
    assert reply.content[0].text == "Hello there."  # type: ignore[union-attr]
    assert reply.stop_reason == "end_turn" and reply.stop_sequence is None
    assert reply.usage.output_tokens == 4  # "Hello there." in pieces of 3
    assert reply.usage.input_tokens == len(s.engine.prompts[-1])  # one token per character
    assert reply.usage.cache_read_input_tokens == 0
    assert s.engine.prompts[-1] == "<system>Be terse.\n<user>hello\n"


def test_system_blocks_and_content_blocks(scripted: Scripted) -> None:
    s = scripted
    s.client.messages.create(
        model="agent",
        max_tokens=64,
        system=[{"type": "text", "text": "You are a CLI."}, {"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        metadata={"user_id": "someone"},
        extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 20},  # the SDK no longer has them
    )
    assert s.engine.prompts[-1] == "<system>You are a CLI.\nBe brief.\n<user>hi\n"


def test_every_prefix_answers(scripted: Scripted) -> None:
    for prefix in PREFIXES:
        reply = sdk(scripted.url + prefix).messages.create(
            model="agent", max_tokens=8, messages=HELLO
        )
        assert reply.content[0].text == "Hello there.", prefix  # type: ignore[union-attr]
    response = post(scripted, "/engines/vllm/v1/messages", messages=HELLO)
    assert response.status_code == 404 and response.json()["type"] == "error"


def test_stream_event_sequence(scripted: Scripted) -> None:
    events = sse(post(scripted, messages=HELLO, stream=True))
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["id"].startswith("msg_") and start["usage"]["input_tokens"] > 0
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "Hello there."
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 4


def test_sdk_stream_accumulates_the_final_message(scripted: Scripted) -> None:
    with scripted.client.messages.stream(model="agent", max_tokens=64, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "Hello there." and len(pieces) == 4
    assert final.content[0].text == "Hello there."  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4


def test_max_tokens_stop_reason(scripted: Scripted) -> None:
    reply = scripted.client.messages.create(model="agent", max_tokens=2, messages=HELLO)
    assert reply.content[0].text == "Hello " and reply.stop_reason == "max_tokens"  # type: ignore[union-attr]
    assert reply.usage.output_tokens == 2
    events = sse(post(scripted, max_tokens=2, messages=HELLO, stream=True))
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_stop_sequences(scripted: Scripted) -> None:
    s = scripted
    s.engine.reply = "one, two, three"
    reply = s.client.messages.create(
        model="agent", max_tokens=64, messages=HELLO, stop_sequences=["three", "two"]
    )
    assert reply.content[0].text == "one, "  # type: ignore[union-attr]
    assert (reply.stop_reason, reply.stop_sequence) == ("stop_sequence", "two")
    events = sse(post(s, messages=HELLO, stream=True, stop_sequences=["two"]))
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "two"}


# -- tools -----------------------------------------------------------------------------------------


def test_claude_code_style_tool_round_trip(scripted: Scripted) -> None:
    s = scripted
    s.engine.reply = (
        '<tool_call>{"name": "Read", "arguments": {"file_path": "/src/a.py"}}</tool_call>'
    )
    history: Any = [{"role": "user", "content": "What is in a.py?"}]
    first = s.client.messages.create(
        model="agent",
        max_tokens=64,
        system=[
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
        ],
        messages=history,
        tools=[READ_TOOL],
        tool_choice={"type": "auto"},
    )
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use" and call.name == "Read"
    assert call.input == {"file_path": "/src/a.py"} and call.id.startswith("toolu_")
    assert '"name":"Read"' in s.engine.prompts[-1]  # the tool reached the prompt

    s.engine.reply = "It prints hi."
    history += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "print('hi')"},
                {"type": "text", "text": "Summarise it."},
            ],
        },
    ]
    second = s.client.messages.create(
        model="agent", max_tokens=64, messages=history, tools=[READ_TOOL]
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "It prints hi."  # type: ignore[union-attr]
    prompt = s.engine.prompts[-1]
    assert '<assistant>[call Read {"file_path":"/src/a.py"}]' in prompt
    # The tool result comes before the rest of its user turn.
    assert prompt.index("<tool>print('hi')") < prompt.index("<user>Summarise it.")


def test_streamed_tool_use_and_sdk_accumulator(scripted: Scripted) -> None:
    s = scripted
    s.engine.reply = '{"name": "Read", "arguments": {"file_path": "b"}}'
    events = sse(post(s, messages=HELLO, tools=[READ_TOOL], stream=True))
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    block = events[1][1]["content_block"]
    assert block["type"] == "tool_use" and block["input"] == {} and block["name"] == "Read"
    assert events[3][1]["delta"] == {
        "type": "input_json_delta",
        "partial_json": '{"file_path": "b"}',
    }
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    with s.client.messages.stream(
        model="agent", max_tokens=64, messages=HELLO, tools=[READ_TOOL]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"file_path": "b"}


def test_tool_choice_none_offers_no_tools(scripted: Scripted) -> None:
    s = scripted
    s.client.messages.create(
        model="agent", max_tokens=8, messages=HELLO, tools=[READ_TOOL], tool_choice={"type": "none"}
    )
    assert "Tools:" not in s.engine.prompts[-1]


def test_thinking_blocks(scripted: Scripted) -> None:
    s = scripted
    s.engine.reply = "pondering</think>Answer."
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    reply = s.client.messages.create(
        model="thinker", max_tokens=64, messages=HELLO, thinking=thinking
    )
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert reply.content[0].thinking == "pondering" and reply.content[0].signature  # type: ignore[union-attr]
    assert s.engine.prompts[-1].endswith("<think>")
    events = sse(post(s, model="thinker", messages=HELLO, stream=True, thinking=thinking))
    deltas = [d["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert deltas[0] == "thinking_delta" and "signature_delta" in deltas
    stops = [i for i, (n, _) in enumerate(events) if n == "content_block_stop"]
    assert events[stops[0] - 1][1]["delta"]["type"] == "signature_delta"
    with s.client.messages.stream(
        model="thinker", max_tokens=64, messages=HELLO, thinking=thinking
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].thinking == "pondering"
    assert final.content[0].signature == reply.content[0].signature  # type: ignore[union-attr]
    assert final.content[1].text == "Answer."  # type: ignore[union-attr]
    # Disabled thinking: no open think tag, and thinking from history goes back in.
    s.engine.reply = "Fine."
    history: Any = [
        *HELLO,
        {"role": "assistant", "content": [b.model_dump() for b in reply.content]},
        {"role": "user", "content": "again"},
    ]
    s.client.messages.create(
        model="thinker", max_tokens=8, messages=history, thinking={"type": "disabled"}
    )
    assert not s.engine.prompts[-1].endswith("<think>")
    assert "<assistant>Answer." in s.engine.prompts[-1]


# -- count_tokens ----------------------------------------------------------------------------------


def test_count_tokens_counts_the_rendered_prompt(scripted: Scripted) -> None:
    s = scripted
    for prefix in ("", "/anthropic"):
        counted = sdk(s.url + prefix).messages.count_tokens(
            model="agent", system="Be terse.", messages=HELLO, tools=[READ_TOOL]
        )
        assert counted.input_tokens == len(s.engine.prompts[-1]) > 20
        assert '"name":"Read"' in s.engine.prompts[-1]
    response = s.http.post(
        "/engines/v1/messages/count_tokens", json={"model": "agent", "messages": HELLO}
    )
    assert response.json() == {"input_tokens": len("<user>hello\n")}


# -- errors ----------------------------------------------------------------------------------------


def error_of(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert body["request_id"].startswith("req_")
    message: str = body["error"]["message"]
    return message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": HELLO}, "max_tokens: Field required"),
        ({"max_tokens": 0, "messages": HELLO}, "max_tokens: Input should be greater than or equal to 1"),
        ({"max_tokens": "8", "messages": HELLO}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": 8, "messages": []}, "messages: at least one message is required"),
        ({"max_tokens": 8, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages.0.content"),
        ({"max_tokens": 8, "messages": HELLO, "temperature": 1.5}, "temperature"),
        ({"max_tokens": 8, "messages": HELLO, "tools": [{"name": "x"}]}, "tools.0.input_schema"),
        ({"max_tokens": 8, "messages": HELLO, "tools": [READ_TOOL], "tool_choice": {"type": "tool", "name": "Write"}}, "Write"),
        ({"max_tokens": 8, "messages": HELLO, "tools": [READ_TOOL], "tool_choice": {"type": "any"},
          "thinking": {"type": "enabled", "budget_tokens": 1024}}, "Thinking may not be enabled"),
        ({"max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "tool_use", "id": "t", "name": "Read", "input": {}}]}]}, "only allowed in assistant"),
        ({"max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "%%%"}}]}]}, "base64"),
        ({"max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]}, "not supported"),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_and_nothing_runs(
    shared: Scripted, body: dict[str, Any], message: str
) -> None:
    s = shared
    before = len(s.engine.prompts)
    response = s.http.post("/v1/messages", json={"model": "agent", **body})
    assert message in error_of(response, 400, "invalid_request_error")
    assert len(s.engine.prompts) == before


def test_error_shapes_and_statuses(scripted: Scripted) -> None:
    s = scripted
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "anthropic-beta": "x"}
    response = s.http.post(
        "/v1/messages", json={"model": "nope", "max_tokens": 8, "messages": HELLO}, headers=headers
    )
    assert error_of(response, 404, "not_found_error") == "model: nope"
    with pytest.raises(anthropic.NotFoundError):
        s.client.messages.create(model="nope", max_tokens=8, messages=HELLO)
    with pytest.raises(anthropic.BadRequestError):
        s.client.messages.create(model="agent", max_tokens=8, messages=[])
    error_of(s.http.post("/v1/messages", content=b"{not json"), 400, "invalid_request_error")
    error_of(s.http.get("/v1/messages"), 405, "invalid_request_error")
    error_of(s.http.post("/v1/messages/batches"), 404, "not_found_error")
    error_of(s.http.post("/anthropic/v1/complete"), 404, "not_found_error")
    big = b'{"pad": "' + b"x" * (32 * 1024 * 1024) + b'"}'
    error_of(s.http.post("/v1/messages", content=big), 413, "request_too_large")
    # Images reach the core, which says whether the model can see them (the core's wording).
    image: Any = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    response = post(
        s, messages=[{"role": "user", "content": [image, {"type": "text", "text": "?"}]}]
    )
    error_of(response, 400, "invalid_request_error")  # the scripted model has no vision
    # The OpenAI routes beside them keep their own shape.
    assert (
        "error" in s.http.get("/v1/nothing").json()
        and "type" not in s.http.get("/v1/nothing").json()
    )


def test_overload_maps_to_529() -> None:
    response = wire.error_response(503, "server busy")
    assert response.status_code == 529
    assert json.loads(bytes(response.body))["error"]["type"] == "overloaded_error"
    assert wire.error_type(500) == "api_error" and wire.error_type(409) == "invalid_request_error"


# -- the real engine -------------------------------------------------------------------------------


@pytest.fixture
def tiny(runner: LiveServer, http: httpx.Client, tiny_gguf: Path) -> anthropic.Anthropic:
    upload_and_create(http, tiny_gguf, "tiny", template=SHORT_TEMPLATE)
    return sdk(runner.url)


def test_tiny_model_real_tokenizer_and_limits(tiny: anthropic.Anthropic) -> None:
    counted = tiny.messages.count_tokens(model="tiny", messages=HELLO)
    reply = tiny.messages.create(model="tiny", max_tokens=3, messages=HELLO)
    assert (
        reply.usage.input_tokens + (reply.usage.cache_read_input_tokens or 0)
        == counted.input_tokens
    )
    assert reply.stop_reason in ("max_tokens", "end_turn") and reply.usage.output_tokens <= 3
    with tiny.messages.stream(model="tiny", max_tokens=3, messages=HELLO) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens <= 3 and final.stop_reason in ("max_tokens", "end_turn")


def test_tiny_model_forced_tool_choice_is_a_tool_call(tiny: anthropic.Anthropic) -> None:
    tool: Any = {
        "name": "get_weather",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Oslo"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
    # The named tool among others; any of the offered tools (one here, so the answer is known).
    cases: Any = [
        ([READ_TOOL, tool], {"type": "tool", "name": "get_weather"}),
        ([tool], {"type": "any"}),
    ]
    for tools, choice in cases:
        reply = tiny.messages.create(
            model="tiny", max_tokens=200, messages=HELLO, tools=tools, tool_choice=choice
        )
        assert reply.stop_reason == "tool_use", reply
        (call,) = [b for b in reply.content if b.type == "tool_use"]
        assert call.name == "get_weather" and call.input in ({"city": "Paris"}, {"city": "Oslo"})


@pytest.mark.slow
def test_gemma_messages(gemma_runner: LiveServer) -> None:
    client = sdk(gemma_runner.url + "/anthropic")
    messages: Any = [{"role": "user", "content": "Say hello to Rome."}]
    counted = client.messages.count_tokens(
        model="gemma3:270m", messages=messages, system="Be kind."
    )
    reply = client.messages.create(
        model="gemma3:270m",
        max_tokens=16,
        messages=messages,
        system="Be kind.",
        extra_body={"temperature": 0},
    )
    assert reply.content and reply.content[0].type == "text" and reply.content[0].text
    assert (
        reply.usage.input_tokens + (reply.usage.cache_read_input_tokens or 0)
        == counted.input_tokens
    )
    with client.messages.stream(
        model="gemma3:270m", max_tokens=16, messages=messages, extra_body={"temperature": 0}
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0
