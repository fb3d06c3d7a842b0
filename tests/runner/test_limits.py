"""Per-key limits (429 with Retry-After in each dialect) and bounded input: every refusal is a 4xx
in the caller's dialect and leaves the store as it was."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import sha256_file, upload_and_create
from tests.runner.test_auth import assert_dialect_error
from tests.runner.test_bad_input import snapshot

KEY = "sk-limits-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
HI = [{"role": "user", "content": "hi"}]


def keyed(make_runner: Any, tiny_gguf: Path, **limits: Any) -> httpx.Client:
    server = make_runner(api_keys=[f"team:{KEY}"], **limits)
    client = httpx.Client(base_url=server.url, headers=AUTH, timeout=60)
    upload_and_create(client, tiny_gguf, "tiny")
    return client


def test_requests_per_minute_429_with_retry_after(make_runner: Any, tiny_gguf: Path) -> None:
    http = keyed(make_runner, tiny_gguf, key_requests_per_minute=3)  # 2 used by the upload
    assert http.get("/api/tags").status_code == 200
    for path, body, dialect in (
        ("/api/tags", None, "ollama"),
        ("/v1/models", None, "openai"),
        ("/v1/messages", {"model": "tiny", "max_tokens": 1, "messages": HI}, "anthropic"),
        ("/models", None, "dmr"),
    ):
        response = http.request("POST" if body else "GET", path, json=body)
        assert "requests per minute" in assert_dialect_error(response, dialect, 429)
        assert 1 <= int(response.headers["retry-after"]) <= 60
    openai_body = http.get("/v1/models").json()["error"]
    assert openai_body["code"] == "rate_limit_exceeded"
    metrics = http.get("/metrics").text  # public: not counted, not refused
    assert 'modelrunner_key_requests_total{key="team",outcome="rate_limited"} 5.0' in metrics
    assert KEY not in metrics


def test_concurrent_requests_per_key(make_runner: Any, tiny_gguf: Path) -> None:
    http = keyed(make_runner, tiny_gguf, key_concurrency=1)
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:  # holds the key's one slot until released
        yield b'{"model": '
        release.wait(30)
        yield b'"tiny"}'

    results: list[int] = []
    holder = threading.Thread(
        target=lambda: results.append(http.post("/api/show", content=slow_body()).status_code)
    )
    holder.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            response = http.get("/api/tags")
            if response.status_code == 429:
                break
            time.sleep(0.05)
        assert "concurrent" in assert_dialect_error(response, "ollama", 429)
        assert response.headers["retry-after"] == "1"
    finally:
        release.set()
        holder.join(30)
    assert results == [200]
    assert http.get("/api/tags").status_code == 200  # the slot came back


def test_limits_per_key_from_the_keys_file(make_runner: Any, tmp_path: Path) -> None:
    """A key's own ``rpm=``/``concurrent=`` override the server-wide settings, and an edit of
    the file applies without a restart; a malformed entry is skipped, the others still work."""
    keys = tmp_path / "keys"
    keys.write_text(f"team:{KEY} rpm=2\nbulk:sk-bulk-0123456789\nbad:sk-bad-0123 rpm=x\n")
    server = make_runner(api_keys_file=keys, key_requests_per_minute=100)
    team = httpx.Client(base_url=server.url, headers=AUTH, timeout=30)
    bulk = httpx.Client(base_url=server.url, headers=bearer("sk-bulk-0123456789"), timeout=30)
    assert [team.get("/api/tags").status_code for _ in range(2)] == [200, 200]
    assert "2 requests per minute" in assert_dialect_error(team.get("/api/tags"), "ollama", 429)
    assert all(bulk.get("/api/tags").status_code == 200 for _ in range(5))  # the default: 100
    assert httpx.get(server.url + "/api/tags", headers=bearer("sk-bad-0123")).status_code == 401
    keys.write_text(f"team:{KEY} rpm=10\nbulk:sk-bulk-0123456789 rpm=0 concurrent=1\n")
    assert team.get("/api/tags").status_code == 200  # the new limit, no restart
    assert all(bulk.get("/api/tags").status_code == 200 for _ in range(3))  # rpm=0: unlimited


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_tokens_per_minute(make_runner: Any, tiny_gguf: Path) -> None:
    http = keyed(make_runner, tiny_gguf, key_tokens_per_minute=5)
    body = {
        "model": "tiny",
        "prompt": "hello there",
        "stream": False,
        "options": {"num_predict": 4},
    }
    first = http.post("/api/generate", json=body)
    assert first.status_code == 200
    assert first.json()["prompt_eval_count"] + first.json()["eval_count"] >= 5
    refused = http.post("/v1/chat/completions", json={"model": "tiny", "messages": HI})
    assert "tokens per minute" in assert_dialect_error(refused, "openai", 429)
    assert int(refused.headers["retry-after"]) >= 1


@pytest.fixture
def bounded(make_runner: Any, tiny_gguf: Path, store_dir: Path) -> Iterator[httpx.Client]:
    server = make_runner(max_body_size=256 * 1024, max_num_ctx=8192, max_num_predict=1000)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        upload_and_create(http, tiny_gguf, "tiny")  # an upload bigger than max_body_size
        assert tiny_gguf.stat().st_size > 256 * 1024
        before = snapshot(store_dir)
        yield http
    assert snapshot(store_dir) == before, "a refused request changed the store"


DEEP = "[" * 20_000 + "]" * 20_000
SHALLOW_BUT_OVER = "[" * 100 + "]" * 100
CHAT = '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], %s}'
DIALECTS = [
    ("/api/chat", '{"model": "tiny", "stream": false, "messages": [{"role": "user", "content": "hi"}], %s}', "ollama"),
    ("/v1/chat/completions", CHAT, "openai"),
    ("/v1/messages", '{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}], %s}', "anthropic"),
    ("/api/create", '{"model": "x", "from": "tiny", %s}', "ollama"),
    ("/models/create", '{"from": "tiny", %s}', "dmr"),
]  # fmt: skip
BAD_JSON = [
    ('"x": ' + DEEP, "nested too deeply"),
    ('"x": ' + SHALLOW_BUT_OVER, "nested deeper than"),
    ('"temperature": NaN', "NaN"),
    ('"temperature": Infinity', "Infinity"),
    ('"temperature": -Infinity', "Infinity"),
    ('"temperature": 1e400', "out of range"),
]


@pytest.mark.parametrize(("path", "template", "dialect"), DIALECTS)
@pytest.mark.parametrize(("fragment", "expected"), BAD_JSON)
def test_malformed_numbers_and_nesting_are_400(
    bounded: httpx.Client, path: str, template: str, dialect: str, fragment: str, expected: str
) -> None:
    body = template % fragment
    response = bounded.post(path, content=body)
    assert expected in assert_dialect_error(response, dialect, 400)


@pytest.mark.parametrize(("path", "template", "dialect"), DIALECTS)
def test_huge_body_is_413(bounded: httpx.Client, path: str, template: str, dialect: str) -> None:
    body = template % ('"pad": "' + "x" * 300_000 + '"')
    declared = bounded.post(path, content=body)
    assert "larger than" in assert_dialect_error(declared, dialect, 413)

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield body.encode()

    streamed = bounded.post(path, content=chunked())
    assert "larger than" in assert_dialect_error(streamed, dialect, 413)


BAD_SCHEMAS: list[Any] = [
    {"type": 5},
    {"type": "nope"},
    {"type": "object", "properties": [1]},
    {"$ref": "#/nowhere"},
    {"enum": 5},
    {"type": "string", "pattern": "("},
]


@pytest.mark.parametrize("schema", BAD_SCHEMAS)
def test_malformed_format_schema_is_400(bounded: httpx.Client, schema: Any) -> None:
    ollama_body = {"model": "tiny", "prompt": "hi", "stream": False, "format": schema}
    assert_dialect_error(bounded.post("/api/generate", json=ollama_body), "ollama", 400)
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    openai_body = {"model": "tiny", "messages": HI, "response_format": response_format}
    response = bounded.post("/v1/chat/completions", json=openai_body)
    assert_dialect_error(response, "openai", 400)


CEILINGS = [
    ("/api/generate", {"prompt": "hi", "stream": False, "options": {"num_ctx": 100_000}}, "ollama", "num_ctx 100000"),
    ("/api/generate", {"prompt": "hi", "stream": False, "options": {"num_ctx": 1e30}}, "ollama", "num_ctx"),
    ("/api/chat", {"messages": HI, "stream": False, "options": {"num_predict": 5000}}, "ollama", "num_predict 5000"),
    ("/v1/chat/completions", {"messages": HI, "max_tokens": 5000}, "openai", "max_tokens 5000"),
    ("/v1/chat/completions", {"messages": HI, "max_completion_tokens": 1e300}, "openai", "max_completion_tokens"),
    ("/v1/messages", {"messages": HI, "max_tokens": 5000}, "anthropic", "max_tokens 5000"),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 5000}, "openai", "max_output_tokens"),
    ("/api/chat", {"messages": HI * 5000, "stream": False}, "ollama", "too many items in messages"),
    ("/v1/chat/completions", {"messages": HI, "tools": [{"type": "function"}] * 600}, "openai", "too many tools"),
    ("/api/chat", {"messages": [{"role": "user", "content": "x", "images": ["aGk="] * 65}]}, "ollama", "too many images"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "dialect", "expected"), CEILINGS)
def test_ceilings_from_settings(
    bounded: httpx.Client, path: str, body: dict[str, Any], dialect: str, expected: str
) -> None:
    response = bounded.post(path, json={"model": "tiny", **body})
    assert expected in assert_dialect_error(response, dialect, 400)


def test_within_bounds_still_answers(bounded: httpx.Client) -> None:
    body = {"model": "tiny", "prompt": "hi", "stream": False,
            "options": {"num_ctx": 8192, "num_predict": 2}}  # fmt: skip
    assert bounded.post("/api/generate", json=body).status_code == 200


def test_upload_larger_than_upload_limit_is_413(
    make_runner: Any, tiny_gguf: Path, store_dir: Path
) -> None:
    server = make_runner(max_upload_size=1024)
    with httpx.Client(base_url=server.url) as http:
        response = http.post(f"/api/blobs/{sha256_file(tiny_gguf)}", content=tiny_gguf.read_bytes())
    assert "larger than" in assert_dialect_error(response, "ollama", 413)
    assert not any(p.is_file() for p in store_dir.rglob("*"))


FUZZED = [  # mutations that once answered a bare 500 (found by a quick fuzz of every dialect)
    ("/api/generate", {"prompt": "hi", "stream": False, "format": {"type": [[]]}}, "ollama"),
    ("/api/chat", {"messages": [{"properties": None, "0": []}], "stream": False,
                   "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": []}}}]}, "ollama"),
    ("/v1/chat/completions", {"messages": HI, "tools": [{"type": [], "function": {"name": "f"}}]}, "openai"),
    ("/v1/chat/completions", {"messages": HI, "tools": [{"type": [None], "function": {"name": "f"}}]}, "openai"),
    ("/v1/responses", {"input": "hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": []}}}}, "openai"),
    ("/v1/responses", {"input": [[1]]}, "openai"),
    ("/v1/messages", {"max_tokens": 2, "messages": HI, "tool_choice": {"type": [None]}}, "anthropic"),
    ("/v1/messages", {"max_tokens": 2, "messages": HI, "system": [{"type": [None], "text": "s"}]}, "anthropic"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "dialect"), FUZZED)
def test_fuzzed_bodies_are_4xx(
    bounded: httpx.Client, path: str, body: dict[str, Any], dialect: str
) -> None:
    response = bounded.post(path, json={"model": "tiny", **body})
    assert 400 <= response.status_code < 500, response.text
    assert_dialect_error(response, dialect, response.status_code)


def test_a_stalled_body_gets_408(make_runner: Any) -> None:
    server = make_runner(body_timeout=0.5)

    def stalled() -> Iterator[bytes]:
        yield b'{"model": '
        time.sleep(2)
        yield b'"tiny"}'

    with httpx.Client(base_url=server.url, timeout=10) as http:
        response = http.post("/v1/chat/completions", content=stalled())
    assert "timed out" in assert_dialect_error(response, "openai", 408)
