"""The gateway in front of two runner processes over real HTTP: routing by model, merged lists in
every dialect, lookups of one model, each dialect's 404, refused management routes, and prefix
affinity (one conversation's turns on one instance, different conversations spread)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import httpx
import pytest

from tests.gateway.procs import Proc, metric, wait_until

INSTANCE = "x-model-runner-instance"
SHORT = {"num_predict": 4, "temperature": 0}
RUNNING = "modelrunner_requests_running"  # the runner's requests holding a slot, all models


@pytest.fixture(scope="module")
def http(gateway: Proc) -> Any:
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


def chat(http: httpx.Client, model: str, messages: list[dict[str, str]]) -> httpx.Response:
    body = {"model": model, "messages": messages, "stream": False, "options": SHORT}
    return http.post("/api/chat", json=body)


def test_each_model_goes_to_the_runner_that_holds_it(http: httpx.Client, pair: list[Proc]) -> None:
    a, b = pair
    for model, where in (("alpha", a.url), ("beta", b.url), ("beta:latest", b.url)):
        response = chat(http, model, [{"role": "user", "content": "hi"}])
        assert response.status_code == 200, response.text
        assert response.headers[INSTANCE] == where
        assert response.json()["model"] == ("alpha:latest" if model == "alpha" else "beta:latest")
    # Every dialect's inference route, with its own name rules (DMR's under /engines/).
    cases = [
        ("/v1/chat/completions", {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3}),
        ("/engines/v1/chat/completions", {"model": "beta", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3}),
        ("/engines/llama.cpp/v1/completions", {"model": "alpha", "prompt": "x", "max_tokens": 3}),
        ("/v1/messages", {"model": "beta", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3}),
        ("/v1/messages/count_tokens", {"model": "alpha", "messages": [{"role": "user", "content": "x"}]}),
        ("/v1/responses", {"model": "beta", "input": "x", "max_output_tokens": 3}),
        ("/api/generate", {"model": "alpha", "prompt": "x", "stream": False, "options": SHORT}),
        ("/api/embed", {"model": "beta", "input": "x"}),
        ("/v1/embeddings", {"model": "alpha", "input": "x"}),
        ("/tokenize", {"model": "beta", "content": "hello"}),
    ]  # fmt: skip
    for path, body in cases:
        response = http.post(path, json=body)
        assert response.status_code == 200, (path, response.text)
        want = a.url if body["model"] == "alpha" else b.url
        assert response.headers[INSTANCE] == want, path


def test_streams_pass_through_in_their_own_format(http: httpx.Client, pair: list[Proc]) -> None:
    body = {"model": "alpha", "prompt": "x", "options": {"num_predict": 20, "temperature": 0}}
    with http.stream("POST", "/api/generate", json=body) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert response.headers[INSTANCE] == pair[0].url
        lines = [line for line in response.iter_lines() if line]
    assert len(lines) > 2 and '"done":true' in lines[-1]
    body = {"model": "beta", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
            "stream": True}  # fmt: skip
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"


def test_unknown_models_get_each_dialects_404(http: httpx.Client) -> None:
    response = chat(http, "nope", [{"role": "user", "content": "x"}])
    assert (response.status_code, response.json()) == (404, {"error": "model 'nope' not found"})
    response = http.post("/api/show", json={"model": "nope"})
    assert (response.status_code, response.json()) == (404, {"error": "model 'nope' not found"})
    response = http.post("/v1/chat/completions", json={"model": "nope", "messages": []})
    assert response.status_code == 404
    assert response.json()["error"] | {"message": ""} == {
        "message": "", "type": "not_found_error", "param": None, "code": None,
    }  # fmt: skip
    response = http.post("/v1/messages", json={"model": "nope", "messages": [], "max_tokens": 1})
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found_error", "message": "model: nope"}
    response = http.get("/models/nope")
    assert (response.status_code, response.text) == (404, "Model not found\n")
    response = http.get("/v1/models/nope")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_a_body_without_a_model_is_answered_by_a_runner(http: httpx.Client) -> None:
    response = http.post("/api/chat", json={"messages": []})
    assert response.status_code == 400 and "model" in response.json()["error"]


def test_merged_lists_in_every_dialect(http: httpx.Client, pair: list[Proc]) -> None:
    chat(http, "alpha", [{"role": "user", "content": "x"}])
    chat(http, "beta", [{"role": "user", "content": "x"}])
    names = [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert sorted(names) == ["alpha:latest", "beta:latest", "shared:latest"]  # shared once
    running = {m["name"] for m in http.get("/api/ps").json()["models"]}
    assert {"alpha:latest", "beta:latest"} <= running
    ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert sorted(ids) == ["alpha:latest", "beta:latest", "shared:latest"]
    for prefix in ("/engines", "/engines/llama.cpp"):
        data = http.get(f"{prefix}/v1/models").json()["data"]
        assert sorted(m["id"] for m in data) == [
            f"registry.ollama.ai/library/{n}:latest" for n in ("alpha", "beta", "shared")
        ]
    models = http.get("/models").json()
    tags = sorted(t for m in models for t in m["tags"])
    assert tags == [f"registry.ollama.ai/library/{n}:latest" for n in ("alpha", "beta", "shared")]
    assert len({m["id"] for m in models}) == len(models) == 3
    loaded = {m["model_name"] for m in http.get("/engines/ps").json()}
    assert {
        "registry.ollama.ai/library/alpha:latest",
        "registry.ollama.ai/library/beta:latest",
    } <= loaded


def test_one_model_is_shown_by_an_instance_holding_it(http: httpx.Client, pair: list[Proc]) -> None:
    response = http.post("/api/show", json={"model": "beta"})
    assert response.status_code == 200 and response.headers[INSTANCE] == pair[1].url
    assert response.json()["details"]["family"] == "llama"
    response = http.get("/models/alpha")
    assert response.status_code == 200 and response.headers[INSTANCE] == pair[0].url
    assert response.json()["tags"] == ["registry.ollama.ai/library/alpha:latest"]
    response = http.get("/engines/v1/models/beta")
    assert response.status_code == 200 and response.headers[INSTANCE] == pair[1].url


def test_management_routes_are_refused_in_the_callers_dialect(http: httpx.Client) -> None:
    response = http.post("/api/pull", json={"model": "alpha"})
    assert response.status_code == 403 and "Model resources" in response.json()["error"]
    response = http.request("DELETE", "/api/delete", json={"model": "alpha"})
    assert response.status_code == 403
    response = http.delete("/models/alpha")
    assert response.status_code == 403 and "Model resources" in response.text
    response = http.post("/models/create", json={"from": "ai/smollm2"})
    assert response.status_code == 403
    response = http.post("/engines/_configure", json={"model": "alpha"})
    assert response.status_code == 403
    assert http.get("/api/tags").status_code == 200  # nothing was deleted
    assert chat(http, "alpha", [{"role": "user", "content": "x"}]).status_code == 200


def test_health_version_and_unknown_paths(http: httpx.Client) -> None:
    assert http.get("/").text == "Ollama is running"
    assert "version" in http.get("/api/version").json()
    assert http.get("/nothing/here").status_code == 404


def test_a_conversation_stays_on_one_instance_and_conversations_spread(
    http: httpx.Client, pair: list[Proc]
) -> None:
    """Twelve chats of three turns each on the model both runners hold: every turn of a chat lands
    where its first did (its prefix cache), and the chats use both instances."""
    where: dict[int, set[str]] = defaultdict(set)
    histories = {i: [{"role": "system", "content": "Be brief."}] for i in range(12)}
    for turn in range(3):
        for i, history in histories.items():
            history.append({"role": "user", "content": f"conversation {i}, question {turn}"})
            response = chat(http, "shared", history)
            assert response.status_code == 200, response.text
            where[i].add(response.headers[INSTANCE])
            history.append(response.json()["message"])
    assert all(len(instances) == 1 for instances in where.values()), where
    assert set().union(*where.values()) == {pair[0].url, pair[1].url}


def test_a_client_disconnect_cancels_the_upstream_request(
    http: httpx.Client, gateway: Proc, pair: list[Proc]
) -> None:
    a = pair[0]
    endless = {"model": "alpha", "prompt": "the", "raw": True,
               "options": {"num_predict": 6000, "temperature": 0}}  # fmt: skip
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        with client.stream("POST", "/api/generate", json=endless) as response:
            lines = response.iter_lines()
            assert '"done":false' in next(lines)
            assert metric(a.url, RUNNING) == 1
            assert metric(gateway.url, "modelrunner_gateway_requests_in_flight") == 1
        closed = time.monotonic()  # the stream closes here, thousands of tokens early
    wait_until(lambda: metric(a.url, RUNNING) == 0, timeout=10)
    assert time.monotonic() - closed < 5
    wait_until(lambda: metric(gateway.url, "modelrunner_gateway_requests_in_flight") == 0)
    demand = http.get("/gateway/v1/demand").json()
    assert demand["instances"][a.url] == {"inFlight": 0}
    assert demand["runners"][a.url]["inFlight"] == 0
    assert isinstance(demand["runners"][a.url]["lastRequestUnix"], float)
