"""Parallel slots over real HTTP: the batched engine behind every dialect, with the tiny model.

Flash attention is off (``flash_attention=False``) so the tiny F32 model gives the same logits
whatever the batch shape; a greedy answer can then be compared with the same request run alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import upload_and_create
from tests.runner.test_batching import PROMPTS
from tests.support.server import LiveServer

MODEL = "tiny"
GREEDY = {"temperature": 0, "num_predict": 200}
# Greedy decoding of the tiny model runs on for thousands of tokens without an end token.
ENDLESS = {"temperature": 0, "num_predict": 6000}


@pytest.fixture
def start(make_runner: Callable[..., LiveServer], tiny_gguf: Path) -> Callable[[int], LiveServer]:
    def starter(parallel: int) -> LiveServer:
        server = make_runner(num_parallel=parallel, flash_attention=False)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            upload_and_create(client, tiny_gguf, MODEL, parameters={"num_ctx": 8192})
        return server

    return starter


@contextlib.asynccontextmanager
async def client_for(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        yield client


async def ollama_generate(client: httpx.AsyncClient, prompt: str, **extra: Any) -> dict[str, Any]:
    """Stream /api/generate (raw prompt); the final chunk with ``response`` the whole text."""
    body = {"model": MODEL, "prompt": prompt, "raw": True, "options": GREEDY, **extra}
    text = ""
    async with client.stream("POST", "/api/generate", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            chunk = json.loads(line)
            text += chunk.get("response", "")
            if chunk["done"]:
                return {**chunk, "response": text}
    raise AssertionError("the stream ended without a done chunk")


async def openai_complete(client: httpx.AsyncClient, prompt: str, **extra: Any) -> dict[str, Any]:
    """Stream /v1/completions; the usage chunk with ``text`` the whole text."""
    body = {
        "model": MODEL, "prompt": prompt, "temperature": 0, "max_tokens": 200, "stream": True,
        "stream_options": {"include_usage": True}, **extra,
    }  # fmt: skip
    text = ""
    final: dict[str, Any] = {}
    async with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"]:
                text += chunk["choices"][0]["text"]
            if chunk.get("usage"):
                final = chunk
    assert final, "no usage chunk"
    return {**final, "text": text}


async def metric(client: httpx.AsyncClient, name: str) -> float:
    response = await client.get("/metrics")
    for line in response.text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def wait_for(check: Callable[[], Any]) -> None:
    """Poll ``check`` (a scrape of /metrics: nothing to wait on but time) until it holds."""
    async with asyncio.timeout(20):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


class PeakActive:
    """Scrapes ``modelrunner_active_requests`` in the background; ``stop`` returns its peak."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.peak = 0.0
        self.task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            self.peak = max(self.peak, await metric(self.client, "modelrunner_active_requests"))
            await asyncio.sleep(0.005)

    async def stop(self) -> float:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        return self.peak


async def test_concurrent_requests_of_two_dialects_match_single_runs(start) -> None:  # type: ignore[no-untyped-def]
    server = start(4)
    async with client_for(server) as client:
        alone_ollama = [(await ollama_generate(client, p))["response"] for p in PROMPTS]
        alone_openai = [(await openai_complete(client, p))["text"] for p in PROMPTS]
        assert len(set(alone_ollama)) == len(PROMPTS)  # answers depend on the prompt

        peak = PeakActive(client)
        results = await asyncio.gather(
            *(ollama_generate(client, p) for p in PROMPTS),
            *(openai_complete(client, p) for p in PROMPTS),
        )  # 12 requests, 4 slots
        assert await peak.stop() == 4
        assert await metric(client, "modelrunner_slots") == 4
        together_ollama, together_openai = results[: len(PROMPTS)], results[len(PROMPTS) :]
        for prompt, alone, together in zip(PROMPTS, alone_ollama, together_ollama, strict=True):
            assert together["response"] == alone, prompt
            assert together["eval_count"] > 0 and together["done_reason"] in ("stop", "length")
        for prompt, alone, together in zip(PROMPTS, alone_openai, together_openai, strict=True):
            assert together["text"] == alone, prompt
            assert together["usage"]["completion_tokens"] > 0


async def open_stream(client: httpx.AsyncClient, prompt: str) -> httpx.Response:
    """An endless /api/generate stream, open until ``aclose``; returns once its first token came."""
    body = {"model": MODEL, "prompt": prompt, "raw": True, "options": ENDLESS}
    response = await client.send(
        client.build_request("POST", "/api/generate", json=body), stream=True
    )
    assert response.status_code == 200
    lines = response.aiter_lines()
    assert json.loads(await anext(lines))["done"] is False
    response.extensions["lines"] = lines
    return response


async def test_queue_depth_and_a_disconnect_freeing_its_slot(start) -> None:  # type: ignore[no-untyped-def]
    server = start(2)
    streams: list[httpx.Response] = []
    queued: list[asyncio.Task[httpx.Response]] = []
    async with client_for(server) as client:
        try:
            a = await open_stream(client, "the quick brown fox")
            b = await open_stream(client, "hello world")
            streams += [a, b]
            queued += [asyncio.create_task(open_stream(client, p)) for p in ("a b c", "zzz")]  # fmt: skip
            await wait_for(lambda: _is(client, "modelrunner_queue_depth", 2))
            assert await metric(client, "modelrunner_active_requests") == 2
            assert await metric(client, "modelrunner_slots") == 2

            # A disconnects: a queued request gets the slot while B (started with A) runs on.
            await a.aclose()
            closed = time.monotonic()
            done, _ = await asyncio.wait(queued, timeout=30, return_when="FIRST_COMPLETED")
            assert done, "no queued request started after the disconnect"
            streams += [t.result() for t in done]
            assert time.monotonic() - closed < 10  # far less than A's 6000 tokens
            assert json.loads(await anext(b.extensions["lines"]))["done"] is False
            assert await metric(client, "modelrunner_queue_depth") == 1
            assert await metric(client, "modelrunner_active_requests") == 2
        finally:
            for task in queued:
                task.cancel()
            for response in streams:
                await response.aclose()
        await wait_for(lambda: _is(client, "modelrunner_active_requests", 0))
        assert await metric(client, "modelrunner_queue_depth") == 0


async def _is(client: httpx.AsyncClient, name: str, value: float) -> bool:
    return await metric(client, name) == value


COLOR = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "green", "blue"]}, "size": {"enum": [1, 2, 3]}},
    "required": ["color", "size"],
    "additionalProperties": False,
}


async def test_json_and_free_requests_share_the_batch(start) -> None:  # type: ignore[no-untyped-def]
    server = start(4)
    async with client_for(server) as client:
        alone = [(await ollama_generate(client, p))["response"] for p in PROMPTS[:2]]
        chat = {"model": MODEL, "stream": False, "options": {"temperature": 0.8, "seed": 3}}
        openai_body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "a color please"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "c", "schema": COLOR},
            },
        }
        results = await asyncio.gather(
            ollama_generate(client, PROMPTS[0]),
            client.post("/api/chat", json={**chat, "format": COLOR, "messages": [
                {"role": "user", "content": "pick a color"}]}),
            ollama_generate(client, PROMPTS[1]),
            client.post("/v1/chat/completions", json=openai_body),
        )  # fmt: skip
        assert results[0]["response"] == alone[0] and results[2]["response"] == alone[1]
        answers = [
            results[1].json()["message"]["content"],
            results[3].json()["choices"][0]["message"]["content"],
        ]
        for answer in answers:
            value = json.loads(answer)
            assert value["color"] in ("red", "green", "blue") and value["size"] in (1, 2, 3)
            assert set(value) == {"color", "size"}


async def test_a_repeated_prefix_comes_from_the_prompt_cache(start) -> None:  # type: ignore[no-untyped-def]
    server = start(2)
    prefix = " ".join(f"word{i}" for i in range(200))  # ~1500 byte-level tokens
    short = {"temperature": 0, "num_predict": 4}
    async with client_for(server) as client:
        cold = await ollama_generate(client, prefix + " first question", options=short)
        other = await ollama_generate(client, "something unrelated", options=short)  # other slot
        counted = cold["prompt_eval_count"] + other["prompt_eval_count"]
        cached_before = await cached_after(client, counted)
        warm = await ollama_generate(client, prefix + " second question", options=short)
        counted += warm["prompt_eval_count"]
        warm_cached = await cached_after(client, counted) - cached_before
        reused = await openai_complete(client, prefix + " third question", max_tokens=4)
        cached_total = await cached_after(client, counted + reused["usage"]["prompt_tokens"])
    assert cold["prompt_eval_count"] > 1400
    # Ollama's answer has no cached-token field; the runner's counter says what the warm request
    # reused (its prompt_eval_duration, a few tokens' worth, is noise on a loaded machine).
    assert warm_cached > 0.95 * warm["prompt_eval_count"]
    usage = reused["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] > 0.95 * usage["prompt_tokens"]
    assert cached_total >= 2 * 1400


async def cached_after(client: httpx.AsyncClient, prompt_tokens: float) -> float:
    """The cached-token counter once the runner has counted ``prompt_tokens`` prompt tokens in
    all (it counts a request as its stream closes, which may be just after the client's read)."""
    await wait_for(lambda: _is(client, "modelrunner_prompt_tokens_total", prompt_tokens))
    return await metric(client, "modelrunner_prompt_cached_tokens_total")


async def test_the_simple_engine_serves_one_request_at_a_time(
    make_runner: Callable[..., LiveServer], tiny_gguf: Path
) -> None:
    server = make_runner(engine="simple", num_parallel=4)
    with httpx.Client(base_url=server.url, timeout=60) as sync:
        upload_and_create(sync, tiny_gguf, MODEL)
    async with client_for(server) as client:
        peak = PeakActive(client)
        results = await asyncio.gather(*(ollama_generate(client, p) for p in PROMPTS[:3]))
        assert await peak.stop() == 1
        assert all(r["eval_count"] > 0 and r["response"] for r in results)
        assert await metric(client, "modelrunner_slots") == 1
        await client.post("/api/generate", json={"model": MODEL, "keep_alive": 0})
        assert "modelrunner_slots{" not in (await client.get("/metrics")).text
