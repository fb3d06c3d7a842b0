"""Tokens per minute per API key at the gateway: counted from what the runner answers in each
dialect (streamed or not), the same counts as the runner's own, and a key whose tokens of the last
minute reached its ``tpm=`` gets 429 in the caller's dialect with Retry-After; another key is not
affected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.gateway.procs import Proc, metric, start_gateway

HI = [{"role": "user", "content": "hi"}]
# (path, body) in every dialect the gateway counts tokens for, streamed and not.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/api/generate", {"prompt": "the", "raw": True, "stream": False, "options": {"num_predict": 2}}),
    ("/api/chat", {"messages": HI, "options": {"num_predict": 2}}),  # NDJSON stream
    ("/api/embed", {"input": ["the world", "a"]}),
    ("/v1/chat/completions",
     {"messages": HI, "max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}}),
    ("/engines/llama.cpp/v1/completions", {"prompt": "the", "max_tokens": 2}),
    ("/v1/embeddings", {"input": "the world"}),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 2, "stream": True}),
    ("/v1/messages", {"messages": HI, "max_tokens": 2, "stream": True}),
    ("/anthropic/v1/messages", {"messages": HI, "max_tokens": 2}),
]  # fmt: skip
LIMIT = 400  # tokens per minute: every request above fits in it once


def runner_tokens(runner: Proc) -> tuple[float, float]:
    return (
        metric(runner.url, "modelrunner_prompt_tokens_total"),
        metric(runner.url, "modelrunner_generated_tokens_total"),
    )


def key_tokens(gateway: Proc, key: str) -> tuple[float, float]:
    return (
        metric(gateway.url, "modelrunner_key_tokens_total", key=key, kind="prompt"),
        metric(gateway.url, "modelrunner_key_tokens_total", key=key, kind="generated"),
    )


def refused(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    return retry_after


def test_a_key_over_its_tokens_per_minute_is_refused_in_each_dialect(
    tmp_path: Path, pair: list[Proc]
) -> None:
    runner = pair[0]  # the gateway's only backend: its token counters count these requests only
    keys = tmp_path / "keys"
    keys.write_text(f"alice:key-alice tpm={LIMIT}\nbob:key-bob tpm={LIMIT}\ncarol:key-carol\n")
    gateway = start_gateway(tmp_path, "--backend", runner.url, "--api-keys-file", str(keys))
    alice = {"Authorization": "Bearer key-alice"}
    try:
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            start = runner_tokens(runner)
            served = 0
            for i in range(40):  # bounded: the limit is reached well before
                path, body = REQUESTS[i % len(REQUESTS)]
                spent = key_tokens(gateway, "alice")
                response = http.post(path, json={"model": "alpha", **body}, headers=alice)
                if sum(spent) >= LIMIT:
                    refused(response)
                    break
                assert response.status_code == 200, (path, response.text)
                served += 1
                # The key is charged what the runner counted for the request, by the time the
                # answer has ended (the runner records its counts before it ends the answer too).
                now = runner_tokens(runner)
                assert key_tokens(gateway, "alice") == (now[0] - start[0], now[1] - start[1]), path
            assert served >= len(REQUESTS)  # every dialect was counted before the limit
            prompt, generated = key_tokens(gateway, "alice")
            assert prompt > 0 and generated > 0 and prompt + generated >= LIMIT

            # Refused in every dialect's own shape, with Retry-After.
            chat = {"model": "alpha", "messages": HI, "max_tokens": 2}
            response = http.post("/api/chat", json=chat | {"stream": False}, headers=alice)
            refused(response)
            assert response.json() == {"error": f"rate limit of {LIMIT} tokens per minute"}
            response = http.post("/engines/v1/chat/completions", json=chat, headers=alice)
            refused(response)
            assert response.json()["error"]["code"] == "rate_limit_exceeded"
            response = http.post("/v1/messages", json=chat, headers={"x-api-key": "key-alice"})
            refused(response)
            assert response.json()["error"]["type"] == "rate_limit_error"
            assert metric(
                gateway.url, "modelrunner_key_requests_total", key="alice", outcome="rate_limited"
            ) == 4  # fmt: skip

            # Another key has its own budget; a key without tpm= is not limited by tokens. An
            # OpenAI stream without include_usage is charged one token per content chunk.
            bob = {"Authorization": "Bearer key-bob"}
            stream = chat | {"stream": True, "max_tokens": 3}
            response = http.post("/v1/chat/completions", json=stream, headers=bob)
            assert response.status_code == 200 and "data: [DONE]" in response.text
            chunks = response.text.count('"content":"') - response.text.count('"content":""')
            assert key_tokens(gateway, "bob") == (0, chunks)
            carol = {"Authorization": "Bearer key-carol"}
            for _ in range(3):
                response = http.post("/v1/messages", json=chat, headers=carol)
                assert response.status_code == 200, response.text
            assert sum(key_tokens(gateway, "carol")) > 0
    finally:
        gateway.stop()
