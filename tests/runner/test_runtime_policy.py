"""Runtime policies (``/runner/policies``) over real HTTP with real ``modelrunner serve`` processes
on the tiny GGUF: preload before any request and again after ``kill -9`` on the same store, a
context size that ``/api/ps`` reports and that survives the restart, edits applied without a
re-import, a pinned model that pressure from another model never unloads (``--max-loaded-models
1``: the other request waits ``pinned_wait``, then 503 in its dialect), bad input refused with
nothing changed, and the management token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.support.processes import stop_process
from tests.support.server import LiveServer, free_port

TINY = "registry.ollama.ai/library/tiny:latest"
GENERATE = {"model": "other", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}


class Served:
    """``modelrunner serve`` on a loopback port over one store; killable and restartable."""

    def __init__(self, store: Path, log: Path, *args: str, **env: str) -> None:
        self.store, self.log, self.args, self.env = store, log, args, env
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Served:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_RUNNER_")}
        env.update(MODEL_RUNNER_PRUNE="false", **self.env)
        cmd = [sys.executable, "-m", "modelrunner.cli", "serve", "--listen",
               self.url.removeprefix("http://"), "--models", str(self.store), *self.args]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._up, 60, lambda: self.log.read_text())
        return self

    def _up(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}/api/version", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)


def wait_for(
    predicate: Callable[[], Any], timeout: float = 60, why: Callable[[], str] = lambda: ""
) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out\n{why()}"
        time.sleep(0.1)
    return result


def loaded(http: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in http.get("/api/ps").json()["models"]}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*args: str, **env: str) -> Served:
        served = Served(tmp_path / "store", tmp_path / "serve.log", *args, **env).start()
        started.append(served)
        return served

    yield start
    for served in started:
        stop_process(served.process)


def test_preload_and_context_size_survive_kill_and_apply_without_reimport(
    serve: Callable[..., Served], tiny_gguf: Path, tmp_path: Path
) -> None:
    runner = serve()
    with runner.client() as http:
        upload_and_create(http, tiny_gguf, "tiny")
        assert loaded(http) == {}
        policy = {"context_size": 512, "keep_alive": "-1", "parallel": 2, "preload": True,
                  "pinned": False}  # fmt: skip
        response = http.put("/runner/policies/tiny", json=policy)
        assert response.status_code == 200, response.text
        assert response.json() == policy
        # Preloaded without any inference request, with the policy's settings.
        ps = wait_for(lambda: loaded(http).get("tiny:latest"))
        assert ps["context_length"] == 512
        assert ps["expires_at"].startswith("2318-")  # keep_alive -1 reads as Ollama shows it
        (engine,) = http.get("/engines/ps").json()
        assert engine["model_name"] == TINY and engine["keep_alive"] == "-1"
        assert (engine["context_size"], engine["parallel"], engine["pinned"]) == (512, 2, False)
        # Editing the policy reloads the model with the new settings; nothing is re-imported.
        edited = {**policy, "context_size": 768}
        assert http.put("/runner/policies/tiny:latest", json=edited).status_code == 200
        wait_for(lambda: loaded(http).get("tiny:latest", {}).get("context_length") == 768)
        assert http.get("/runner/policies").json() == {"policies": {TINY: edited}}
    runner.kill()  # no cleanup runs: the policy file must already be whole on disk
    assert not [p.name for p in (tmp_path / "store").iterdir() if p.name.startswith(".tmp")]
    runner.start()
    with runner.client() as http:
        ps = wait_for(lambda: loaded(http).get("tiny:latest"))  # before any request
        assert ps["context_length"] == 768
        assert http.get("/runner/policies").json() == {"policies": {TINY: edited}}
        # A request's own num_ctx still wins, as in Ollama; the policy is the model's default.
        body = {"model": "tiny", "prompt": "hi", "stream": False,
                "options": {"num_predict": 1, "num_ctx": 256}}  # fmt: skip
        assert http.post("/api/generate", json=body).status_code == 200
        assert loaded(http)["tiny:latest"]["context_length"] == 256
        assert http.delete("/runner/policies/tiny").json() == {"deleted": TINY}
        assert http.get("/runner/policies").json() == {"policies": {}}
    runner.kill()
    runner.start()
    with runner.client() as http:
        time.sleep(1)
        assert loaded(http) == {}  # no policy, no preload


def test_pinned_model_is_never_evicted_for_another(
    serve: Callable[..., Served], tiny_gguf: Path
) -> None:
    runner = serve("--max-loaded-models", "1", "--memory-budget", "1GiB",
                   MODEL_RUNNER_PINNED_WAIT="1.5")  # fmt: skip
    with runner.client() as http:
        upload_and_create(http, tiny_gguf, "tiny")
        # Another model (its own manifest digest, so its own runner) over the same weights.
        upload_and_create(http, tiny_gguf, "other", parameters={"temperature": 0.5})
        pin = {"pinned": True, "preload": True}
        assert http.put("/runner/policies/tiny", json=pin).status_code == 200
        wait_for(lambda: "tiny:latest" in loaded(http))
        started = time.monotonic()
        response = http.post("/api/generate", json=GENERATE)
        waited = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert "pinned" in response.json()["error"] and "tiny:latest" in response.json()["error"]
        assert waited >= 1.4  # it waited for the pin to be lifted before giving up
        openai = http.post("/v1/chat/completions", json={
            "model": "other", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})  # fmt: skip
        assert openai.status_code == 503 and "pinned" in openai.json()["error"]["message"]
        assert set(loaded(http)) == {"tiny:latest"}
        (engine,) = http.get("/engines/ps").json()
        assert engine["pinned"] is True and engine["keep_alive"] == "-1"
        # Lifting the pin lets the other model in: the least recently used idle one goes.
        assert http.delete("/runner/policies/tiny").status_code == 200
        assert http.post("/api/generate", json=GENERATE).status_code == 200
        assert set(loaded(http)) == {"other:latest"}


def test_a_waiting_request_goes_on_when_the_pin_is_lifted(
    serve: Callable[..., Served], tiny_gguf: Path
) -> None:
    runner = serve("--max-loaded-models", "1", MODEL_RUNNER_PINNED_WAIT="30")
    with runner.client() as http:
        upload_and_create(http, tiny_gguf, "tiny")
        upload_and_create(http, tiny_gguf, "other", parameters={"temperature": 0.5})
        assert http.put("/runner/policies/tiny", json={"pinned": True}).status_code == 200
        body = {"model": "tiny", "prompt": "", "stream": False}  # Ollama's load request
        assert http.post("/api/generate", json=body).json()["done_reason"] == "load"
        with runner.client() as other:
            result: list[httpx.Response] = []
            thread = threading.Thread(target=lambda: result.append(other.post("/api/generate", json=GENERATE)))  # fmt: skip
            thread.start()
            time.sleep(1.0)
            assert not result and set(loaded(http)) == {"tiny:latest"}  # waiting, tiny stays
            assert http.put("/runner/policies/tiny", json={"pinned": False}).status_code == 200
            thread.join(60)
        assert result and result[0].status_code == 200, result
        assert set(loaded(http)) == {"other:latest"}


# -- in-process runners (real HTTP, real engine): validation and the management token ----------


@pytest.fixture
def policy_runner(tmp_path: Path, tiny_gguf: Path) -> Iterator[tuple[httpx.Client, Path]]:
    store = tmp_path / "models"
    server = LiveServer(create_app(Settings(models=store, listen=[], prune=False))).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            upload_and_create(http, tiny_gguf, "tiny")
            yield http, store
    finally:
        server.stop()


@pytest.mark.parametrize(
    "body",
    [
        {"context_size": 5},
        {"context_size": 10_000_000},
        {"context_size": "4096"},
        {"context_size": True},
        {"parallel": 0},
        {"parallel": 1000},
        {"keep_alive": "5 minutes"},
        {"keep_alive": True},
        {"keep_alive": "x" * 100},
        {"pinned": "yes"},
        {"preload": 1},
        {"pinned": True, "keep_alive": "0"},
        {"context_length": 4096},
        [],
    ],
)
def test_bad_policy_is_400_and_changes_nothing(
    policy_runner: tuple[httpx.Client, Path], body: Any
) -> None:
    http, store = policy_runner
    good = {"context_size": 512, "keep_alive": "10m", "parallel": 1, "preload": False,
            "pinned": False}  # fmt: skip
    assert http.put("/runner/policies/tiny", json=good).status_code == 200
    before = (store / "policies.json").read_bytes()
    response = http.put("/runner/policies/tiny", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert http.get("/runner/policies").json() == {"policies": {TINY: good}}
    assert (store / "policies.json").read_bytes() == before


def test_unknown_models_and_malformed_bodies(policy_runner: tuple[httpx.Client, Path]) -> None:
    http, store = policy_runner
    missing = http.put("/runner/policies/nope", json={"pinned": True})
    assert missing.status_code == 404 and missing.json() == {"error": "model 'nope' not found"}
    assert http.delete("/runner/policies/tiny").status_code == 404  # no policy yet
    assert http.get("/runner/policies/tiny").status_code == 404
    bad_json = http.put("/runner/policies/tiny", content=b"{not json")
    assert bad_json.status_code == 400 and "invalid JSON" in bad_json.json()["error"]
    assert http.put("/runner/policies/bad..name", json={}).status_code == 400
    assert not (store / "policies.json").exists()
    # Names resolve as the store resolves them; the stored key is the full name.
    assert http.put("/runner/policies/TINY", json={}).status_code == 200
    assert http.get("/runner/policies/tiny:latest").json()["preload"] is False
    stored = json.loads((store / "policies.json").read_text())
    assert list(stored["policies"]) == [TINY]


def test_configure_overrides_the_policy_until_the_policy_is_set_again(
    policy_runner: tuple[httpx.Client, Path],
) -> None:
    http, _ = policy_runner
    assert http.put("/runner/policies/tiny", json={"context_size": 512}).status_code == 200
    configure = {"model": "tiny", "context-size": 1024}
    assert http.post("/engines/_configure", json=configure).status_code == 202
    wait_for(lambda: loaded(http).get("tiny:latest", {}).get("context_length") == 1024)
    assert http.get("/engines/_configure").json()[0]["Config"]["context-size"] == 1024
    # _configure is DMR's in-memory setting: the stored policy is unchanged ...
    assert http.get("/runner/policies/tiny").json()["context_size"] == 512
    # ... and setting the policy again replaces it (the model reloads with the policy).
    assert http.put("/runner/policies/tiny", json={"context_size": 512}).status_code == 200
    wait_for(lambda: loaded(http).get("tiny:latest", {}).get("context_length") == 512)
    assert http.get("/engines/_configure").json() == []


def test_policies_need_the_management_token(tmp_path: Path, tiny_gguf: Path) -> None:
    settings = Settings(models=tmp_path / "m", listen=[], prune=False,
                        management_token="s3cret", api_keys=["inference-key"])  # fmt: skip
    server = LiveServer(create_app(settings)).start()
    try:
        admin = {"Authorization": "Bearer s3cret"}
        user = {"Authorization": "Bearer inference-key"}
        with httpx.Client(base_url=server.url, timeout=60, headers=admin) as http:
            upload_and_create(http, tiny_gguf, "tiny")
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for headers, status in (({}, 401), (user, 403)):  # an inference key is not enough
                assert http.get("/runner/policies", headers=headers).status_code == status
                put = http.put("/runner/policies/tiny", json={"pinned": True}, headers=headers)
                assert put.status_code == status and put.json()["error"]
                assert http.delete("/runner/policies/tiny", headers=headers).status_code == status
            assert http.put("/runner/policies/tiny", json={}, headers=admin).status_code == 200
            assert http.get("/runner/policies/tiny", headers=user).status_code == 403
            listing = http.get("/runner/policies", headers=admin).json()
            assert listing == {"policies": {TINY: {"context_size": None, "keep_alive": None,
                               "parallel": None, "preload": False, "pinned": False}}}  # fmt: skip
            assert http.delete("/runner/policies/tiny", headers=admin).status_code == 200
    finally:
        server.stop()


def test_memory_budget_evicts_to_fit_and_refuses_what_never_fits(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    """The budget counts what /api/ps reports as a model's size: its weights and the KV cache
    its context and slots allocate (as Ollama counts it), so a context change moves it."""
    weights = tiny_gguf.stat().st_size
    server = LiveServer(create_app(Settings(models=tmp_path / "m", listen=[], prune=False))).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            upload_and_create(http, tiny_gguf, "tiny")
            upload_and_create(http, tiny_gguf, "other", parameters={"temperature": 0.5})
            assert http.post("/api/generate", json=GENERATE).status_code == 200
            size = loaded(http)["other:latest"]["size"]
            assert size > weights  # the KV cache of its slots x 512 tokens counts too
            small = {**GENERATE, "options": {**GENERATE["options"], "num_ctx": 128}}
            assert http.post("/api/generate", json=small).status_code == 200
            assert weights < loaded(http)["other:latest"]["size"] < size
    finally:
        server.stop()
    settings = Settings(models=tmp_path / "m", listen=[], prune=False,
                        memory_budget=str(size * 3 // 2))  # fmt: skip
    server = LiveServer(create_app(settings)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            tiny = {**GENERATE, "model": "tiny"}
            assert http.post("/api/generate", json=tiny).status_code == 200
            assert http.post("/api/generate", json=GENERATE).status_code == 200
            assert set(loaded(http)) == {"other:latest"}  # max loaded 3, but one fits the budget
    finally:
        server.stop()
    settings = Settings(models=tmp_path / "m", listen=[], prune=False,
                        memory_budget=str(weights * 2))  # fmt: skip
    server = LiveServer(create_app(settings)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            response = http.post("/api/generate", json=GENERATE)  # the weights fit, the cache not
            assert response.status_code == 503 and "memory budget" in response.json()["error"]
    finally:
        server.stop()


def test_a_pinned_model_never_expires_and_expires_again_once_unpinned(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    settings = Settings(models=tmp_path / "m", listen=[], prune=False, keep_alive="1s")
    server = LiveServer(create_app(settings)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            upload_and_create(http, tiny_gguf, "tiny")
            pin = {"pinned": True, "preload": True}
            assert http.put("/runner/policies/tiny", json=pin).status_code == 200
            wait_for(lambda: "tiny:latest" in loaded(http))
            time.sleep(2.5)  # well past the runner's 1 s keep-alive
            assert loaded(http)["tiny:latest"]["expires_at"].startswith("2318-")
            assert http.put("/runner/policies/tiny", json={"pinned": False}).status_code == 200
            wait_for(lambda: not loaded(http), timeout=30)
    finally:
        server.stop()


def test_policy_keep_alive_is_the_default_and_a_request_keep_alive_wins(
    policy_runner: tuple[httpx.Client, Path],
) -> None:
    http, _ = policy_runner
    assert http.put("/runner/policies/tiny", json={"keep_alive": "-1"}).status_code == 200
    body = {"model": "tiny", "prompt": "", "stream": False}  # load only
    assert http.post("/api/generate", json=body).status_code == 200
    assert loaded(http)["tiny:latest"]["expires_at"].startswith("2318-")
    assert http.post("/api/generate", json={**body, "keep_alive": "10m"}).status_code == 200
    year = int(loaded(http)["tiny:latest"]["expires_at"][:4])
    assert year < 2100  # ten minutes from now, not forever
    assert http.post("/api/generate", json=body).status_code == 200
    assert loaded(http)["tiny:latest"]["expires_at"].startswith("2318-")
    (engine,) = http.get("/engines/ps").json()
    assert engine["keep_alive"] == "-1"
