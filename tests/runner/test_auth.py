"""Access control over real HTTP: API keys the way each official client sends them, the
management token, 401/403 in each dialect's shape, key file reload, the DNS-rebinding guard."""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
from pydantic import SecretStr

from modelrunner.app import create_app
from modelrunner.security.routes import Access, classify
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.support.fake_engine import FakeEngine
from tests.support.server import LiveServer

MGMT = "mgmt-0123456789"
ALICE = "sk-alice-0123456789"
BOB = "sk-bob-0123456789"
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Secured:
    url: str
    keys_file: Path
    server: LiveServer

    def client(self, secret: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture
def secured(make_runner: Any, tiny_gguf: Path, tmp_path: Path) -> Iterator[Secured]:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# inference keys\nalice:{ALICE}\n{BOB}\n")
    server = make_runner(api_keys_file=keys_file, management_token=MGMT)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {MGMT}"}) as admin:
        upload_and_create(admin, tiny_gguf, "tiny")
    yield Secured(server.url, keys_file, server)


def assert_dialect_error(response: httpx.Response, dialect: str, status: int) -> str:
    """The refusal has ``status`` and the error shape of ``dialect``; returns the message."""
    assert response.status_code == status, response.text
    if dialect == "dmr":
        assert response.headers["content-type"].startswith("text/plain")
        return response.text
    body = response.json()
    if dialect == "ollama":
        assert set(body) == {"error"}
        message: str = body["error"]
    elif dialect == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}
        message = body["error"]["message"]
    else:
        assert body["type"] == "error" and "request_id" in body
        message = body["error"]["message"]
        assert response.headers["request-id"] == body["request_id"]
    return message


def test_official_clients_work_with_a_key(secured: Secured) -> None:
    client = ollama.Client(host=secured.url, headers={"Authorization": f"Bearer {ALICE}"})
    assert client.generate(model="tiny", prompt="hi", options={"num_predict": 2}).done
    assert [m.model for m in client.list().models] == ["tiny:latest"]
    oa = openai.OpenAI(base_url=secured.url + "/v1", api_key=BOB, max_retries=0)
    reply = oa.chat.completions.create(model="tiny", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    an = anthropic.Anthropic(base_url=secured.url, api_key=ALICE, max_retries=0)  # x-api-key
    message = an.messages.create(model="tiny", max_tokens=2, messages=HI)  # type: ignore[arg-type]
    assert message.usage.output_tokens > 0


def test_official_clients_without_a_valid_key_get_401(secured: Secured) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        ollama.Client(host=secured.url).generate(model="tiny", prompt="hi")
    assert raised.value.status_code == 401
    oa = openai.OpenAI(base_url=secured.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as oa_error:
        oa.models.list()
    assert oa_error.value.code == "invalid_api_key"
    an = anthropic.Anthropic(base_url=secured.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        an.messages.create(model="tiny", max_tokens=2, messages=HI)  # type: ignore[arg-type]


ROUTES = [
    ("POST", "/api/chat", {"model": "tiny", "messages": HI, "stream": False}, "ollama"),
    ("GET", "/api/tags", None, "ollama"),
    ("POST", "/v1/chat/completions", {"model": "tiny", "messages": HI}, "openai"),
    ("POST", "/engines/llama.cpp/v1/completions", {"model": "tiny", "prompt": "x"}, "openai"),
    ("POST", "/v1/messages", {"model": "tiny", "max_tokens": 2, "messages": HI}, "anthropic"),
    ("GET", "/models", None, "dmr"),
    ("GET", "/engines/status", None, "dmr"),
]


@pytest.mark.parametrize(("method", "path", "body", "dialect"), ROUTES)
@pytest.mark.parametrize("secret", [None, "sk-wrong", ALICE[:-1], ALICE + "x"])
def test_401_in_each_dialect(
    secured: Secured, method: str, path: str, body: Any, dialect: str, secret: str | None
) -> None:
    with secured.client(secret) as http:
        response = http.request(method, path, json=body)
    message = assert_dialect_error(response, dialect, 401)
    assert "unauthorized" in message and response.headers["www-authenticate"] == "Bearer"


MANAGEMENT = [
    ("POST", "/api/copy", {"source": "tiny", "destination": "copied"}, "ollama", 200),
    ("POST", "/api/pull", {"model": "127.0.0.1:1/x/y", "stream": False}, "ollama", None),
    ("DELETE", "/api/delete", {"model": "copied"}, "ollama", 200),
    ("POST", "/models/create", {"from": "127.0.0.1:1/x/y"}, "dmr", None),
    ("POST", "/models/tiny/tag?repo=tagged&tag=v1", None, "dmr", 201),
    ("DELETE", "/models/tagged:v1", None, "dmr", 200),
    ("POST", "/engines/unload", {"models": ["tiny"]}, "dmr", 200),
    ("POST", "/engines/_configure", {"model": "tiny", "context-size": 2048}, "dmr", None),
]


def test_management_routes_need_the_management_token(secured: Secured, store_dir: Path) -> None:
    for method, path, body, dialect, ok in MANAGEMENT:
        with secured.client() as anonymous:
            denied = anonymous.request(method, path, json=body)
        assert "management token" in assert_dialect_error(denied, dialect, 401)
        with secured.client(ALICE) as user:
            forbidden = user.request(method, path, json=body)
        assert "management token" in assert_dialect_error(forbidden, dialect, 403)
        with secured.client(MGMT) as admin:
            allowed = admin.request(method, path, json=body)
        assert allowed.status_code not in (401, 403), (path, allowed.text)
        if ok is not None:
            assert allowed.status_code == ok, (path, allowed.text)
    # the management token works for inference too (the operator uses it for every call)
    with secured.client(MGMT) as admin:
        assert admin.post("/api/show", json={"model": "tiny"}).status_code == 200


def test_public_routes_need_no_key(secured: Secured) -> None:
    with secured.client() as anonymous:
        for path in ("/", "/api/version", "/version", "/metrics"):
            assert anonymous.get(path).status_code == 200, path


def test_key_file_is_reloaded_without_restart(secured: Secured) -> None:
    carol = "sk-carol-0123456789"
    with secured.client(carol) as http:
        assert http.get("/api/tags").status_code == 401
        secured.keys_file.write_text(f"carol:{carol}\n")
        assert http.get("/api/tags").status_code == 200
    with secured.client(ALICE) as http:  # removed from the file: refused at once
        assert http.get("/api/tags").status_code == 401
    secured.keys_file.unlink()  # a rotation in progress keeps the last keys
    with secured.client(carol) as http:
        assert http.get("/api/tags").status_code == 200
    secured.keys_file.write_text(f"{ALICE}\n")
    app: Any = secured.server.server.config.app
    app.state.keys.reload(force=True)  # what SIGHUP does in `modelrunner serve`
    with secured.client(ALICE) as http:
        assert http.get("/api/tags").status_code == 200


def test_keys_are_never_logged(secured: Secured, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with secured.client(ALICE + "x") as http:
        http.post("/api/chat", json={"model": "tiny", "messages": HI})
    secured.keys_file.write_text(f"{ALICE}\n{BOB}\n")
    with secured.client(ALICE) as http:
        http.get("/api/tags")
    for secret in (ALICE, BOB, MGMT):
        assert secret not in caplog.text


def _generated(metrics: str, key: str) -> float:
    prefix = f'modelrunner_key_tokens_total{{key="{key}",kind="generated"}}'
    lines = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_metrics_count_usage_per_key_id(secured: Secured) -> None:
    body = {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 3}}
    with secured.client(ALICE) as http:
        reply = http.post("/api/generate", json=body)
        assert reply.status_code == 200
        metrics = http.get("/metrics").text
        assert 'modelrunner_key_requests_total{key="alice",outcome="ok"}' in metrics
        assert _generated(metrics, "alice") == reply.json()["eval_count"]
        with http.stream("POST", "/api/generate", json={**body, "stream": True}) as streamed:
            final = json.loads(list(streamed.iter_lines())[-1])
        after = http.get("/metrics").text
    assert _generated(after, "alice") == reply.json()["eval_count"] + final["eval_count"]
    assert ALICE not in metrics and BOB not in metrics


HOSTS_OK = ["localhost", "127.0.0.1", "127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}",
            "10.1.2.3", "0.0.0.0", "runner.local", "x.internal", "models.example.com"]  # fmt: skip


def test_host_guard_on_a_loopback_bound_runner(make_runner: Any) -> None:
    server = make_runner(allowed_hosts=["models.example.com"])
    with httpx.Client(base_url=server.url) as http:
        for host in ("evil.example", "evil.example:11434", "attacker.com", "8.8.8.8"):
            response = http.get("/api/tags", headers={"Host": host})
            assert_dialect_error(response, "ollama", 403)
        refused = http.post("/v1/chat/completions", headers={"Host": "evil.example"}, json={})
        assert_dialect_error(refused, "openai", 403)
        for host in HOSTS_OK:
            response = http.get("/api/tags", headers={"Host": host.format(port=server.port)})
            assert response.status_code == 200, host


def test_open_non_loopback_runner_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="modelrunner.security")
    create_app(Settings(models=tmp_path, listen=["0.0.0.0:11434"], prune=False))
    assert any(r.levelno == logging.WARNING and "0.0.0.0:11434" in r.message
               for r in caplog.records)  # fmt: skip
    caplog.clear()
    create_app(Settings(models=tmp_path, listen=["127.0.0.1:11434"], prune=False))
    create_app(Settings(models=tmp_path, listen=["0.0.0.0:1"], management_token=SecretStr(MGMT)))
    assert not caplog.records


def test_a_runner_listening_on_every_address_is_not_host_guarded(tmp_path: Path) -> None:
    settings = Settings(models=tmp_path, listen=["0.0.0.0:11434"], prune=False)  # as Ollama
    server = LiveServer(create_app(settings)).start()  # reached here through 127.0.0.1
    try:
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/api/tags", headers={"Host": "evil.example"}).status_code == 200
    finally:
        server.stop()


# The only routes that take a body or delete something without the management token.
INFERENCE_ENDS = re.compile(
    r"/(chat|generate|embed|embeddings|show|completions|messages|count_tokens|responses"
    r"|responses/\{response_id\}|tokenize|detokenize|rerank|reranking|score)$"
)


def test_every_route_that_changes_state_is_management(tmp_path: Path) -> None:
    """New routes get the same rule: a POST or DELETE is management unless it is inference."""
    app = create_app(Settings(models=tmp_path, listen=[]), engine=FakeEngine())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HEAD+GET routes share an operation id
        paths = app.openapi()["paths"]
    checked = 0
    for template, operations in paths.items():
        concrete = re.sub(r"\{[^}]+\}", "m", template)
        for method in map(str.upper, operations):
            access = classify(method, concrete)
            if method in ("POST", "DELETE", "PUT", "PATCH"):
                expected = (
                    Access.INFERENCE if INFERENCE_ENDS.search(template) else Access.MANAGEMENT
                )
                assert access is expected, (method, template)
                checked += 1
            elif template in ("/engines/requests", "/logs") or template.startswith(
                "/runner/policies"
            ):  # other callers' prompts; runtime policies (the operator's)
                assert access is Access.MANAGEMENT, (method, template)
            else:
                assert access in (Access.INFERENCE, Access.PUBLIC), (method, template)
    assert checked > 50
