"""OpenAI-route extras over real HTTP with the tiny GGUF: ``n`` choices, list prompts on
``/v1/completions``, ``num_ctx`` per request, and the ``dmr`` block of DMR's model objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import upload_and_create

USER: Any = [{"role": "user", "content": "hello"}]


@pytest.fixture
def tiny(http: httpx.Client, tiny_gguf: Path) -> str:
    upload_and_create(http, tiny_gguf, "tiny")
    return "tiny"


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    blocks = response.text.split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""]
    return [json.loads(b.removeprefix("data: ")) for b in blocks[:-2]]


def test_chat_n_choices_each_its_own_generation(http: httpx.Client, tiny: str) -> None:
    body = {"model": tiny, "messages": USER, "max_tokens": 6, "n": 3, "seed": 7}
    data = http.post("/v1/chat/completions", json=body).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    texts = [c["message"]["content"] for c in data["choices"]]
    assert len(set(texts)) > 1  # separate samples, not one answer copied
    assert all(c["finish_reason"] == "length" for c in data["choices"])
    single = http.post("/v1/chat/completions", json=body | {"n": 1}).json()
    usage = data["usage"]
    # the prompt is counted once, every choice's completion tokens are
    assert usage["prompt_tokens"] == single["usage"]["prompt_tokens"]
    assert usage["completion_tokens"] == 18
    # a fixed seed makes the whole answer reproducible
    again = http.post("/v1/chat/completions", json=body).json()
    assert [c["message"]["content"] for c in again["choices"]] == texts


def test_chat_n_streams_every_choice_with_its_index(http: httpx.Client, tiny: str) -> None:
    body = {
        "model": tiny,
        "messages": USER,
        "max_tokens": 3,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = sse(http.post("/engines/v1/chat/completions", json=body))
    finishes = [
        c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert [f["index"] for f in finishes] == [0, 1]
    *_, last = chunks
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 6
    assert sum(1 for c in chunks if c["choices"] == []) == 1


def test_openai_client_n(http: httpx.Client, runner: Any, tiny: str) -> None:
    client = openai.OpenAI(base_url=f"{runner.url}/v1", api_key="x")
    reply = client.chat.completions.create(model=tiny, messages=USER, max_tokens=2, n=2)
    assert [c.index for c in reply.choices] == [0, 1]


def test_bad_n_is_400(http: httpx.Client, tiny: str) -> None:
    for n in (0, 129):
        response = http.post("/v1/chat/completions", json={"model": tiny, "messages": USER, "n": n})
        assert response.status_code == 400
        assert "invalid n" in response.json()["error"]["message"]


def test_completions_list_prompts_one_choice_each(http: httpx.Client, tiny: str) -> None:
    base = {"model": tiny, "max_tokens": 3, "temperature": 0}
    prompts = ["hello", "the world of", "a"]
    data = http.post("/v1/completions", json=base | {"prompt": prompts}).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    alone = [
        http.post("/v1/completions", json=base | {"prompt": p}).json()["choices"][0]["text"]
        for p in prompts
    ]
    assert [c["text"] for c in data["choices"]] == alone  # greedy: same text per prompt
    prompt_tokens = sum(
        http.post("/v1/completions", json=base | {"prompt": p}).json()["usage"]["prompt_tokens"]
        for p in prompts
    )
    assert data["usage"]["prompt_tokens"] == prompt_tokens


def test_completions_list_prompts_times_n_stream(http: httpx.Client, tiny: str) -> None:
    body = {"model": tiny, "prompt": ["a", "b"], "n": 2, "max_tokens": 2, "stream": True}
    chunks = sse(http.post("/v1/completions", json=body))
    indexes = [c["choices"][0]["index"] for c in chunks if c["choices"][0]["finish_reason"]]
    assert indexes == [0, 1, 2, 3]


@pytest.mark.parametrize("prompt", [[], ["a", 1], [[1, 2]]])
def test_bad_prompt_lists_are_400(http: httpx.Client, tiny: str, prompt: Any) -> None:
    response = http.post("/v1/completions", json={"model": tiny, "prompt": prompt})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_num_ctx_sets_the_context_of_that_request(http: httpx.Client, tiny: str) -> None:
    long_prompt = "hello " * 60
    ok = {"model": tiny, "prompt": long_prompt, "max_tokens": 1}
    assert http.post("/v1/completions", json=ok).status_code == 200
    assert http.get("/api/ps").json()["models"][0]["context_length"] == 512
    for extra in ({"num_ctx": 256}, {"options": {"num_ctx": 256}}):
        response = http.post("/v1/completions", json=ok | extra)
        assert response.status_code == 400, response.text
        assert "exceeds the context length (256)" in response.json()["error"]["message"]
    chat = {"model": tiny, "messages": USER, "max_tokens": 1, "num_ctx": 256}
    assert http.post("/engines/v1/chat/completions", json=chat).status_code == 200
    assert http.get("/api/ps").json()["models"][0]["context_length"] == 256
    bad = http.post("/v1/completions", json=ok | {"num_ctx": 0})
    assert bad.status_code == 400 and "num_ctx" in bad.json()["error"]["message"]


def test_dmr_block_in_engines_model_objects(http: httpx.Client, tiny: str) -> None:
    (model,) = http.get("/engines/v1/models").json()["data"]
    assert model["dmr"] == {
        "context_window": 512,
        "architecture": "llama",
        "parameters": model["dmr"]["parameters"],
        "quantization": "F32",
        "size": model["dmr"]["size"],
    }
    assert model["dmr"]["size"].endswith("KiB")
    (native,) = http.get("/models").json()
    assert model["dmr"]["size"] == native["config"]["size"]
    assert model["dmr"]["parameters"] == native["config"]["parameters"]
    assert http.get(f"/engines/v1/models/{model['id']}").json() == model
    assert "dmr" not in http.get("/v1/models").json()["data"][0]  # Ollama's shape stays
