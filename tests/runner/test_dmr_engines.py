"""DMR's engine routes over real HTTP: status, ps, unload, _configure (202, 409, flag rules)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.api.dmr.engines import check_flags, flag_int, go_duration
from modelrunner.app import create_app
from modelrunner.errors import InvalidRequest
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.support.gated import GatedEngine
from tests.support.server import LiveServer

MODEL = "ai/smollm2"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def wait_for(predicate: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, "timed out"
            return value
        time.sleep(0.05)


def idle_runners(http: httpx.Client) -> list[dict[str, Any]]:
    """/engines/ps once the background preload has released its runner."""
    entries: list[dict[str, Any]] = http.get("/engines/ps").json()
    return entries if entries and not any(e["in_use"] for e in entries) else []


def plain_error(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == text + "\n"


@pytest.fixture
def smollm2(http: httpx.Client, tiny_gguf: Path) -> str:
    upload_and_create(http, tiny_gguf, "tiny")
    assert http.post("/models/tiny/tag", params={"repo": MODEL, "tag": "latest"}).status_code == 201
    return MODEL


@pytest.fixture
def gated(settings: Settings, tiny_gguf: Path) -> Iterator[tuple[httpx.Client, GatedEngine]]:
    """A runner whose generations wait for the gate: requests can be held in flight."""
    engine = GatedEngine()
    server = LiveServer(create_app(settings, engine=engine)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            upload_and_create(client, tiny_gguf, "tiny")
            client.post("/models/tiny/tag", params={"repo": MODEL, "tag": "latest"})
            yield client, engine
    finally:
        engine.release()
        server.stop()


def in_flight(client: httpx.Client, body: dict[str, Any]) -> threading.Thread:
    """Send a chat request from another thread; it stays in flight while the gate is held."""
    thread = threading.Thread(
        target=lambda: client.post("/engines/v1/chat/completions", json=body), daemon=True
    )
    thread.start()
    return thread


def test_status(http: httpx.Client) -> None:
    for path in ("/engines/status", "/exp/vDD4.40/engines/status"):
        assert http.get(path).json() == {
            "llama.cpp": f"Running: llama.cpp {version('llama-cpp-python')}"
        }


def test_ps_lists_runners_per_mode(http: httpx.Client, smollm2: str) -> None:
    assert http.get("/engines/ps").json() == []
    assert http.post("/engines/v1/chat/completions", json=CHAT).status_code == 200
    assert (
        http.post("/engines/v1/embeddings", json={"model": MODEL, "input": "x"}).status_code == 200
    )
    entries = http.get("/engines/ps").json()
    assert sorted(e["mode"] for e in entries) == ["completion", "embedding"]
    for entry in entries:
        assert set(entry) == {
            "backend_name",
            "model_name",
            "mode",
            "last_used",
            "in_use",
            "loading",
            "keep_alive",
            # ours, after DMR's (its clients ignore unknown fields): the effective runtime policy
            "context_size",
            "parallel",
            "pinned",
        }
        assert entry["backend_name"] == "llama.cpp"
        assert entry["model_name"] == "docker.io/ai/smollm2:latest"
        assert entry["in_use"] is False and entry["loading"] is False
        assert entry["keep_alive"] == "5m0s"
        used = datetime.fromisoformat(entry["last_used"].replace("Z", "+00:00"))
        assert abs(used.timestamp() - time.time()) < 60


def test_ps_shows_a_runner_in_use_with_zero_last_used(
    gated: tuple[httpx.Client, GatedEngine],
) -> None:
    client, engine = gated
    engine.hold()
    request = in_flight(client, CHAT)
    (entry,) = wait_for(lambda: [e for e in client.get("/engines/ps").json() if e["in_use"]])
    assert entry["last_used"] == "0001-01-01T00:00:00Z"
    engine.release()
    request.join(30)
    (entry,) = client.get("/engines/ps").json()
    assert entry["in_use"] is False and entry["last_used"] != "0001-01-01T00:00:00Z"


def test_unload_idle_runners_only(gated: tuple[httpx.Client, GatedEngine]) -> None:
    client, engine = gated
    client.post("/engines/v1/embeddings", json={"model": MODEL, "input": "x"})
    engine.hold()
    request = in_flight(client, CHAT)
    wait_for(lambda: any(e["in_use"] for e in client.get("/engines/ps").json()))
    body = {"all": False, "backend": "", "models": [MODEL]}
    assert client.post("/engines/unload", json=body).json() == {"unloaded_runners": 1}
    assert [e["mode"] for e in client.get("/engines/ps").json()] == ["completion"]  # busy one stays
    engine.release()
    request.join(30)
    assert client.post("/engines/unload", json={"all": True}).json() == {"unloaded_runners": 1}
    assert client.get("/engines/ps").json() == []


def test_unload_by_name_and_bad_bodies(http: httpx.Client, smollm2: str) -> None:
    http.post("/v1/chat/completions", json=CHAT | {"model": "tiny"})
    assert http.post("/engines/unload", json={"models": ["ai/other"]}).json() == {
        "unloaded_runners": 0
    }
    assert http.post("/engines/unload", json={"models": ["smollm2"]}).json() == {
        "unloaded_runners": 1
    }
    plain_error(http.post("/engines/unload", content=b"{oops"), 400, "invalid request")
    plain_error(http.post("/engines/unload", json={"all": "yes"}), 400, "invalid request")


def test_configure_preloads_with_the_context_size(http: httpx.Client, smollm2: str) -> None:
    body = {
        "model": MODEL,
        "context-size": 256,
        "keep_alive": "10m",
        "runtime-flags": ["--threads", "2", "--temp=0.5"],
    }
    response = http.post("/engines/_configure", json=body)
    assert response.status_code == 202 and response.content == b""
    (entry,) = wait_for(lambda: idle_runners(http))
    assert entry["mode"] == "completion" and entry["keep_alive"] == "10m0s"
    (loaded,) = http.get("/api/ps").json()["models"]
    assert loaded["context_length"] == 256
    configs = http.get("/engines/_configure").json()
    assert configs == [
        {
            "Backend": "llama.cpp",
            "Model": MODEL,
            "ModelID": configs[0]["ModelID"],
            "Mode": "completion",
            "Config": {
                "context-size": 256,
                "runtime-flags": ["--threads", "2", "--temp=0.5"],
                "keep_alive": "10m",
            },
        }
    ]
    model_id = http.get(f"/models/{MODEL}").json()["id"]
    assert configs[0]["ModelID"] == model_id
    assert http.get("/engines/_configure", params={"model": "tiny"}).json() == configs
    assert http.get("/engines/_configure", params={"model": "ai/other"}).json() == []
    # Requests use the configured context too; unload drops the configuration.
    assert http.post("/engines/v1/chat/completions", json=CHAT).status_code == 200
    assert http.get("/api/ps").json()["models"][0]["context_length"] == 256
    assert http.post("/engines/unload", json={"models": [MODEL]}).json() == {"unloaded_runners": 1}
    assert http.get("/engines/_configure").json() == []


def test_configure_embedding_mode_and_backend_paths(http: httpx.Client, smollm2: str) -> None:
    for path in ("/engines/llama.cpp/_configure", "/exp/vDD4.40/engines/_configure"):
        body = {"model": MODEL, "runtime-flags": ["--embeddings", "-np", "1"]}
        assert http.post(path, json=body).status_code == 202
    wait_for(lambda: idle_runners(http))
    assert [e["mode"] for e in http.get("/engines/ps").json()] == ["embedding"]
    assert [c["Mode"] for c in http.get("/engines/_configure").json()] == ["embedding"]
    plain_error(
        http.post("/engines/vllm/_configure", json={"model": MODEL}), 404, "backend not found"
    )


def test_configure_is_409_while_the_runner_is_active(
    gated: tuple[httpx.Client, GatedEngine],
) -> None:
    client, engine = gated
    engine.hold()
    request = in_flight(client, CHAT)
    wait_for(lambda: any(e["in_use"] for e in client.get("/engines/ps").json()))
    response = client.post("/engines/_configure", json={"model": MODEL, "context-size": 256})
    plain_error(response, 409, "runner already active")
    assert client.get("/engines/_configure").json() == []
    engine.release()
    request.join(30)
    assert (
        client.post("/engines/_configure", json={"model": MODEL, "context-size": 256}).status_code
        == 202
    )
    # The idle runner is reloaded with the new size (/api/ps is empty while it loads).
    wait_for(
        lambda: [m for m in client.get("/api/ps").json()["models"] if m["context_length"] == 256]
    )


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (
            {"model": MODEL, "runtime-flags": ["--log-file", "x"]},
            400,
            'runtime flag "--log-file" is not allowed for backend "llama.cpp"',
        ),
        (
            {"model": MODEL, "runtime-flags": ["--chat-template", "../etc/passwd"]},
            400,
            "invalid runtime flag '../etc/passwd': paths are not allowed (contains '/' or '\\\\')",
        ),
        (
            {"model": MODEL, "raw-runtime-flags": "--threads 2 --grammar C:\\x"},
            400,
            "invalid runtime flag 'C:\\\\x': paths are not allowed (contains '/' or '\\\\')",
        ),
        ({"model": MODEL, "context-size": "big"}, 400, "invalid request"),
        (
            {"model": MODEL, "mode": "reranking"},
            400,
            "invalid mode 'reranking': must be completion or embedding",
        ),
        ({"model": MODEL, "keep_alive": "soon"}, 400, 'time: invalid duration "soon"'),
        ({"context-size": 512}, 400, "model is required"),
        ({"model": "ai/nothing"}, 404, "model 'ai/nothing' not found"),
    ],
)
def test_configure_rejects_bad_input(
    http: httpx.Client, smollm2: str, body: dict[str, Any], status: int, text: str
) -> None:
    plain_error(http.post("/engines/_configure", json=body), status, text)
    assert http.get("/engines/_configure").json() == []
    assert http.get("/engines/ps").json() == []


def test_flag_helpers() -> None:
    check_flags(["--threads", "4", "-c", "512", "--temp=0.7", "-1"])
    with pytest.raises(InvalidRequest):
        check_flags(["--model", "x"])
    assert flag_int(["-c", "512", "--ctx-size=1024"], ("-c", "--ctx-size")) == 1024
    assert flag_int(["--threads", "2"], ("-c", "--ctx-size")) is None
    with pytest.raises(InvalidRequest):
        flag_int(["-c", "many"], ("-c", "--ctx-size"))
    assert [go_duration(s) for s in (300, 3600, 90.5, 0, float("inf"))] == [
        "5m0s",
        "1h0m0s",
        "1m30.5s",
        "0s",
        "-1",
    ]
