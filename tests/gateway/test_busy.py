"""A backend that answers 503 before any byte (a runner whose queue is full): the gateway sends the
request to another instance holding the model; with no other instance, the 503 is the answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.gateway.procs import Proc, metric, start_gateway
from tests.support.server import LiveServer

BODY = {"model": "alpha", "prompt": "x", "stream": False, "options": {"num_predict": 2}}


@pytest.fixture
def full() -> Iterator[tuple[LiveServer, list[str]]]:
    """A scripted runner that lists alpha and refuses every inference with Ollama's 503."""
    hits: list[str] = []

    async def tags(_: Request) -> JSONResponse:
        return JSONResponse({"models": [{"name": "alpha:latest", "model": "alpha:latest"}]})

    async def busy(request: Request) -> JSONResponse:
        hits.append(request.url.path)
        return JSONResponse(
            {"error": "server busy, please try again. maximum pending requests exceeded"}, 503
        )

    app = Starlette(routes=[Route("/api/tags", tags), Route("/api/version", tags),
                            Route("/api/generate", busy, methods=["POST"])])  # fmt: skip
    server = LiveServer(app).start()
    try:
        yield server, hits
    finally:
        server.stop()


def test_a_503_before_the_first_byte_is_retried_on_another_instance(
    tmp_path: Path, full: tuple[LiveServer, list[str]], pair: list[Proc]
) -> None:
    server, hits = full
    gateway = start_gateway(
        tmp_path, "--backend", server.url, "--backend", pair[0].url, "--policy", "least"
    )
    try:
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            for _ in range(12):
                response = http.post("/api/generate", json=BODY)
                assert response.status_code == 200, response.text
                assert response.headers["x-model-runner-instance"] == pair[0].url
        assert hits  # the full instance was tried (ties are broken at random)
        assert metric(gateway.url, "modelrunner_gateway_retries_total") == len(hits)
    finally:
        gateway.stop()
    alone = start_gateway(tmp_path, "--backend", server.url)
    try:
        response = httpx.post(f"{alone.url}/api/generate", json=BODY, timeout=60)
        assert response.status_code == 503 and "server busy" in response.json()["error"]
        assert response.headers["x-model-runner-instance"] == server.url
    finally:
        alone.stop()
