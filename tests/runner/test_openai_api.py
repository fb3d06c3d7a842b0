"""The OpenAI API (/v1, /engines/v1, /engines/llama.cpp/v1) over real HTTP, with the official
client and curl, plus unit tests of the pure converters. The tiny GGUF keeps it fast; a few
end-to-end checks use the real Gemma 3 270M (marked slow)."""

from __future__ import annotations

import base64
import json
import math
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from modelrunner.api.openai import convert, replies
from modelrunner.api.openai.schemas import ChatCompletionRequest, CompletionRequest
from modelrunner.app import create_app
from modelrunner.core.defaults import ensure_default_model
from modelrunner.core.textstream import ToolCall
from modelrunner.core.types import Chunk, Timings
from modelrunner.errors import InvalidRequest
from modelrunner.names import Dialect
from modelrunner.settings import Settings
from modelrunner.store.models import ModelStore
from tests.conftest import upload_and_create
from tests.support.server import LiveServer

USER = [{"role": "user", "content": "hello"}]
TOOLS_TEMPLATE = (
    "{{ if .Tools }}{{ json .Tools }}{{ end }}{{ range .Messages }}{{ .Content }}{{ end }}"
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TOOLS: Any = [WEATHER_TOOL]
# A schema whose every value is an enum: even random weights produce a complete, valid answer.
CALL_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"enum": ["get_weather"]},
        "arguments": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Oslo"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "arguments"],
    "additionalProperties": False,
}


def schema_format(schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def events(response: httpx.Response) -> list[dict[str, Any]]:
    """Parse an SSE body; it must end with ``data: [DONE]``."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = response.text.split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""], response.text[-200:]
    assert all(b.startswith("data: ") for b in blocks[:-2])
    return [json.loads(b.removeprefix("data: ")) for b in blocks[:-2]]


def tags(http: httpx.Client) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = http.get("/api/tags").json()["models"]
    return models


@pytest.fixture
def tiny(http: httpx.Client, tiny_gguf: Path) -> str:
    upload_and_create(http, tiny_gguf, "tiny")
    return "tiny"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[httpx.Client]:
    """One runner holding ``tiny`` for the tests that only read (error cases)."""
    root = tmp_path_factory.mktemp("openai-shared") / "models"
    server = LiveServer(create_app(Settings(models=root, listen=[], prune=False))).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            upload_and_create(client, tiny_gguf, "tiny")
            yield client
    finally:
        server.stop()


@pytest.fixture
def smollm2(http: httpx.Client, tiny: str) -> str:
    """The tiny model also stored as DMR's docker.io/ai/smollm2:latest (the docs' example)."""
    response = http.post("/models/tiny/tag", params={"repo": "ai/smollm2", "tag": "latest"})
    assert response.status_code == 201, response.text
    return "ai/smollm2"


# -- models ----------------------------------------------------------------------------------------


def test_models_under_v1_use_ollama_names(http: httpx.Client, tiny: str) -> None:
    listing = http.get("/v1/models").json()
    assert listing["object"] == "list"
    (model,) = listing["data"]
    assert model == {
        "id": "tiny:latest",
        "object": "model",
        "created": model["created"],
        "owned_by": "library",
    }
    assert isinstance(model["created"], int) and model["created"] > 1_600_000_000
    assert http.get("/v1/models/tiny").json() == model
    assert http.get("/v1/models/registry.ollama.ai/library/tiny:latest").json() == model


def test_models_under_engines_use_dmr_names(http: httpx.Client, smollm2: str) -> None:
    v1 = {m["id"] for m in http.get("/v1/models").json()["data"]}
    assert v1 == {"tiny:latest", "docker.io/ai/smollm2:latest"}
    for prefix in ("/engines/v1", "/engines/llama.cpp/v1", "/exp/vDD4.40/engines/v1"):
        (model,) = http.get(f"{prefix}/models").json()["data"]  # one model, two tags
        assert model["id"] == "docker.io/ai/smollm2:latest"
        assert model["object"] == "model" and model["owned_by"] == "docker"
        for name in ("ai/smollm2", "smollm2", "docker.io/ai/smollm2:latest"):
            assert http.get(f"{prefix}/models/{name}").json() == model
    missing = http.get("/engines/v1/models/ai/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == 'model "ai/nothing" not found'


def test_unknown_backend_is_404(http: httpx.Client, tiny: str) -> None:
    for method, path in (
        ("GET", "/engines/vllm/v1/models"),
        ("POST", "/engines/mlx/v1/chat/completions"),
    ):
        response = http.request(method, path, json={"model": "tiny", "messages": USER})
        assert response.status_code == 404
        assert response.json() == {
            "error": {
                "message": "backend not found",
                "type": "not_found_error",
                "param": None,
                "code": None,
            }
        }


# -- chat completions ------------------------------------------------------------------------------


def test_chat_completion_shape(http: httpx.Client, tiny: str) -> None:
    body = {"model": tiny, "messages": USER, "max_tokens": 4, "temperature": 0}
    data = http.post("/v1/chat/completions", json=body).json()
    assert data["id"].startswith("chatcmpl-") and data["id"][9:].isdigit()
    assert data["object"] == "chat.completion"
    assert data["model"] == "tiny" and data["system_fingerprint"] == "fp_modelrunner"
    assert isinstance(data["created"], int)
    (choice,) = data["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["logprobs"] is None
    usage = data["usage"]
    assert usage["completion_tokens"] == 4 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 4


def test_chat_stream_shape_and_usage(http: httpx.Client, tiny: str) -> None:
    body = {"model": tiny, "messages": USER, "max_tokens": 3, "temperature": 0, "stream": True}
    chunks = events(http.post("/v1/chat/completions", json=body))
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert chunks[-1]["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    ]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])

    with_usage = body | {"stream_options": {"include_usage": True}}
    chunks = events(http.post("/v1/chat/completions", json=with_usage))
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert all(c["usage"] is None for c in chunks[:-1])


def test_stream_and_non_stream_agree_at_temperature_zero(http: httpx.Client, tiny: str) -> None:
    body = {"model": tiny, "messages": USER, "max_completion_tokens": 6, "temperature": 0}
    whole = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    chunks = events(http.post("/v1/chat/completions", json=body | {"stream": True}))
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == whole["content"]


def test_stop_cuts_and_seed_repeats(http: httpx.Client, tiny: str) -> None:
    base = {"model": tiny, "messages": USER, "max_tokens": 12, "temperature": 0}
    text = http.post("/v1/chat/completions", json=base).json()["choices"][0]["message"]["content"]
    cut = next(i for i in range(1, len(text)) if text[i].isascii() and text[i].isprintable())
    for stop in (text[cut], [text[cut], "never-seen"]):
        data = http.post("/v1/chat/completions", json=base | {"stop": stop}).json()
        assert data["choices"][0]["message"]["content"] == text[: text.index(text[cut])]
        assert data["choices"][0]["finish_reason"] == "stop"
    seeded = {"model": tiny, "messages": USER, "max_tokens": 8, "seed": 7, "temperature": 1.5}
    first, second = (
        http.post("/v1/chat/completions", json=seeded).json()["choices"][0]["message"]["content"]
        for _ in range(2)
    )
    assert first == second


def test_json_schema_response_format(http: httpx.Client, tiny: str) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "blue"]}},
        "required": ["ok", "color"],
        "additionalProperties": False,
    }
    body = {
        "model": tiny,
        "messages": USER,
        "max_tokens": 60,
        "response_format": schema_format(schema),
    }
    for stream in (False, True):
        response = http.post("/v1/chat/completions", json=body | {"stream": stream})
        if stream:
            chunks = events(response)
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        else:
            text = response.json()["choices"][0]["message"]["content"]
        jsonschema.validate(json.loads(text), schema)


def test_tools_become_tool_calls(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(http, tiny_gguf, "tooly", template=TOOLS_TEMPLATE)
    body = {
        "model": "tooly",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "response_format": schema_format(CALL_SCHEMA),
        "max_tokens": 80,
        "tool_choice": "auto",
    }
    choice = http.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["city"] in ("Paris", "Oslo")

    chunks = events(http.post("/v1/chat/completions", json=body | {"stream": True}))
    calls = [c for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert len(calls) == 1
    (streamed,) = calls[0]["choices"][0]["delta"]["tool_calls"]
    assert streamed["index"] == 0 and streamed["function"]["name"] == "get_weather"
    assert isinstance(streamed["function"]["arguments"], str)
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }

    # The answer goes back as an assistant tool call plus a tool message, then the model replies.
    follow = {
        "model": "tooly",
        "max_tokens": 3,
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ],
    }
    assert http.post("/v1/chat/completions", json=follow).status_code == 200


def test_tools_need_a_model_that_supports_them(http: httpx.Client, tiny: str) -> None:
    body = {"model": tiny, "messages": USER, "tools": [WEATHER_TOOL]}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"].endswith("does not support tools")


def test_logprobs(http: httpx.Client, tiny: str) -> None:
    body = {
        "model": tiny,
        "messages": USER,
        "max_tokens": 3,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    data = http.post("/v1/chat/completions", json=body).json()
    content = data["choices"][0]["logprobs"]["content"]
    assert len(content) == 3
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert entry["logprob"] <= 0 and isinstance(entry["bytes"], list)
        assert len(entry["top_logprobs"]) == 2
        assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][1]["logprob"]
    chunks = events(http.post("/v1/chat/completions", json=body | {"stream": True}))
    streamed = [
        e
        for c in chunks
        if c["choices"][0]["logprobs"]
        for e in c["choices"][0]["logprobs"]["content"]
    ]
    assert len(streamed) == 3
    too_many = http.post("/v1/chat/completions", json=body | {"top_logprobs": 21})
    assert too_many.status_code == 400


def test_content_parts_and_unknown_fields(http: httpx.Client, tiny: str) -> None:
    parts = [{"type": "text", "text": "hello"}, {"type": "text", "text": "world"}]
    body = {
        "model": tiny,
        "max_tokens": 2,
        "n": 1,
        "user": "me",
        "logit_bias": {},
        "some_future_field": {"x": 1},
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": parts},
        ],
    }
    assert http.post("/v1/chat/completions", json=body).status_code == 200
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    body["messages"] = [{"role": "user", "content": [image]}]
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert "image URLs are not currently supported" in response.json()["error"]["message"]


# -- completions -----------------------------------------------------------------------------------


def test_completions(http: httpx.Client, tiny: str) -> None:
    body = {"model": tiny, "prompt": "Once upon", "max_tokens": 4, "temperature": 0, "seed": 3}
    data = http.post("/v1/completions", json=body).json()
    assert data["id"].startswith("cmpl-") and data["object"] == "text_completion"
    assert data["system_fingerprint"] == "fp_modelrunner"
    (choice,) = data["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 4

    chunks = events(http.post("/v1/completions", json=body | {"stream": True}))
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    usage = body | {"stream": True, "stream_options": {"include_usage": True}}
    last = events(http.post("/v1/completions", json=usage))[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 4

    probs = http.post("/v1/completions", json=body | {"logprobs": 2}).json()
    legacy = probs["choices"][0]["logprobs"]
    assert set(legacy) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert len(legacy["tokens"]) == 4 and all(len(t) <= 2 for t in legacy["top_logprobs"])

    suffix = http.post("/v1/completions", json=body | {"suffix": "The end."})
    assert suffix.status_code == 400
    assert suffix.json()["error"]["message"] == '"tiny:latest" does not support insert'


# -- embeddings ------------------------------------------------------------------------------------


def test_embeddings_float_base64_and_dimensions(http: httpx.Client, tiny: str) -> None:
    data = http.post("/v1/embeddings", json={"model": tiny, "input": ["hello", "world"]}).json()
    assert data["object"] == "list" and data["model"] == "tiny"
    assert [d["index"] for d in data["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in data["data"])
    vectors = [d["embedding"] for d in data["data"]]
    assert len(vectors[0]) == 64 and vectors[0] != vectors[1]
    for vector in vectors:
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-6)
    assert data["usage"]["prompt_tokens"] > 0
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"]

    body = {"model": tiny, "input": "hello", "encoding_format": "base64"}
    encoded = http.post("/v1/embeddings", json=body).json()["data"][0]["embedding"]
    raw = base64.b64decode(encoded)
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert decoded == pytest.approx(vectors[0], rel=1e-5, abs=1e-6)

    cut = http.post("/v1/embeddings", json={"model": tiny, "input": "hello", "dimensions": 8})
    short = cut.json()["data"][0]["embedding"]
    assert len(short) == 8 and math.isclose(sum(v * v for v in short), 1.0, rel_tol=1e-6)

    empty = http.post("/v1/embeddings", json={"model": tiny, "input": ""}).json()
    assert len(empty["data"]) == 1 and len(empty["data"][0]["embedding"]) == 64


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (
            "/v1/chat/completions",
            {"model": "nope", "messages": USER},
            404,
            'model "nope" not found',
        ),
        ("/v1/completions", {"model": "nope", "prompt": "x"}, 404, 'model "nope" not found'),
        ("/v1/embeddings", {"model": "nope", "input": "x"}, 404, 'model "nope" not found'),
        (
            "/engines/v1/chat/completions",
            {"model": "ai/nope", "messages": USER},
            404,
            'model "ai/nope" not found',
        ),
        (
            "/v1/chat/completions",
            {"model": "bad//name:", "messages": USER},
            404,
            'model "bad//name:" not found',
        ),
        (
            "/v1/chat/completions",
            {"model": "tiny", "messages": []},
            400,
            "[] is too short - 'messages'",
        ),
        ("/v1/chat/completions", {"model": "tiny"}, 400, "[] is too short - 'messages'"),
        ("/v1/chat/completions", {"messages": USER}, 400, "model is required"),
        ("/v1/chat/completions", {"model": "tiny", "messages": "hi"}, 400, None),
        (
            "/v1/chat/completions",
            {"model": "tiny", "messages": USER, "temperature": "hot"},
            400,
            None,
        ),
        ("/v1/chat/completions", {"model": "tiny", "messages": USER, "stream": "yes"}, 400, None),
        ("/v1/chat/completions", {"model": "tiny", "messages": [{"content": "x"}]}, 400, None),
        (
            "/v1/chat/completions",
            {"model": "tiny", "messages": USER, "response_format": {"type": "xml"}},
            400,
            None,
        ),
        (
            "/v1/chat/completions",
            {"model": "tiny", "messages": USER, "reasoning_effort": "huge"},
            400,
            None,
        ),
        ("/v1/completions", {"model": "tiny", "prompt": ["a", 2]}, 400, None),
        ("/v1/embeddings", {"model": "tiny", "input": []}, 400, "invalid input"),
        ("/v1/embeddings", {"model": "tiny", "input": [1, 2, 3]}, 400, "invalid input"),
        ("/v1/embeddings", {"model": "tiny"}, 400, "invalid input"),
        ("/v1/embeddings", {"model": "tiny", "input": "x", "encoding_format": "hex"}, 400, None),
        ("/v1/embeddings", {"model": "tiny", "input": "x", "dimensions": 0}, 400, None),
    ],
)
def test_errors_have_openai_shape_and_change_nothing(
    shared: httpx.Client, path: str, body: dict[str, Any], status: int, message: str | None
) -> None:
    http = shared
    before = tags(http)
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    assert error["param"] is None and error["code"] is None
    if message is not None:
        assert error["message"] == message
    assert tags(http) == before


def test_bad_json_and_non_object_bodies(shared: httpx.Client) -> None:
    http = shared
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        for content in (b"{not json", b"", b"[1, 2]"):
            response = http.post(
                path, content=content, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, (path, content)
            assert response.json()["error"]["type"] == "invalid_request_error"


# -- DMR: X-Preload-Only and the docs' curl examples -----------------------------------------------


def test_preload_only_loads_the_model(http: httpx.Client, smollm2: str) -> None:
    assert http.get("/engines/ps").json() == []
    response = http.post(
        "/engines/v1/chat/completions", json={"model": smollm2}, headers={"X-Preload-Only": "true"}
    )
    assert response.status_code == 200 and response.content == b""
    (runner,) = http.get("/engines/ps").json()
    assert runner["model_name"] == "docker.io/ai/smollm2:latest"
    assert runner["mode"] == "completion"


def test_docker_docs_curl_examples(runner: LiveServer, http: httpx.Client, smollm2: str) -> None:
    # https://docs.docker.com/ai/model-runner/api-reference/ (from the host, TCP), verbatim body.
    body = json.dumps(
        {
            "model": "ai/smollm2",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Please write 500 words about the fall of Rome."},
            ],
        }
    )
    for path in ("/engines/llama.cpp/v1/chat/completions", "/engines/v1/chat/completions"):
        proc = subprocess.run(
            [
                "curl",
                "-sS",
                "--fail-with-body",
                runner.url + path,
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr + proc.stdout
        data = json.loads(proc.stdout)
        assert data["object"] == "chat.completion" and data["model"] == "ai/smollm2"
        assert data["choices"][0]["message"]["role"] == "assistant"
        assert data["choices"][0]["finish_reason"] in ("stop", "length")
    desktop = http.post(
        "/exp/vDD4.40/engines/v1/chat/completions", json=json.loads(body) | {"max_tokens": 2}
    )
    assert desktop.status_code == 200


# -- the official openai client --------------------------------------------------------------------


def test_official_openai_client(runner: LiveServer, smollm2: str) -> None:
    client = openai.OpenAI(base_url=runner.url + "/v1", api_key="x", max_retries=0)
    assert {m.id for m in client.models.list()} == {"tiny:latest", "docker.io/ai/smollm2:latest"}
    assert client.models.retrieve("tiny").owned_by == "library"

    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0
    )
    assert (
        reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "length"
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 3

    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
    )
    parts = list(stream)
    assert parts[0].choices[0].delta.role == "assistant"
    assert parts[-2].choices[0].finish_reason == "length"
    assert parts[-1].usage is not None and parts[-1].usage.completion_tokens == 3

    done = client.completions.create(model="tiny", prompt="Once", max_tokens=2, temperature=0)
    assert done.object == "text_completion" and done.choices[0].finish_reason == "length"

    embedded = client.embeddings.create(model="tiny", input=["a", "b"])  # base64 on the wire
    assert len(embedded.data) == 2 and len(embedded.data[0].embedding) == 64
    floats = client.embeddings.create(model="tiny", input="a", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(embedded.data[0].embedding, rel=1e-5, abs=1e-6)

    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    assert (
        isinstance(info.value.body, dict)
        and info.value.body["message"] == 'model "missing" not found'
    )

    dmr = openai.OpenAI(base_url=runner.url + "/engines/v1", api_key="x", max_retries=0)
    assert [m.id for m in dmr.models.list()] == ["docker.io/ai/smollm2:latest"]
    answer = dmr.chat.completions.create(
        model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert answer.model == "ai/smollm2"


def test_official_client_tool_calls(
    runner: LiveServer, http: httpx.Client, tiny_gguf: Path
) -> None:
    upload_and_create(http, tiny_gguf, "tooly", template=TOOLS_TEMPLATE)
    client = openai.OpenAI(base_url=runner.url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model="tooly",
        messages=[{"role": "user", "content": "Weather?"}],
        max_tokens=80,
        tools=TOOLS,
        response_format=schema_format(CALL_SCHEMA),
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    function = call.function
    assert function.name == "get_weather" and "city" in json.loads(function.arguments)


# -- pure converters -------------------------------------------------------------------------------


def chat_body(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": USER} | fields)


def test_sampling_defaults_override_the_modelfile() -> None:
    req = convert.chat_request(chat_body(), Dialect.OLLAMA)
    assert req.options == {"temperature": 1.0, "top_p": 1.0}
    assert req.api == "openai" and req.format is None and req.think is None
    req = convert.chat_request(
        chat_body(
            temperature=0,
            top_p=0.5,
            stop="x",
            seed=4,
            max_tokens=9,
            max_completion_tokens=5,
            frequency_penalty=0.1,
            presence_penalty=0.2,
        ),
        Dialect.DMR,
    )
    assert req.dialect is Dialect.DMR
    assert req.options == {
        "temperature": 0.0,
        "top_p": 0.5,
        "stop": ["x"],
        "seed": 4,
        "num_predict": 5,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
    }
    body = CompletionRequest.model_validate(
        {"model": "m", "prompt": "p", "stop": ["a", "b"], "max_tokens": 3, "logprobs": 2}
    )
    req = convert.completion_request(body, Dialect.OLLAMA)
    assert req.prompt == "p" and req.messages is None and req.top_logprobs == 2 and req.logprobs
    assert req.options["stop"] == ["a", "b"] and req.options["num_predict"] == 3


def test_response_format_and_reasoning_effort() -> None:
    assert (
        convert.chat_request(chat_body(response_format={"type": "text"}), Dialect.OLLAMA).format
        is None
    )
    assert (
        convert.chat_request(
            chat_body(response_format={"type": "json_object"}), Dialect.OLLAMA
        ).format
        == "json"
    )
    schema = {"type": "object"}
    fmt = convert.chat_request(chat_body(response_format=schema_format(schema)), Dialect.OLLAMA)
    assert fmt.format == schema
    with pytest.raises(InvalidRequest):
        convert.chat_request(chat_body(response_format={"type": "json_schema"}), Dialect.OLLAMA)
    efforts = {"none": False, "minimal": "low", "high": "high", "xhigh": "max"}
    for effort, think in efforts.items():
        assert convert.think_level(chat_body(reasoning_effort=effort)) == think
    assert convert.think_level(chat_body(reasoning={"effort": "low"})) == "low"


def test_messages_convert_to_core_messages() -> None:
    png = base64.b64encode(b"\x89PNG").decode()
    messages, images = convert.chat_messages(
        chat_body(
            messages=[
                {"role": "developer", "content": "Rules."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "text", "text": "b"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "reasoning": "hmm",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"x": 1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            ]
        ).messages
    )
    assert messages == [
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": "a\nb", "images": [png]},
        {
            "role": "assistant",
            "content": "",
            "thinking": "hmm",
            "tool_calls": [
                {"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}}
            ],
        },
        {"role": "tool", "content": "42", "tool_name": "f", "tool_call_id": "call_1"},
    ]
    assert images == [png]
    bad_args = [
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}
    ]
    for bad in ([], bad_args, [{"role": "user", "content": [{"type": "input_audio"}]}]):
        with pytest.raises(InvalidRequest):
            convert.chat_messages(chat_body(messages=bad).messages if bad else [])


def test_chat_stream_renderer() -> None:
    renderer = replies.ChatStream(replies.Meta("chatcmpl-1", 5, "m", include_usage=True))
    out = renderer.start()
    out += renderer.feed(Chunk(thinking="Let me see.", content="Hi"))
    out += renderer.feed(Chunk(tool_calls=[ToolCall("f", {"a": 1}, id="call_a")]))
    out += renderer.feed(Chunk(tool_calls=[ToolCall("g", {}, id="call_b")]))
    final = Chunk(done=True, done_reason="stop", timings=Timings(prompt_eval_count=3, eval_count=4))
    out += renderer.feed(final)
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in out]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning": "Let me see."},
        {"content": "Hi"},
        {
            "tool_calls": [
                {
                    "id": "call_a",
                    "index": 0,
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 1}'},
                }
            ]
        },
        {
            "tool_calls": [
                {
                    "id": "call_b",
                    "index": 1,
                    "type": "function",
                    "function": {"name": "g", "arguments": "{}"},
                }
            ]
        },
        {},
        None,
    ]
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert out[-1]["usage"]["total_tokens"] == 7 and out[-1]["choices"] == []


def test_chat_completion_object_carries_reasoning() -> None:
    final = Chunk(content="4", thinking="2+2", done=True, done_reason="length", timings=Timings())
    data = replies.chat_completion(replies.Meta("chatcmpl-2", 1, "m"), final)
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": "4",
        "reasoning": "2+2",
    }
    assert data["choices"][0]["finish_reason"] == "length"


def test_embedding_encoding_and_dimensions() -> None:
    data = replies.embeddings("m", [[3.0, 4.0, 12.0]], 2, "float", None)
    assert data["data"][0]["embedding"] == pytest.approx([3 / 13, 4 / 13, 12 / 13])
    assert replies.embeddings("m", [[3.0, 4.0, 12.0]], 2, "float", 2)["data"][0]["embedding"] == (
        pytest.approx([0.6, 0.8])
    )
    encoded = replies.encode_vector([1.0, -2.5], "base64")
    assert isinstance(encoded, str) and base64.b64decode(encoded) == struct.pack("<2f", 1.0, -2.5)
    assert convert.embedding_inputs("") == [""]
    with pytest.raises(InvalidRequest):
        convert.embedding_inputs([])


# -- the real Gemma 3 270M -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A runner whose store holds Gemma 3 270M (with its Modelfile template) as gemma3:270m."""
    root = tmp_path_factory.mktemp("gemma-openai") / "models"
    ensure_default_model(ModelStore(root), "gemma3:270m")
    server = LiveServer(create_app(Settings(models=root, listen=[], prune=False))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_gemma_json_schema_answer_validates(gemma: LiveServer) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    client = openai.OpenAI(base_url=gemma.url + "/v1", api_key="x", max_retries=0)
    messages: Any = [{"role": "user", "content": "Describe a person as JSON."}]
    reply = client.chat.completions.create(
        model="gemma3:270m",
        messages=messages,
        max_tokens=40,
        temperature=0,
        response_format=schema_format(schema),
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


@pytest.mark.slow
def test_gemma_chat_completions_and_embeddings(gemma: LiveServer) -> None:
    client = openai.OpenAI(base_url=gemma.url + "/v1", api_key="x", max_retries=0)
    messages: Any = [{"role": "user", "content": "Say hello to Rome."}]
    reply = client.chat.completions.create(
        model="gemma3:270m",
        messages=messages,
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].message.content and reply.usage is not None
    assert reply.usage.prompt_tokens > 5
    parts = list(
        client.chat.completions.create(
            model="gemma3:270m",
            messages=messages,
            max_tokens=8,
            temperature=0,
            stream=True,
        )
    )
    assert "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
    done = client.completions.create(
        model="gemma3:270m", prompt="The capital of Italy is", max_tokens=4, temperature=0
    )
    assert done.choices[0].text
    vectors = client.embeddings.create(model="gemma3:270m", input=["cat", "dog"]).data
    assert len(vectors) == 2 and len(vectors[0].embedding) == 640
