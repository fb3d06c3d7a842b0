"""Ollama inference routes with the real Gemma 3 270M model over real HTTP."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import httpx
import jsonschema
import ollama
import pytest

from tests.support.server import LiveServer

pytestmark = pytest.mark.slow
MODEL = "gemma3:270m"
FAST = {"num_predict": 8, "temperature": 0}
METRICS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
           "eval_count", "eval_duration")  # fmt: skip


@pytest.fixture(scope="module")
def api(gemma_runner: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gemma_runner.url, timeout=120) as client:
        yield client


def lines(response: httpx.Response) -> list[dict[str, object]]:
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def test_generate_streams_ndjson_with_final_metrics(api: httpx.Client) -> None:
    chunks = lines(
        api.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "options": FAST})
    )
    assert len(chunks) >= 2
    assert all(c["done"] is False and c["model"] == MODEL for c in chunks[:-1])
    final = chunks[-1]
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    assert final["response"] == ""
    for key in METRICS:
        assert isinstance(final[key], int), key
    assert final["eval_count"] <= 8 and final["prompt_eval_count"] > 0
    assert isinstance(final["context"], list) and len(final["context"]) > final["prompt_eval_count"]


def test_generate_non_streaming_and_num_predict(api: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": "Count: 1, 2, 3,", "stream": False, "options": FAST}
    response = api.post("/api/generate", json=body)
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    assert data["done"] is True and data["response"]
    assert data["eval_count"] == 8 and data["done_reason"] == "length"


def test_stop_sequence_cuts_the_output(api: httpx.Client) -> None:
    base = {"model": MODEL, "prompt": "Count: 1, 2, 3,", "stream": False}
    full = api.post("/api/generate", json=base | {"options": {**FAST, "num_predict": 12}}).json()
    text = full["response"]
    assert len(text) >= 6
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    stopped = api.post(
        "/api/generate", json=base | {"options": {**FAST, "num_predict": 12, "stop": [stop]}}
    ).json()
    assert stopped["response"] == text[: text.find(stop)]
    assert stopped["done_reason"] == "stop"


def test_chat_stream_and_non_stream(api: httpx.Client) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    chunks = lines(
        api.post("/api/chat", json={"model": MODEL, "messages": messages, "options": FAST})
    )
    assert all(c["message"]["role"] == "assistant" for c in chunks)
    assert chunks[-1]["done"] and chunks[-1]["message"]["content"] == ""
    assert "context" not in chunks[-1]
    streamed = "".join(str(c["message"]["content"]) for c in chunks)
    whole = api.post(
        "/api/chat", json={"model": MODEL, "messages": messages, "options": FAST, "stream": False}
    ).json()
    # Equal text is not expected: a reused prompt cache changes the batch split of the prompt,
    # which moves near-tied logits of this base model. Shapes and counts must match.
    assert streamed and whole["message"]["content"]
    assert whole["eval_count"] == chunks[-1]["eval_count"]


def test_json_schema_format_is_enforced(api: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    body = {"model": MODEL, "prompt": "Describe a person as JSON.", "format": schema,
            "stream": False, "options": {"num_predict": 60, "temperature": 0}}  # fmt: skip
    data = api.post("/api/generate", json=body).json()
    jsonschema.validate(json.loads(data["response"]), schema)
    # "json" only constrains the syntax; this base model rambles until num_predict, so check
    # that the grammar took hold (the free answer is not JSON) and that a finished answer parses.
    body["format"] = "json"
    constrained = api.post("/api/generate", json=body).json()
    assert constrained["response"].lstrip()[0] in "{["
    if constrained["done_reason"] == "stop":
        json.loads(constrained["response"])
    free = api.post("/api/generate", json={**body, "format": None}).json()
    assert free["response"].lstrip()[:1] not in ("{", "[")


def test_embed_is_normalised_and_embeddings_raw(api: httpx.Client) -> None:
    data = api.post("/api/embed", json={"model": MODEL, "input": ["hello", "world"]}).json()
    assert len(data["embeddings"]) == 2 and data["prompt_eval_count"] > 0
    for vector in data["embeddings"]:
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-6)
    raw = api.post("/api/embeddings", json={"model": MODEL, "prompt": "hello"}).json()["embedding"]
    assert len(raw) == len(data["embeddings"][0])
    assert not math.isclose(math.sqrt(sum(v * v for v in raw)), 1.0, rel_tol=1e-3)
    cut = api.post("/api/embed", json={"model": MODEL, "input": "hello", "dimensions": 16}).json()
    assert len(cut["embeddings"][0]) == 16
    empty = api.post("/api/embed", json={"model": MODEL, "input": []}).json()
    assert empty["embeddings"] == []


def test_empty_prompt_loads_and_keep_alive_zero_unloads(api: httpx.Client) -> None:
    loaded = api.post("/api/generate", json={"model": MODEL}).json()
    assert loaded["done_reason"] == "load" and loaded["response"] == ""
    (entry,) = [m for m in api.get("/api/ps").json()["models"] if m["name"] == MODEL]
    assert set(entry) == {"name", "model", "size", "digest", "details", "expires_at",
                          "size_vram", "context_length"}  # fmt: skip
    assert entry["context_length"] == 4096
    unloaded = api.post("/api/chat", json={"model": MODEL, "messages": [], "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload"
    assert unloaded["message"] == {"role": "assistant", "content": ""}
    assert api.get("/api/ps").json() == {"models": []}


def test_logprobs(api: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": "Hi", "stream": False, "logprobs": True, "top_logprobs": 2,
            "options": {"num_predict": 3, "temperature": 0}}  # fmt: skip
    data = api.post("/api/generate", json=body).json()
    assert len(data["logprobs"]) == 3
    first = data["logprobs"][0]
    assert first["logprob"] <= 0 and len(first["top_logprobs"]) == 2
    assert first["top_logprobs"][0]["logprob"] >= first["top_logprobs"][1]["logprob"]
    body["top_logprobs"] = 21
    response = api.post("/api/generate", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "top_logprobs must be between 0 and 20"


@pytest.mark.parametrize(
    ("route", "body", "status", "error"),
    [
        (
            "/api/generate",
            {"prompt": "x", "think": True},
            400,
            '"gemma3:270m" does not support thinking',
        ),
        (
            "/api/chat",
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            400,
            "registry.ollama.ai/library/gemma3:270m does not support tools",
        ),
        (
            "/api/generate",
            {"prompt": "x", "images": ["aGk="]},
            400,
            "Multimodal data provided, but model does not support multimodal requests.",
        ),
        (
            "/api/generate",
            {"prompt": "x", "suffix": "y"},
            400,
            '"gemma3:270m" does not support insert',
        ),
        (
            "/api/generate",
            {"prompt": "x", "raw": True, "system": "s"},
            400,
            "raw mode does not support template, system, or context",
        ),
        ("/api/generate", {"prompt": "x", "format": "xml"}, 400, 'invalid format: "xml"'),
        (
            "/api/generate",
            {"prompt": "x", "keep_alive": "300"},
            400,
            'time: missing unit in duration "300"',
        ),
        (
            "/api/generate",
            {"prompt": "x", "options": {"temperature": "hot"}},
            400,
            'option "temperature" must be of type float',
        ),
        ("/api/generate", {"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
        ("/api/chat", {"model": "", "messages": []}, 400, "model is required"),
        ("/api/embed", {"input": 5}, 400, "invalid input type"),
    ],
)
def test_unsupported_and_invalid_requests(
    api: httpx.Client, route: str, body: dict[str, object], status: int, error: str
) -> None:
    response = api.post(route, json={"model": MODEL, **body})
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


def test_official_ollama_client(gemma_runner: LiveServer) -> None:
    client = ollama.Client(host=gemma_runner.url)
    generated = client.generate(model=MODEL, prompt="Hello", options=FAST)
    assert generated.done and generated.response and generated.eval_count
    parts = list(client.generate(model=MODEL, prompt="Hello", options=FAST, stream=True))
    assert parts[-1].done and "".join(p.response for p in parts)
    reply = client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], options=FAST)
    assert reply.message.role == "assistant" and reply.message.content
    stream = list(
        client.chat(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], options=FAST, stream=True
        )
    )
    assert stream[-1].done and "".join(p.message.content or "" for p in stream)
    embedded = client.embed(model=MODEL, input=["a", "b"])
    assert len(embedded.embeddings) == 2
    running = client.ps()
    assert [m.model for m in running.models] == [MODEL]
    assert running.models[0].expires_at is not None
