"""The official ollama, openai and anthropic clients through the gateway, streaming and not."""

from __future__ import annotations

import anthropic
import ollama
import openai
import pytest

from tests.gateway.procs import Proc

HI = [{"role": "user", "content": "hi"}]


def test_ollama_client(gateway: Proc) -> None:
    client = ollama.Client(host=gateway.url)
    names = {m.model for m in client.list().models}
    assert {"alpha:latest", "beta:latest", "shared:latest"} <= names
    answer = client.chat(model="alpha", messages=HI, options={"num_predict": 3})
    assert answer.done and answer.message.role == "assistant"
    parts = list(client.generate(model="beta", prompt="x", stream=True, options={"num_predict": 5}))
    assert parts[-1].done and parts[-1].eval_count == 5
    assert len(client.embed(model="alpha", input=["a", "b"]).embeddings) == 2
    assert client.show("beta").details.family == "llama"
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="nope", messages=HI)
    assert missing.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as refused:
        client.pull("alpha")
    assert refused.value.status_code == 403


def test_openai_client(gateway: Proc) -> None:
    for base in ("/v1", "/engines/v1", "/engines/llama.cpp/v1"):
        client = openai.OpenAI(base_url=gateway.url + base, api_key="unused", max_retries=0)
        ids = {m.id for m in client.models.list()}
        assert len(ids) == 3
        stream = client.chat.completions.create(
            model="beta",
            messages=HI,
            max_tokens=4,
            stream=True,  # type: ignore[arg-type]
        )
        chunks = list(stream)
        assert chunks[-1].choices[0].finish_reason == "length" or chunks[-1].choices == []
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    # Responses live on the instance that made them: the gateway pins their ids there. Six
    # conversations on the model both runners hold, so both instances store some.
    for i in range(6):
        response = client.responses.create(model="shared", input=f"x{i}", max_output_tokens=2)
        assert client.responses.retrieve(response.id).id == response.id
        follow = client.responses.create(
            model="shared", input="y", max_output_tokens=2, previous_response_id=response.id
        )
        assert follow.previous_response_id == response.id
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HI)  # type: ignore[arg-type]


def test_anthropic_client(gateway: Proc) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)
    message = client.messages.create(model="alpha", max_tokens=3, messages=HI)  # type: ignore[arg-type]
    assert message.role == "assistant" and message.usage.output_tokens > 0
    with client.messages.stream(model="beta", max_tokens=4, messages=HI) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.stop_reason in ("max_tokens", "end_turn")
    count = client.messages.count_tokens(model="alpha", messages=HI)  # type: ignore[arg-type]
    assert count.input_tokens > 0
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=3, messages=HI)  # type: ignore[arg-type]
