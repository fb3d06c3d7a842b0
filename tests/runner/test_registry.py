"""Pull and push against a real registry (Debian's docker-registry), over real HTTP, no mocks.

Every dialect is exercised: Ollama's ``/api/pull`` and ``/api/push`` (NDJSON and ``stream: false``,
and the official ``ollama`` client), DMR's ``POST /models/create`` and ``/models/{name}/push``, and
the CLI. Faults (a dropped connection, a corrupt blob, registry errors, a full disk) must leave no
half-registered model behind.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import ollama
import pytest

from modelrunner.app import create_app
from modelrunner.core.transfer import CONFIG_KEY, TransferConfig
from modelrunner.settings import Settings
from tests.conftest import upload_and_create
from tests.support.server import LiveServer

if TYPE_CHECKING:  # a plugin (tests/conftest.py): imported by pytest, so it rewrites asserts
    from tests.support.registry import FaultProxy, Registry

pytestmark = pytest.mark.registry

KB = 1024
MB = 1024 * KB
DMR_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
DMR_GGUF = "application/vnd.docker.ai.gguf.v3"
DMR_LICENSE = "application/vnd.docker.ai.license"
DMR_TEMPLATE = "application/vnd.docker.ai.chat.template.jinja"
DMR_MMPROJ = "application/vnd.docker.ai.mmproj"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

# Short timeouts and small parts, so retries, parallel ranges and chunked uploads all happen fast.
FAST = TransferConfig(
    retries=2,
    backoff=0.05,
    max_backoff=0.2,
    stall_timeout=5,
    connect_timeout=5,
    min_part_size=256 * KB,
    upload_chunk_size=256 * KB,
    progress_interval=0.02,
    state_interval=0.05,
)


@contextlib.contextmanager
def running(store: Path, config: TransferConfig = FAST, **settings: Any) -> Iterator[httpx.Client]:
    """A runner over ``store`` with ``config``; yields an HTTP client bound to it."""
    app = create_app(Settings(models=store, listen=[], prune=False, **settings))
    app.state.services.extra[CONFIG_KEY] = config  # read when the first transfer starts
    server = LiveServer(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture
def runner_http(tmp_path: Path) -> Iterator[httpx.Client]:
    with running(tmp_path / "models") as client:
        yield client


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def statuses(lines: list[dict[str, Any]]) -> list[str]:
    """Statuses in order, consecutive repeats (progress of one layer) collapsed."""
    out: list[str] = []
    for line in lines:
        status = line.get("status") or f"error: {line.get('error')}"
        if not out or out[-1] != status:
            out.append(status)
    return out


def tags(http: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in http.get("/api/tags").json()["models"]}


def manifests_in(store: Path) -> list[Path]:
    return [p for p in (store / "manifests").rglob("*") if p.is_file()]


def partials_in(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "blobs").glob("*-partial*"))


def check_pulled_model_answers(http: httpx.Client, name: str) -> None:
    """Chat with a model that was just pulled. Until the inference work adds ``/api/chat`` this
    only checks the route is still missing; then it checks a real answer."""
    response = http.post(
        "/api/chat",
        json={"model": name, "messages": [{"role": "user", "content": "hi"}], "stream": False},
    )
    if response.status_code in (404, 405) and "error" not in response.text:
        return  # no inference routes yet
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["message"]["content"], str)


def dmr_config(architecture: str = "llama") -> bytes:
    return json.dumps(
        {
            "config": {
                "format": "gguf",
                "quantization": "F32",
                "parameters": "105.22K",
                "architecture": architecture,
                "size": "470.50 KiB",
                "context_size": 512,
            },
            "descriptor": {"created": "2025-03-04T05:06:07Z"},
            "rootfs": {"type": "rootfs", "diff_ids": []},
        }
    ).encode()


def push_random_model(registry: Registry, repository: str, tag: str, size: int, seed: int) -> str:
    """A DMR artifact whose GGUF layer is ``size`` random bytes: for transfer tests only."""
    data = os.urandom(size) if seed < 0 else _seeded(size, seed)
    registry.push_artifact(repository, tag, dmr_config(), DMR_CONFIG, [(DMR_GGUF, data)])
    return sha256(data)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _seeded(size: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


# --------------------------------------------------------------------------- happy paths


def test_push_delete_pull_roundtrip(
    runner_http: httpx.Client, registry: Registry, tiny_gguf: Path, tmp_path: Path
) -> None:
    http = runner_http
    name = f"{registry.host}/roundtrip/tiny:v1"
    gguf_digest = upload_and_create(http, tiny_gguf, name, system="Be brief.")
    local = tags(http)[name]

    pushed = http.post("/api/push", json={"model": name, "insecure": True})
    assert pushed.status_code == 200
    assert pushed.headers["content-type"].startswith("application/x-ndjson")
    lines = ndjson(pushed)
    seen = statuses(lines)
    assert seen[0] == "retrieving manifest"
    assert f"pushing {gguf_digest[7:19]}" in seen
    assert seen[-2:] == ["pushing manifest", "success"]
    remote = registry.manifest("roundtrip/tiny", "v1")
    assert remote.status_code == 200
    assert sha256(remote.content).removeprefix("sha256:") == local["digest"]  # same bytes

    assert http.request("DELETE", "/api/delete", json={"model": name}).status_code == 200
    assert name not in tags(http)

    pulled = http.post("/api/pull", json={"model": name, "insecure": True})
    assert pulled.status_code == 200
    lines = ndjson(pulled)
    seen = statuses(lines)
    assert seen[0] == "pulling manifest"
    assert seen[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer = [x for x in lines if x["status"] == f"pulling {gguf_digest[7:19]}"]
    assert layer[-1] == {
        "status": f"pulling {gguf_digest[7:19]}",
        "digest": gguf_digest,
        "total": tiny_gguf.stat().st_size,
        "completed": tiny_gguf.stat().st_size,
    }
    again = tags(http)[name]
    assert again["digest"] == local["digest"]
    assert again["size"] == local["size"]
    assert again["details"] == local["details"]
    store = tmp_path / "models"
    assert (store / "blobs" / ("sha256-" + gguf_digest[7:])).stat().st_size == len(
        tiny_gguf.read_bytes()
    )
    assert partials_in(store) == []
    show = http.post("/api/show", json={"model": name}).json()
    assert show["system"] == "Be brief."
    check_pulled_model_answers(http, name)


def test_pull_stream_false_and_removing_unused_layers(
    runner_http: httpx.Client, registry: Registry
) -> None:
    http = runner_http
    first = push_random_model(registry, "moving/model", "latest", 64 * KB, seed=1)
    name = f"{registry.host}/moving/model:latest"
    response = http.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status": "success"}
    assert http.head(f"/api/blobs/{first}").status_code == 200

    push_random_model(registry, "moving/model", "latest", 64 * KB, seed=2)  # the tag moves
    lines = ndjson(http.post("/api/pull", json={"model": name, "insecure": True}))
    assert statuses(lines)[-2:] == ["removing unused layers", "success"]
    assert http.head(f"/api/blobs/{first}").status_code == 404  # the old layer is gone


def test_pull_dmr_artifact_with_models_create(
    runner_http: httpx.Client, registry: Registry, tiny_gguf: Path
) -> None:
    http = runner_http
    gguf = tiny_gguf.read_bytes()
    second_shard = _seeded(32 * KB, 7)
    template = b"{% for m in messages %}{{ m.content }}{% endfor %}"
    mmproj = _seeded(16 * KB, 8)
    digest, raw = registry.push_artifact(
        "ai/tinydmr",
        "v1",
        dmr_config(),
        DMR_CONFIG,
        [
            (DMR_GGUF, gguf),
            (DMR_GGUF, second_shard),
            (DMR_LICENSE, b"MIT license text"),
            (DMR_TEMPLATE, template),
            (DMR_MMPROJ, mmproj),
        ],
        layer_annotations=[
            {"org.cncf.model.filepath": "model-00001-of-00002.gguf"},
            {"org.cncf.model.filepath": "model-00002-of-00002.gguf"},
            {},
            {},
            {},
        ],
    )
    ref = f"{registry.host}/ai/tinydmr:v1"
    response = http.post("/models/create", json={"from": ref})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    lines = ndjson(response)
    assert lines[-1]["type"] == "success"
    assert lines[-1]["message"] == "Model pulled successfully"
    progress = [x for x in lines if x["type"] == "progress"]
    assert progress and all(x["mode"] == "pull" for x in progress)
    assert {x["layer"]["id"] for x in progress} >= {sha256(gguf), sha256(second_shard)}
    blobs = (gguf, second_shard, template, mmproj, b"MIT license text", dmr_config())
    assert progress[0]["total"] == sum(len(b) for b in blobs)
    final = [x for x in progress if x["layer"]["id"] == sha256(gguf)][-1]
    assert final["layer"] == {"id": sha256(gguf), "size": len(gguf), "current": len(gguf)}

    (model,) = [m for m in http.get("/models").json() if ref in m["tags"]]
    assert model["id"] == digest
    assert model["config"]["format"] == "gguf"
    assert model["config"]["architecture"] == "llama"
    assert model["config"]["quantization"] == "F32"
    assert model["config"]["context_size"] == 512
    assert model["created"] == 1741064767
    assert http.get(f"/models/{ref}").json()["id"] == digest

    entry = tags(http)[ref]
    assert entry["digest"] == digest.removeprefix("sha256:")
    assert entry["details"]["family"] == "llama"
    assert entry["details"]["quantization_level"] == "F32"
    show = http.post("/api/show", json={"model": ref}).json()
    assert show["license"] == "MIT license text"
    assert "vision" in show["capabilities"]  # the mmproj layer is the projector

    # The same bytes go back up unchanged (the format is kept), under another repository.
    tagged = http.post(
        f"/models/{ref}/tag", params={"repo": f"{registry.host}/ai/copy", "tag": "v2"}
    )
    assert tagged.status_code == 201, tagged.text
    pushed = http.post(
        f"/models/{registry.host}/ai/copy:v2/push", headers={"Accept": "application/json"}
    )
    assert pushed.status_code == 200
    assert pushed.headers["content-type"].startswith("application/json")
    lines = ndjson(pushed)
    assert lines[-1]["type"] == "success" and lines[-1]["message"] == "Model pushed successfully"
    assert all(x["mode"] == "push" for x in lines)
    remote = registry.manifest("ai/copy", "v2")
    assert remote.content == raw
    assert json.loads(remote.content)["config"]["mediaType"] == DMR_CONFIG


def test_pull_through_an_image_index(runner_http: httpx.Client, registry: Registry) -> None:
    http = runner_http
    child_digest, child = registry.push_artifact(
        "indexed/model", "child", dmr_config(), DMR_CONFIG, [(DMR_GGUF, _seeded(8 * KB, 3))]
    )
    attestation = {"mediaType": OCI_MANIFEST, "digest": child_digest, "size": len(child)}
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            attestation | {"annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            {"mediaType": OCI_MANIFEST, "digest": child_digest, "size": len(child)},
        ],
    }
    registry.push_manifest("indexed/model", "v1", json.dumps(index).encode(), OCI_INDEX)
    name = f"{registry.host}/indexed/model:v1"
    response = http.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
    assert response.json() == {"status": "success"}
    assert tags(http)[name]["digest"] == child_digest.removeprefix("sha256:")


def test_official_ollama_client_push_and_pull(
    tmp_path: Path, registry: Registry, tiny_gguf: Path
) -> None:
    with running(tmp_path / "models") as http:
        name = f"{registry.host}/client/tiny:latest"
        upload_and_create(http, tiny_gguf, name)
        client = ollama.Client(host=str(http.base_url))
        result = client.push(name, insecure=True)
        assert result.status == "success"
        steps = [p.status for p in client.push(name, insecure=True, stream=True)]
        assert steps[0] == "retrieving manifest" and steps[-1] == "success"
        client.delete(name)
        assert client.pull(name, insecure=True).status == "success"
        events = list(client.pull(name, insecure=True, stream=True))
        assert events[-1].status == "success"
        assert any(e.digest and e.total and e.completed == e.total for e in events)
        assert name in [m.model for m in client.list().models]
        with pytest.raises(ollama.ResponseError) as error:
            client.pull(f"{registry.host}/client/missing:latest", insecure=True)
        assert error.value.status_code == 404
        assert "file does not exist" in error.value.error


def test_cli_pull_and_push(tmp_path: Path, registry: Registry, tiny_gguf: Path) -> None:
    with running(tmp_path / "models") as http:
        name = f"{registry.host}/cli/tiny:latest"
        upload_and_create(http, tiny_gguf, name)
        env = dict(os.environ, MODEL_RUNNER_HOST=str(http.base_url))
        cli = [sys.executable, "-m", "modelrunner.cli"]
        pushed = subprocess.run(
            [*cli, "push", name, "--insecure"], env=env, capture_output=True, text=True
        )
        assert pushed.returncode == 0, pushed.stderr
        assert "success" in pushed.stdout
        http.request("DELETE", "/api/delete", json={"model": name})
        pulled = subprocess.run(
            [*cli, "pull", name, "--insecure"], env=env, capture_output=True, text=True
        )
        assert pulled.returncode == 0, pulled.stderr
        assert "success" in pulled.stdout
        assert name in tags(http)
        missing = subprocess.run(
            [*cli, "pull", f"{registry.host}/cli/missing", "--insecure"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert missing.returncode != 0
        assert "file does not exist" in missing.stderr + missing.stdout


def test_cross_repository_mount(
    runner_http: httpx.Client, fault_proxy: FaultProxy, tiny_gguf: Path
) -> None:
    http = runner_http
    first = f"{fault_proxy.host}/mount/one:v1"
    upload_and_create(http, tiny_gguf, first)
    assert http.post("/api/push", json={"model": first, "insecure": True}).status_code == 200
    assert fault_proxy.up > tiny_gguf.stat().st_size  # the first push uploads the GGUF
    second = f"{fault_proxy.host}/mount/two:v1"
    assert http.post("/api/copy", json={"source": first, "destination": second}).status_code == 200
    fault_proxy.reset()
    lines = ndjson(http.post("/api/push", json={"model": second, "insecure": True}))
    assert statuses(lines)[-1] == "success"
    assert fault_proxy.up < tiny_gguf.stat().st_size // 4  # mounted, not uploaded again


# --------------------------------------------------------------------------- names and errors


def test_insecure_is_required_for_http(runner_http: httpx.Client, registry: Registry) -> None:
    http = runner_http
    push_random_model(registry, "secure/model", "v1", 4 * KB, seed=4)
    explicit = http.post("/api/pull", json={"model": f"http://{registry.host}/secure/model:v1"})
    assert explicit.status_code == 400
    assert explicit.json() == {"error": "insecure protocol http"}
    # Without insecure, only https is tried: the plain-http registry cannot answer it.
    https_only = http.post("/api/pull", json={"model": f"{registry.host}/secure/model:v1"})
    assert https_only.status_code == 200  # Ollama streams a registry failure as an error line
    assert "error" in ndjson(https_only)[-1]
    ok = http.post(
        "/api/pull",
        json={
            "model": f"http://{registry.host}/secure/model:v1",
            "insecure": True,
            "stream": False,
        },
    )
    assert ok.json() == {"status": "success"}
    assert tags(http)[f"{registry.host}/secure/model:v1"]


def test_insecure_registries_setting(tmp_path: Path, registry: Registry) -> None:
    push_random_model(registry, "listed/model", "v1", 4 * KB, seed=5)
    with running(tmp_path / "models", insecure_registries=[registry.host]) as http:
        body = {"model": f"{registry.host}/listed/model:v1", "stream": False}
        assert http.post("/api/pull", json=body).json() == {"status": "success"}


def test_bad_requests(runner_http: httpx.Client) -> None:
    http = runner_http
    assert http.post("/api/pull", json={}).json() == {"error": "model is required"}
    assert http.post("/api/push", json={}).status_code == 400
    bad = http.post("/api/pull", json={"model": "a/b/c/d/e"})
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid model name"})
    missing = http.post("/api/push", json={"model": "not-here", "stream": False})
    assert missing.status_code == 404
    assert http.post("/models/create", json={}).text == "Invalid model reference\n"
    assert http.post("/models/create", json={"from": "a/b/c/d/e"}).status_code == 400
    absent = http.post("/models/not-here/push")
    assert (absent.status_code, absent.text) == (404, "Model not found\n")


def test_registry_404_in_each_dialect(runner_http: httpx.Client, registry: Registry) -> None:
    http = runner_http
    name = f"{registry.host}/nothing/here:v1"
    before = tags(http)
    error = {"error": "pull model manifest: file does not exist"}
    response = http.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
    assert (response.status_code, response.json()) == (404, error)
    streamed = http.post("/api/pull", json={"model": name, "insecure": True})
    assert streamed.status_code == 200  # streaming: Ollama's status line, then the error
    assert ndjson(streamed) == [{"status": "pulling manifest"}, error]
    dmr = http.post("/models/create", json={"from": name})
    assert (dmr.status_code, dmr.text) == (404, "Model not found\n")
    assert tags(http) == before


def test_registry_500_in_each_dialect(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy
) -> None:
    push_random_model(registry, "broken/model", "v1", 4 * KB, seed=6)
    store = tmp_path / "models"
    with running(store) as http:
        fault_proxy.reset("error500")
        name = f"{fault_proxy.host}/broken/model:v1"
        response = http.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
        assert response.status_code == 502
        assert response.json() == {
            "error": "pull model manifest: registry returned 500 Internal Server Error"
        }
        streamed = http.post("/api/pull", json={"model": name, "insecure": True})
        assert streamed.status_code == 200 and ndjson(streamed)[-1] == response.json()
        dmr = http.post("/models/create", json={"from": name})
        assert dmr.status_code == 502
        assert dmr.text == "pull model manifest: registry returned 500 Internal Server Error\n"
        assert tags(http) == {} and manifests_in(store) == []


def test_token_auth_pull_and_push(
    tmp_path: Path, token_registry: Registry, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = token_registry
    assert registry.token_server is not None
    docker_config = tmp_path / "docker" / "config.json"
    docker_config.parent.mkdir()
    user, password = registry.token_server.user, registry.token_server.password
    secret = f"{user}:{password}".encode()
    docker_config.write_text(
        json.dumps({"auths": {registry.host: {"auth": base64.b64encode(secret).decode()}}})
    )
    private = f"{registry.host}/private/tiny:v1"
    public = f"{registry.host}/public/tiny:v1"
    # 1. Push with credentials from a Docker config.json.
    with running(tmp_path / "pusher", docker_config=docker_config) as http:
        upload_and_create(http, tiny_gguf, private)
        http.post("/api/copy", json={"source": private, "destination": public})
        for name in (private, public):
            done = http.post("/api/push", json={"model": name, "insecure": True, "stream": False})
            assert done.json() == {"status": "success"}, done.text
    users = {r["user"] for r in registry.token_server.requests}
    assert user in users
    digest = sha256(registry.manifest("private/tiny", "v1").content)

    # 2. Anonymous: a public repository pulls (anonymous bearer token), a private one is refused.
    empty = tmp_path / "no-docker-config.json"
    with running(tmp_path / "anonymous", docker_config=empty) as http:
        ok = http.post("/api/pull", json={"model": public, "insecure": True, "stream": False})
        assert ok.json() == {"status": "success"}
        refused = http.post("/api/pull", json={"model": private, "insecure": True, "stream": False})
        assert refused.status_code == 401
        assert refused.json()["error"].startswith("pull model manifest: unauthorized")
        dmr = http.post("/models/create", json={"from": private})
        assert (dmr.status_code, dmr.text) == (401, "Unauthorized\n")
        assert private not in tags(http)
        # Credentials with the request (X-Registry-Config, as the operator sends a pull secret).
        entries = {registry.host: {"username": user, "password": password}}
        as_map = {"X-Registry-Config": base64.urlsafe_b64encode(json.dumps(entries).encode())}
        body = {"model": private, "insecure": True, "stream": False}
        ok = http.post("/api/pull", json=body, headers=as_map)
        assert ok.json() == {"status": "success"}, ok.text
        assert http.request("DELETE", "/api/delete", json={"model": private}).status_code == 200
        config = {"auths": {registry.host: {"auth": base64.b64encode(secret).decode()}}}
        as_config = {"X-Registry-Config": base64.urlsafe_b64encode(json.dumps(config).encode())}
        dmr = http.post("/models/create", json={"from": private}, headers=as_config)
        assert ndjson(dmr)[-1]["type"] == "success"
        assert http.delete(f"/models/{private}").status_code == 200
        bad = http.post("/api/pull", json=body, headers={"X-Registry-Config": "not base64!"})
        assert (bad.status_code, bad.json()) == (
            400, {"error": "invalid X-Registry-Config header: not base64url JSON"}
        )  # fmt: skip
        assert private not in tags(http)
        upload_and_create(http, tiny_gguf, f"{registry.host}/private/other:v1")
        denied = http.post(
            "/api/push", json={"model": f"{registry.host}/private/other:v1", "insecure": True}
        )
        assert denied.status_code == 200, denied.text  # streaming: the error is the last line
        assert "unauthorized" in ndjson(denied)[-1]["error"]
        denied = http.post(f"/models/{registry.host}/private/other:v1/push")
        assert (denied.status_code, denied.text) == (401, "Unauthorized\n")
        # DMR's bearer-token is used as is.
        token = registry.token_server.issue(user, ["repository:private/tiny:pull"])
        dmr = http.post("/models/create", json={"from": private, "bearer-token": token})
        assert ndjson(dmr)[-1]["type"] == "success"
        assert tags(http)[private]["digest"] == digest.removeprefix("sha256:")

    # 3. Credentials from MODEL_RUNNER_REGISTRY_AUTH.
    monkeypatch.setenv(
        "MODEL_RUNNER_REGISTRY_AUTH",
        json.dumps({registry.host: {"username": user, "password": password}}),
    )
    with running(tmp_path / "env", docker_config=empty) as http:
        ok = http.post("/api/pull", json={"model": private, "insecure": True, "stream": False})
        assert ok.json() == {"status": "success"}, ok.text
        assert tags(http)[private]["digest"] == digest.removeprefix("sha256:")


def test_basic_auth_and_redirect_to_blob_storage(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.registry import TEST_PASSWORD, TEST_USER, redirecting_front

    size = 1 * MB
    blob = push_random_model(registry, "redirect/model", "v1", size, seed=13)
    empty = tmp_path / "no-docker-config.json"
    with redirecting_front(registry) as (front, storage):
        name = f"{front.host}/redirect/model:v1"
        with running(tmp_path / "anonymous", docker_config=empty) as http:
            refused = http.post(
                "/api/pull", json={"model": name, "insecure": True, "stream": False}
            )
            assert refused.status_code == 401
            assert refused.json() == {
                "error": "pull model manifest: unauthorized: authentication required"
            }
        monkeypatch.setenv(
            "MODEL_RUNNER_REGISTRY_AUTH", json.dumps({front.host: f"{TEST_USER}:{TEST_PASSWORD}"})
        )
        with running(tmp_path / "models", docker_config=empty) as http:
            done = http.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
            assert done.json() == {"status": "success"}, done.text
            assert http.head(f"/api/blobs/{blob}").status_code == 200
    ranged = [r for r in storage.requests if r.get("range")]
    assert len(ranged) >= 4  # 1 MB in 256 KB parts, fetched from the storage host
    assert not [r for r in storage.requests if "authorization" in r]  # never leaked there
    redirects = [p for m, p, a in front.requests if m == "GET" and blob in p and a]
    assert len(redirects) == 1  # resolved once, then every part goes to the storage host


# --------------------------------------------------------------------------- faults


def test_dropped_connection_then_resume(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy
) -> None:
    size = 4 * MB
    blob = push_random_model(registry, "faults/big", "v1", size, seed=-1)
    store = tmp_path / "models"
    name = f"{fault_proxy.host}/faults/big:v1"
    with running(store) as http:
        fault_proxy.reset("cut", cut_after=size // 2)
        failed = http.post("/api/pull", json={"model": name, "insecure": True})
        assert failed.status_code == 200  # the error comes mid-stream
        lines = ndjson(failed)
        assert "error" in lines[-1] and "pull blob" in lines[-1]["error"]
        assert any(x.get("completed") for x in lines)  # progress was reported first
        assert tags(http) == {} and manifests_in(store) == []
        assert http.head(f"/api/blobs/{blob}").status_code == 404
        assert {f"sha256-{blob[7:]}-partial", f"sha256-{blob[7:]}-partial-state"} <= set(
            partials_in(store)
        )  # kept for the next pull

        fault_proxy.reset("pass")
        done = http.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
        assert done.json() == {"status": "success"}, done.text
        assert fault_proxy.down < size * 0.75  # resumed: about half the blob came again
        assert http.head(f"/api/blobs/{blob}").status_code == 200
        assert partials_in(store) == []
        assert name in tags(http)


def test_stalled_transfer_is_restarted_and_resumed(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy
) -> None:
    size = 1 * MB
    blob = push_random_model(registry, "faults/stall", "v1", size, seed=12)
    config = dataclasses.replace(FAST, stall_timeout=0.5, min_part_size=4 * MB)  # one part
    with running(tmp_path / "models", config) as http:
        fault_proxy.reset("stall", cut_after=size // 2)
        started = time.monotonic()
        done = http.post(
            "/api/pull",
            json={
                "model": f"{fault_proxy.host}/faults/stall:v1",
                "insecure": True,
                "stream": False,
            },
        )
        assert done.json() == {"status": "success"}, done.text
        assert time.monotonic() - started >= 0.5  # it waited for the stall timeout
        assert fault_proxy.down < size * 1.3  # the retry continued where the stall began
        assert http.head(f"/api/blobs/{blob}").status_code == 200


def test_client_disconnect_stops_the_pull_and_keeps_the_partial(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy
) -> None:
    size = 2 * MB
    blob = push_random_model(registry, "faults/gone", "v1", size, seed=14)
    store = tmp_path / "models"
    name = f"{fault_proxy.host}/faults/gone:v1"
    one_part = dataclasses.replace(FAST, min_part_size=4 * MB)
    fault_proxy.reset("pass", rate=512 * KB)  # about four seconds for the blob
    with running(store, one_part) as http:
        with http.stream("POST", "/api/pull", json={"model": name, "insecure": True}) as response:
            for line in response.iter_lines():
                if (json.loads(line).get("completed") or 0) >= 256 * KB:
                    break  # enough has arrived that a resume must beat a full download: hang up
        moved, deadline = -1, time.monotonic() + 5
        while fault_proxy.down != moved and time.monotonic() < deadline:
            moved = fault_proxy.down
            time.sleep(0.3)
        assert fault_proxy.down == moved  # the download stopped with the client...
        assert moved < size * 0.75  # ...long before the blob was complete
        partial = store / "blobs" / f"sha256-{blob[7:]}-partial-state"
        assert partial.exists() and manifests_in(store) == [] and tags(http) == {}
        fault_proxy.reset("pass")
        done = http.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
        assert done.json() == {"status": "success"}
        assert fault_proxy.down < size  # resumed
        assert http.head(f"/api/blobs/{blob}").status_code == 200


def test_corrupt_blob_is_refused_and_removed(tmp_path: Path, registry: Registry) -> None:
    blob = push_random_model(registry, "faults/corrupt", "v1", 512 * KB, seed=8)
    data_file = registry.blob_data_path(blob)
    original = data_file.read_bytes()
    store = tmp_path / "models"
    name = f"{registry.host}/faults/corrupt:v1"
    try:
        flipped = bytearray(original)
        flipped[1000] ^= 0xFF
        data_file.write_bytes(bytes(flipped))
        with running(store) as http:
            response = http.post("/api/pull", json={"model": name, "insecure": True})
            last = ndjson(response)[-1]
            assert last["error"].startswith("digest mismatch, file must be downloaded again")
            quiet = http.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
            assert quiet.status_code == 400
            assert "digest mismatch" in quiet.json()["error"]
            dmr = ndjson(http.post("/models/create", json={"from": name}))
            assert dmr[-1]["type"] == "error" and "digest mismatch" in dmr[-1]["message"]
            assert tags(http) == {} and manifests_in(store) == []
            assert not [p for p in partials_in(store) if blob[7:] in p]  # the bad bytes are gone
            assert http.head(f"/api/blobs/{blob}").status_code == 404
    finally:
        data_file.write_bytes(original)


def test_concurrent_pulls_share_one_download(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy
) -> None:
    size = 2 * MB
    blob = push_random_model(registry, "shared/model", "v1", size, seed=9)
    name = f"{fault_proxy.host}/shared/model:v1"
    fault_proxy.reset("pass", rate=MB)  # about two seconds for the blob, in one range
    results: list[list[dict[str, Any]]] = []
    with running(tmp_path / "models", dataclasses.replace(FAST, min_part_size=4 * MB)) as http:

        def pull() -> None:
            response = http.post("/api/pull", json={"model": name, "insecure": True})
            results.append(ndjson(response))

        threads = [threading.Thread(target=pull) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 2
        for lines in results:
            assert lines[-1] == {"status": "success"}, lines[-1]
            progress = [x.get("completed", 0) for x in lines if x.get("digest") == blob]
            assert 0 < min(p for p in progress if p) < size  # both saw the download move
        assert fault_proxy.down < size * 1.3  # one download, not two


def test_full_disk_leaves_a_consistent_store(tmp_path: Path, registry: Registry) -> None:
    store = tmp_path / "small"
    store.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(store)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        blob = push_random_model(registry, "faults/huge", "v1", 3 * MB, seed=10)
        name = f"{registry.host}/faults/huge:v1"
        with running(store) as http:
            response = http.post(
                "/api/pull", json={"model": name, "insecure": True, "stream": False}
            )
            assert response.status_code == 507
            assert response.json() == {
                "error": "no space left on device while writing to the model store"
            }
            streamed = ndjson(http.post("/api/pull", json={"model": name, "insecure": True}))
            assert "no space left" in streamed[-1]["error"]
            assert tags(http) == {} and manifests_in(store) == []
            assert http.head(f"/api/blobs/{blob}").status_code == 404
            assert not [p for p in partials_in(store) if blob[7:] in p]
            small = push_random_model(registry, "faults/small", "v1", 64 * KB, seed=11)
            ok = http.post(
                "/api/pull",
                json={
                    "model": f"{registry.host}/faults/small:v1",
                    "insecure": True,
                    "stream": False,
                },
            )
            assert ok.json() == {"status": "success"}  # the store still works
            assert http.head(f"/api/blobs/{small}").status_code == 200
    finally:
        unmount(store)


def unmount(path: Path) -> None:
    for _ in range(20):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)  # the server thread may still be letting go of the folder
    subprocess.run(["umount", "-l", str(path)], check=False)
