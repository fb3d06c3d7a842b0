"""Tool calls, thinking and stop handling through the real HTTP stack, over a scripted engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.support.fake_engine import FakeEngine
from tests.support.server import LiveServer

TOOLS_TEMPLATE = (
    "{{- if .Tools }}Tools: {{ json .Tools }}\n{{ end }}"
    "{{- range .Messages }}<{{ .Role }}>{{ .Content }}"
    "{{- range .ToolCalls }}[call {{ .Function.Name }} {{ .Function.Arguments }}]{{ end }}\n{{ end }}"
    "{{ if .Think }}<think>{{ end }}"
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def scripted(tmp_path: Path, tiny_gguf: Path) -> Iterator[tuple[FakeEngine, httpx.Client]]:
    engine = FakeEngine()
    settings = Settings(models=tmp_path / "models", listen=[], prune=False)
    server = LiveServer(create_app(settings, engine=engine)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            upload_and_create(client, tiny_gguf, "agent", template=TOOLS_TEMPLATE)
            yield engine, client
    finally:
        server.stop()


def chat_lines(client: httpx.Client, **body: object) -> list[dict[str, object]]:
    response = client.post("/api/chat", json={"model": "agent", **body})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_capabilities_come_from_the_template(scripted: tuple[FakeEngine, httpx.Client]) -> None:
    _, client = scripted
    caps = client.post("/api/show", json={"model": "agent"}).json()["capabilities"]
    assert caps == ["completion", "tools", "thinking"]


def test_tool_call_in_its_own_streamed_chunk(scripted: tuple[FakeEngine, httpx.Client]) -> None:
    engine, client = scripted
    engine.reply = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    lines = chat_lines(client, messages=messages, tools=[WEATHER], think=False)
    calls = [line for line in lines if line["message"].get("tool_calls")]  # type: ignore[union-attr]
    assert len(calls) == 1
    (call,) = calls[0]["message"]["tool_calls"]  # type: ignore[index]
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    assert call["id"].startswith("call_") and len(call["id"]) == 13
    assert calls[0]["message"]["content"] == "" and calls[0]["done"] is False  # type: ignore[index]
    assert "".join(str(line["message"]["content"]) for line in lines) == ""  # type: ignore[index]
    # The tools reached the prompt as JSON, as Ollama renders {{ json .Tools }}.
    assert '"name":"get_weather"' in engine.prompts[-1]


def test_tool_results_are_rendered_back(scripted: tuple[FakeEngine, httpx.Client]) -> None:
    engine, client = scripted
    engine.reply = "It is sunny."
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]  # fmt: skip
    lines = chat_lines(client, messages=messages, tools=[WEATHER], think=False, stream=False)
    assert lines[0]["message"] == {"role": "assistant", "content": "It is sunny."}
    assert '[call get_weather {"city":"Paris"}]' in engine.prompts[-1]
    assert "<tool>sunny" in engine.prompts[-1]


def test_plain_text_with_tools_offered_stays_content(
    scripted: tuple[FakeEngine, httpx.Client],
) -> None:
    engine, client = scripted
    engine.reply = "No tool needed {really}."
    lines = chat_lines(
        client, messages=[{"role": "user", "content": "hi"}], tools=[WEATHER], think=False
    )
    assert "".join(str(line["message"]["content"]) for line in lines) == engine.reply  # type: ignore[index]


def test_thinking_is_split_from_the_answer(scripted: tuple[FakeEngine, httpx.Client]) -> None:
    engine, client = scripted
    engine.reply = "Let me think about it.</think>The answer is 4."
    lines = chat_lines(client, messages=[{"role": "user", "content": "2+2?"}])  # think defaults on
    thinking = "".join(str(line["message"].get("thinking", "")) for line in lines)  # type: ignore[union-attr]
    content = "".join(str(line["message"]["content"]) for line in lines)  # type: ignore[index]
    assert thinking == "Let me think about it."
    assert content == "The answer is 4."
    assert engine.prompts[-1].endswith("<think>")
    plain = chat_lines(
        client, messages=[{"role": "user", "content": "2+2?"}], think=False, stream=False
    )
    assert "thinking" not in plain[0]["message"]  # type: ignore[operator]


def test_official_client_sees_tool_calls(scripted: tuple[FakeEngine, httpx.Client]) -> None:
    engine, client = scripted
    engine.reply = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    ollama_client = ollama.Client(host=str(client.base_url))
    reply = ollama_client.chat(model="agent", messages=[{"role": "user", "content": "Oslo?"}],
                               tools=[WEATHER], think=False)  # fmt: skip
    (call,) = reply.message.tool_calls or []
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Oslo"}


def test_stop_sequence_split_across_pieces(scripted: tuple[FakeEngine, httpx.Client]) -> None:
    engine, client = scripted
    engine.reply = "alpha beta STOP gamma"
    body = {"model": "agent", "prompt": "x", "stream": False, "think": False,
            "options": {"stop": ["STOP"]}}  # fmt: skip
    data = client.post("/api/generate", json=body).json()
    assert data["response"] == "alpha beta " and data["done_reason"] == "stop"
