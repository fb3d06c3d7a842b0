"""The OpenAI Responses API (/v1/responses and DMR's paths) over real HTTP with the official
``openai`` client. A scripted engine gives known replies (text, thinking, tool calls) and records
the prompts it was given, so multi-turn state is checked where it lands; the tiny GGUF checks what
needs real sampling (JSON-schema grammar). Plus unit tests of the bounded response store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import openai
import pytest

from modelrunner.app import create_app
from modelrunner.core.responses import ResponseStore
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.support.fake_engine import FakeEngine
from tests.support.server import LiveServer

PLAIN_TEMPLATE = (
    "{{- if .Tools }}Tools: {{ json .Tools }}\n{{ end }}"
    "{{- range .Messages }}<{{ .Role }}>{{ .Content }}"
    "{{- range .ToolCalls }}[call {{ .Function.Name }} {{ .Function.Arguments }}]{{ end }}\n{{ end }}"
)
THINK_TEMPLATE = PLAIN_TEMPLATE + "{{ if .Think }}<think>{{ end }}"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 4,  # "Hello there." in pieces of 3
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


class Scripted:
    """A runner over the scripted engine, holding ``agent`` (tools) and ``thinker`` (tools and
    thinking), with the official client and a raw HTTP client."""

    def __init__(self, engine: FakeEngine, url: str, http: httpx.Client) -> None:
        self.engine = engine
        self.url = url
        self.http = http
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

    @property
    def prompt(self) -> str:
        return self.engine.prompts[-1]


@pytest.fixture(scope="module")
def scripted_runner(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> Iterator[Scripted]:
    engine = FakeEngine()
    root = tmp_path_factory.mktemp("responses") / "models"
    server = LiveServer(create_app(Settings(models=root, listen=[], prune=False), engine)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            upload_and_create(http, tiny_gguf, "agent", template=PLAIN_TEMPLATE)
            upload_and_create(http, tiny_gguf, "thinker", template=THINK_TEMPLATE)
            yield Scripted(engine, server.url, http)
    finally:
        server.stop()


@pytest.fixture
def scripted(scripted_runner: Scripted) -> Scripted:
    scripted_runner.engine.reply = "Hello there."
    scripted_runner.engine.prompts.clear()
    return scripted_runner


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    """Each block is ``event: NAME`` then ``data: {...}`` with the same type; no ``[DONE]``."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in response.text.split("\n\n") if b]
    out = []
    for block in blocks:
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        event = json.loads(data.removeprefix("data: "))
        assert event["type"] == name.removeprefix("event: ")
        out.append(event)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# -- create ----------------------------------------------------------------------------------------


def test_text_input(scripted: Scripted) -> None:
    response = scripted.client.responses.create(model="agent", input="Hi")
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.error is None
    assert response.incomplete_details is None and response.completed_at
    assert response.model == "agent" and response.output_text == "Hello there."
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.status == "completed"
    (part,) = message.content
    assert part.type == "output_text" and part.annotations == []
    assert response.usage is not None
    assert response.usage.output_tokens == 4 and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + 4
    assert (
        response.to_dict()["store"] is True
        and response.tools == []
        and response.previous_response_id is None
    )
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "text"
    assert scripted.prompt == "<user>Hi\n"


def test_item_input_and_instructions(scripted: Scripted) -> None:
    response = scripted.client.responses.create(
        model="agent",
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "Say"}, {"type": "input_text", "text": "hi"}]},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "Again"},
        ],
        temperature=0.5,
        metadata={"ticket": "42"},
    )  # fmt: skip
    assert response.output_text == "Hello there." and response.instructions == "Be brief."
    assert response.temperature == 0.5 and response.metadata == {"ticket": "42"}
    # Instructions lead; the prompt layer joins leading system messages as Ollama does.
    assert scripted.prompt == (
        "<system>Be brief.\n\nAnswer in English.\n<user>Say\nhi\n<assistant>Hi!\n<user>Again\n"
    )


def test_stream_events_in_order(scripted: Scripted) -> None:
    body = {"model": "agent", "input": "Hi", "stream": True}
    events = sse_events(scripted.http.post("/v1/responses", json=body))
    assert [e["type"] for e in events] == TEXT_EVENTS
    created, in_progress = events[0]["response"], events[1]["response"]
    assert created["status"] == in_progress["status"] == "in_progress"
    assert created["output"] == [] and created["usage"] is None
    item_id = events[2]["item"]["id"]
    assert events[2]["item"] == {"id": item_id, "type": "message", "status": "in_progress",
                                 "role": "assistant", "content": []}  # fmt: skip
    assert "".join(e["delta"] for e in events[4:8]) == "Hello there."
    assert all(e["item_id"] == item_id and e["output_index"] == 0 for e in events[3:10])
    assert events[8]["text"] == "Hello there."
    final = events[-1]["response"]
    assert final["id"] == created["id"] and final["status"] == "completed"
    assert final["output"] == [events[10]["item"]]
    assert final["output"][0]["content"][0]["text"] == "Hello there."

    # The SDK's stream helper assembles the same final response.
    with scripted.client.responses.stream(model="agent", input="Hi") as stream:
        kinds = [event.type for event in stream]
        final_response = stream.get_final_response()
    assert kinds == TEXT_EVENTS
    assert final_response.output_text == "Hello there." and final_response.status == "completed"


def test_reasoning_items(scripted: Scripted) -> None:
    scripted.engine.reply = "Let me think.</think>Paris."
    response = scripted.client.responses.create(model="thinker", input="Capital of France?")
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert [s.text for s in reasoning.summary] == ["Let me think."]
    assert message.type == "message" and response.output_text == "Paris."
    assert scripted.prompt.endswith("<think>")

    body = {"model": "thinker", "input": "Capital of France?", "stream": True}
    kinds = [e["type"] for e in sse_events(scripted.http.post("/v1/responses", json=body))]
    assert kinds[:6] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
    ]
    done = kinds.index("response.reasoning_summary_text.done")
    assert kinds[done : done + 4] == [
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
    ]

    # effort "none" turns thinking off: the whole reply is the answer.
    plain = scripted.client.responses.create(
        model="thinker", input="Capital?", reasoning={"effort": "none"}
    )
    assert [item.type for item in plain.output] == ["message"]
    assert not scripted.prompt.endswith("<think>")


def test_max_output_tokens_is_incomplete(scripted: Scripted) -> None:
    response = scripted.client.responses.create(model="agent", input="Hi", max_output_tokens=2)
    assert response.status == "incomplete" and response.completed_at is None
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert (
        response.output_text == "Hello "
        and getattr(response.output[0], "status", None) == "incomplete"
    )
    assert response.max_output_tokens == 2

    body = {"model": "agent", "input": "Hi", "max_output_tokens": 2, "stream": True}
    events = sse_events(scripted.http.post("/v1/responses", json=body))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


# -- stored responses ------------------------------------------------------------------------------


def test_previous_response_id_continues_the_conversation(scripted: Scripted) -> None:
    client = scripted.client
    first = client.responses.create(model="agent", input="My name is Ann.", instructions="SYS")
    scripted.engine.reply = "You are Ann."
    second = client.responses.create(
        model="agent", input="Who am I?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id and second.output_text == "You are Ann."
    # Earlier turns replay; the first response's instructions do not carry over.
    assert scripted.prompt == "<user>My name is Ann.\n<assistant>Hello there.\n<user>Who am I?\n"

    third = client.responses.create(model="agent", input="And?", previous_response_id=second.id)
    assert scripted.prompt.startswith("<user>My name is Ann.\n<assistant>Hello there.\n")
    assert scripted.prompt.endswith("<assistant>You are Ann.\n<user>And?\n")

    items = client.responses.input_items.list(third.id, order="asc")
    texts = [(item.type, getattr(item, "role", None)) for item in items.data]
    assert texts == [("message", "user"), ("message", "assistant"), ("message", "user"),
                     ("message", "assistant"), ("message", "user")]  # fmt: skip
    assert items.data[1].id == first.output[0].id
    newest_first = client.responses.input_items.list(third.id)
    assert [i.id for i in newest_first.data] == [i.id for i in reversed(items.data)]
    page = client.responses.input_items.list(third.id, order="asc", limit=2)
    assert [i.id for i in page.data] == [i.id for i in items.data[:2]] and page.has_more
    rest = client.responses.input_items.list(third.id, order="asc", after=page.data[-1].id)
    assert [i.id for i in rest.data] == [i.id for i in items.data[2:]] and not rest.has_more

    # An item_reference names any stored input or output item by id.
    reference: Any = [
        {"type": "item_reference", "id": first.output[0].id},
        {"role": "user", "content": "Ok"},
    ]
    client.responses.create(model="agent", input=reference, store=False)
    assert scripted.prompt == "<assistant>Hello there.\n<user>Ok\n"


def test_retrieve_and_delete(scripted: Scripted) -> None:
    created = scripted.client.responses.create(model="agent", input="Hi")
    for prefix in ("/v1", "", "/engines", "/engines/v1", "/engines/llama.cpp/v1"):
        got = scripted.http.get(f"{prefix}/responses/{created.id}")
        assert got.status_code == 200 and got.json() == created.to_dict()
    assert scripted.client.responses.retrieve(created.id).output_text == "Hello there."

    deleted = scripted.http.delete(f"/v1/responses/{created.id}")
    assert deleted.json() == {"id": created.id, "object": "response.deleted", "deleted": True}
    for method in ("GET", "DELETE"):
        missing = scripted.http.request(method, f"/v1/responses/{created.id}")
        error = error_of(missing, 404)
        assert error["message"] == f"Response with id '{created.id}' not found."
    with pytest.raises(openai.NotFoundError):
        scripted.client.responses.retrieve(created.id)
    error_of(scripted.http.get(f"/v1/responses/{created.id}/input_items"), 404)


def test_store_false_is_not_kept(scripted: Scripted) -> None:
    response = scripted.client.responses.create(model="agent", input="Hi", store=False)
    assert response.to_dict()["store"] is False and response.output_text == "Hello there."
    error_of(scripted.http.get(f"/v1/responses/{response.id}"), 404)
    body = {"model": "agent", "input": "More", "previous_response_id": response.id}
    error = error_of(scripted.http.post("/v1/responses", json=body), 400)
    assert error == {
        "message": f"Previous response with id '{response.id}' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    stream = {"model": "agent", "input": "Hi", "stream": True, "store": False}
    events = sse_events(scripted.http.post("/v1/responses", json=stream))
    error_of(scripted.http.get(f"/v1/responses/{events[-1]['response']['id']}"), 404)


def test_streamed_response_is_stored_before_completed(scripted: Scripted) -> None:
    body = {"model": "agent", "input": "Hi", "stream": True}
    with scripted.http.stream("POST", "/v1/responses", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"response.completed"' in line:
                response_id = json.loads(line[6:])["response"]["id"]
                got = scripted.http.get(f"/v1/responses/{response_id}")
                assert got.status_code == 200 and got.json()["status"] == "completed"
                break
        else:
            pytest.fail("no response.completed event")


# -- tools -----------------------------------------------------------------------------------------


def test_codex_style_tool_round_trip(scripted: Scripted) -> None:
    """Codex sends the whole conversation every turn with ``store: false``; the model calls a
    function, the client runs it and sends ``function_call_output``, the model answers."""
    client = scripted.client
    scripted.engine.reply = CALL
    user: Any = {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}
    first = client.responses.create(
        model="agent", input=[user], tools=[WEATHER], tool_choice="auto",
        parallel_tool_calls=False, store=False, reasoning=None,
    )  # fmt: skip
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id.startswith("call_") and call.id and call.id.startswith("fc_")
    assert json.loads(call.arguments) == {"city": "Paris"} and call.status == "completed"
    assert first.output_text == "" and first.parallel_tool_calls is False
    assert first.tools[0].type == "function" and first.tools[0].name == "get_weather"
    assert '"name":"get_weather"' in scripted.prompt

    scripted.engine.reply = "It is sunny."
    output: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "22C, sunny"}
    replay: Any = call.model_dump(exclude_none=True)  # as received: id, status and all
    second = client.responses.create(
        model="agent", tools=[WEATHER], store=False, input=[user, replay, output]
    )
    assert second.output_text == "It is sunny."
    assert scripted.prompt.endswith(
        '<user>Weather in Paris?\n<assistant>[call get_weather {"city":"Paris"}]\n'
        "<tool>22C, sunny\n"
    )

    # Streamed, the call is one function_call item with its arguments events.
    scripted.engine.reply = CALL
    body = {"model": "agent", "input": "Weather in Paris?", "tools": [WEATHER], "stream": True}
    events = sse_events(scripted.http.post("/v1/responses", json=body))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2]["item"]["arguments"] == "" and events[2]["item"]["status"] == "in_progress"
    assert json.loads(events[4]["arguments"]) == {"city": "Paris"}
    assert events[4]["name"] == "get_weather"
    assert events[-1]["response"]["output"] == [events[5]["item"]]


def test_function_call_output_after_stored_call(scripted: Scripted) -> None:
    scripted.engine.reply = CALL
    first = scripted.client.responses.create(model="agent", input="Weather?", tools=[WEATHER])
    call = first.output[0]
    assert call.type == "function_call"
    scripted.engine.reply = "Sunny."
    second = scripted.client.responses.create(
        model="agent", tools=[WEATHER], previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )  # fmt: skip
    assert second.output_text == "Sunny."
    assert scripted.prompt.endswith('[call get_weather {"city":"Paris"}]\n<tool>sunny\n')
    # tool_choice "none" offers no tools, so the reply stays text.
    scripted.engine.reply = CALL
    none = scripted.client.responses.create(
        model="agent", input="Weather?", tools=[WEATHER], tool_choice="none"
    )
    assert none.output[0].type == "message" and "Tools:" not in scripted.prompt


# -- paths and errors ------------------------------------------------------------------------------


def test_dmr_paths_share_the_store(scripted: Scripted) -> None:
    name = "registry.ollama.ai/library/agent:latest"
    ids = []
    for path in ("/responses", "/engines/v1/responses", "/engines/llama.cpp/v1/responses"):
        response = scripted.http.post(path, json={"model": name, "input": "Hi"})
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    for response_id in ids:
        assert scripted.http.get(f"/v1/responses/{response_id}").status_code == 200
    missing = scripted.http.post("/engines/vllm/v1/responses", json={"model": name, "input": "x"})
    assert error_of(missing, 404)["message"] == "backend not found"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": "Hi"}, "model is required"),
        ({"model": "agent"}, "input is required"),
        ({"model": "agent", "input": 5}, None),
        ({"model": "agent", "input": [{"type": "video"}]}, "unknown input item type: 'video'"),
        ({"model": "agent", "input": [{"content": "x"}]}, "missing required 'type'"),
        ({"model": "agent", "input": [{"role": "robot", "content": "x"}]}, "invalid role"),
        ({"model": "agent", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
         "file inputs are not currently supported"),
        ({"model": "agent", "input": [{"type": "function_call", "call_id": "c", "name": "f",
                                       "arguments": "[1]"}]}, "must be a JSON object string"),
        ({"model": "agent", "input": [{"type": "function_call_output", "output": "x"}]},
         "requires call_id and output"),
        ({"model": "agent", "input": [{"type": "item_reference", "id": "msg_nope"}]},
         "item with id 'msg_nope' not found"),
        ({"model": "agent", "input": "Hi", "text": {"format": {"type": "xml"}}},
         "invalid text.format type"),
        ({"model": "agent", "input": "Hi", "text": {"format": {"type": "json_schema"}}},
         "requires a schema"),
        ({"model": "agent", "input": "Hi", "tools": [{"type": "web_search"}]},
         "tool type 'web_search' is not supported"),
        ({"model": "agent", "input": "Hi", "tool_choice": "sometimes"}, "invalid tool_choice"),
        ({"model": "agent", "input": "Hi", "reasoning": {"effort": "huge"}}, "invalid reasoning"),
        ({"model": "agent", "input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "agent", "input": "Hi", "temperature": "hot"}, "temperature"),
        ({"model": "agent", "input": "Hi", "stream": "yes"}, "stream"),
        ({"model": "agent", "input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": "https://example.com/cat.png"}]}]},
         "image URLs are not currently supported"),
        ({"model": "agent", "input": [{"role": "user", "content": [
            {"type": "input_image", "file_id": "file_1"}]}]}, "file_id is not supported"),
    ],
)  # fmt: skip
def test_bad_input_is_400_and_changes_nothing(
    scripted: Scripted, body: dict[str, Any], message: str | None
) -> None:
    for stream in (False, True):
        error = error_of(scripted.http.post("/v1/responses", json={"stream": stream} | body), 400)
        assert error["type"] == "invalid_request_error"
        if message:
            assert message in error["message"]
    assert scripted.engine.prompts == []  # nothing reached the engine


def test_unknown_model_and_bad_json(scripted: Scripted) -> None:
    error = error_of(
        scripted.http.post("/v1/responses", json={"model": "nope", "input": "Hi"}), 404
    )
    assert error["message"] == 'model "nope" not found' and error["type"] == "not_found_error"
    with pytest.raises(openai.NotFoundError):
        scripted.client.responses.create(model="nope", input="Hi")
    error_of(scripted.http.post("/v1/responses", content=b"{nope"), 400)
    error_of(scripted.http.get("/v1/responses/resp_x/input_items", params={"limit": 0}), 404)
    created = scripted.client.responses.create(model="agent", input="Hi")
    bad = scripted.http.get(f"/v1/responses/{created.id}/input_items", params={"limit": 500})
    assert "invalid limit" in error_of(bad, 400)["message"]
    bad = scripted.http.get(f"/v1/responses/{created.id}/input_items", params={"order": "up"})
    assert "invalid order" in error_of(bad, 400)["message"]


def test_version_lets_codex_use_responses(scripted: Scripted) -> None:
    """Codex uses the Responses API only when /api/version reports 0.13.4 or later."""
    version = scripted.http.get("/api/version").json()["version"]
    assert tuple(int(p) for p in version.split(".")) >= (0, 13, 4)


# -- a real (tiny) model ---------------------------------------------------------------------------


def test_json_schema_format_with_a_real_model(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(http, tiny_gguf, "tiny")
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "blue"]}},
        "required": ["ok", "color"],
        "additionalProperties": False,
    }
    client = openai.OpenAI(base_url=str(http.base_url.join("/v1")), api_key="unused", max_retries=0)
    fmt: Any = {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    response = client.responses.create(
        model="tiny", input="Pick a color.", max_output_tokens=60, text={"format": fmt}
    )
    assert response.status == "completed"
    jsonschema.validate(json.loads(response.output_text), schema)
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    with client.responses.stream(
        model="tiny", input="Pick a color.", max_output_tokens=60, text={"format": fmt}
    ) as stream:
        final = stream.get_final_response()
    jsonschema.validate(json.loads(final.output_text), schema)


@pytest.mark.slow
def test_gemma_conversation(gemma_runner: LiveServer) -> None:
    """The real model: a streamed answer, then a follow-up whose prompt holds the first turn."""
    client = openai.OpenAI(base_url=f"{gemma_runner.url}/v1", api_key="unused", max_retries=0)
    events = list(
        client.responses.create(
            model="gemma3:270m", input="Name a color.", max_output_tokens=8, temperature=0,
            stream=True,
        )
    )  # fmt: skip
    last = events[-1]
    assert last.type in ("response.completed", "response.incomplete")
    first = last.response
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert first.output_text and "".join(deltas) == first.output_text
    assert first.usage is not None and 0 < first.usage.output_tokens <= 8
    second = client.responses.create(
        model="gemma3:270m", input="Another one?", previous_response_id=first.id,
        max_output_tokens=8, temperature=0,
    )  # fmt: skip
    assert second.status in ("completed", "incomplete") and second.output_text
    assert second.usage is not None
    # The follow-up's prompt replays the first question and answer.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens


# -- rendering -------------------------------------------------------------------------------------


def test_stream_renderer_failure_and_whitespace() -> None:
    from modelrunner.api.openai.responses_convert import ResponseHead
    from modelrunner.api.openai.responses_schemas import ResponsesRequest
    from modelrunner.api.openai.responses_stream import ResponseStream
    from modelrunner.core.textstream import ToolCall
    from modelrunner.core.types import Chunk

    renderer = ResponseStream(ResponseHead(ResponsesRequest(model="m")))
    renderer.start()
    # Whitespace before a tool call opens no message item.
    assert renderer.feed(Chunk(content="\n ")) == []
    renderer.feed(Chunk(tool_calls=[ToolCall("f", {"a": 1}, id="call_1")]))
    events = renderer.feed(Chunk(done=True, done_reason="stop"))
    assert renderer.response is not None
    assert [i["type"] for i in renderer.response["output"]] == ["function_call"]
    assert events[-1]["type"] == "response.completed"

    broken = ResponseStream(ResponseHead(ResponsesRequest(model="m")))
    broken.start()
    broken.feed(Chunk(content="Hal"))
    failed = broken.fail("engine crashed")
    assert failed["type"] == "response.failed" and failed["sequence_number"] == 5
    assert failed["response"]["status"] == "failed" and failed["response"]["usage"] is None
    assert failed["response"]["error"] == {"code": "server_error", "message": "engine crashed"}


# -- the store -------------------------------------------------------------------------------------


def stored(response_id: str, *items: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    output = [{"id": f"out_{response_id}", "type": "message"}]
    return {"id": response_id, "output": output}, [{"id": i} for i in items]


def test_store_evicts_oldest_first_past_capacity() -> None:
    store = ResponseStore(capacity=2, ttl=60)
    for name in ("a", "b", "c"):
        store.put(*stored(name, f"in_{name}"))
    assert store.get("a") is None and len(store) == 2
    entry = store.get("b")
    assert entry is not None
    assert [i["id"] for i in entry.conversation] == ["in_b", "out_b"]
    assert store.item("out_c") == {"id": "out_c", "type": "message"}
    assert store.item("in_a") is None
    assert store.delete("b") and not store.delete("b") and len(store) == 1


def test_store_forgets_after_ttl() -> None:
    now = [100.0]
    store = ResponseStore(capacity=10, ttl=30, clock=lambda: now[0])
    store.put(*stored("a"))
    now[0] = 120.0
    store.put(*stored("b"))
    assert store.get("a") is not None
    now[0] = 131.0
    assert store.get("a") is None and store.get("b") is not None and len(store) == 1
    now[0] = 151.0
    assert len(store) == 0
