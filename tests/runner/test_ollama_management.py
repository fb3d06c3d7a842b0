"""Ollama's model-management routes over real HTTP, checked against the reference shapes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import ollama
import pytest

from tests.conftest import sha256_file, upload_and_create
from tests.support.server import LiveServer


def test_root_and_version(http: httpx.Client) -> None:
    assert http.get("/").text == "Ollama is running"
    assert http.head("/").status_code == 200
    assert http.head("/api/version").status_code == 200
    assert "version" in http.get("/api/version").json()


def test_unknown_path_and_wrong_method(http: httpx.Client) -> None:
    assert http.get("/api/nope").status_code == 404
    assert http.get("/api/show").status_code == 405


def test_tags_empty_then_listed(http: httpx.Client, tiny_gguf: Path) -> None:
    assert http.get("/api/tags").json() == {"models": []}
    upload_and_create(http, tiny_gguf, "tiny")
    (entry,) = http.get("/api/tags").json()["models"]
    assert entry["name"] == entry["model"] == "tiny:latest"
    assert set(entry) == {"name", "model", "modified_at", "size", "digest", "details",
                          "capabilities"}  # fmt: skip
    assert len(entry["digest"]) == 64 and ":" not in entry["digest"]
    assert entry["size"] > tiny_gguf.stat().st_size  # layers plus config
    assert entry["details"]["family"] == "llama"
    assert entry["details"]["format"] == "gguf"
    assert entry["modified_at"].endswith("Z")


def test_show_returns_modelfile_template_parameters(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(
        http,
        tiny_gguf,
        "tiny",
        system="You are terse.",
        parameters={"stop": ["<end>"], "temperature": 0.3},
        template="{{ .System }} {{ .Prompt }}",
    )
    info = http.post("/api/show", json={"model": "tiny"}).json()
    assert info["system"] == "You are terse."
    assert info["template"] == "{{ .System }} {{ .Prompt }}"
    assert 'stop                           "<end>"' in info["parameters"]
    assert "FROM " in info["modelfile"] and "PARAMETER temperature 0.3" in info["modelfile"]
    assert info["model_info"]["general.architecture"] == "llama"
    assert info["model_info"]["tokenizer.ggml.tokens"] == []  # long arrays hidden unless verbose
    assert info["capabilities"] == ["completion"]
    assert {"name": "output_norm.weight", "type": "F32", "shape": [64]} in info["tensors"]
    verbose = http.post("/api/show", json={"model": "tiny", "verbose": True}).json()
    assert len(verbose["model_info"]["tokenizer.ggml.tokens"]) > 256
    assert {"name": "output_norm.weight", "type": "F32", "shape": [64]} in verbose["tensors"]


def test_copy_and_delete(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(http, tiny_gguf, "tiny")
    response = http.post("/api/copy", json={"source": "tiny", "destination": "tiny-copy:v1"})
    assert response.status_code == 200 and response.content == b""
    names = {m["name"] for m in http.get("/api/tags").json()["models"]}
    assert names == {"tiny:latest", "tiny-copy:v1"}
    response = http.request("DELETE", "/api/delete", json={"model": "tiny"})
    assert response.status_code == 200 and response.content == b""
    assert [m["name"] for m in http.get("/api/tags").json()["models"]] == ["tiny-copy:v1"]
    # The copy still works: its blobs were kept.
    assert http.post("/api/show", json={"model": "tiny-copy:v1"}).status_code == 200


def test_blob_head_and_upload(http: httpx.Client, tiny_gguf: Path) -> None:
    digest = sha256_file(tiny_gguf)
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    assert http.post(f"/api/blobs/{digest}", content=tiny_gguf.read_bytes()).status_code == 201
    assert http.head(f"/api/blobs/{digest}").status_code == 200
    assert http.post(f"/api/blobs/{digest}", content=b"ignored").status_code == 200


def test_create_streams_progress(http: httpx.Client, tiny_gguf: Path) -> None:
    digest = sha256_file(tiny_gguf)
    http.post(f"/api/blobs/{digest}", content=tiny_gguf.read_bytes())
    response = http.post("/api/create", json={"model": "s", "files": {"t.gguf": digest}})
    assert response.headers["content-type"] == "application/x-ndjson"
    statuses = [json.loads(line)["status"] for line in response.text.splitlines()]
    assert statuses[0] == "parsing GGUF"
    assert statuses[-2:] == ["writing manifest", "success"]


def test_legacy_modelfile_create(http: httpx.Client, tiny_gguf: Path) -> None:
    digest = sha256_file(tiny_gguf)
    http.post(f"/api/blobs/{digest}", content=tiny_gguf.read_bytes())
    modelfile = f'FROM @{digest}\nSYSTEM """Be Mario."""\nPARAMETER num_ctx 256\n'
    response = http.post("/api/create", json={"name": "mario", "modelfile": modelfile})
    assert response.status_code == 200
    response = http.post("/api/create", json={"model": "luigi", "modelfile": "FROM mario"})
    assert response.status_code == 200
    info = http.post("/api/show", json={"model": "luigi"}).json()
    assert info["system"] == "Be Mario."
    assert info["details"]["parent_model"] == "mario:latest"


def test_ps_is_empty_without_loaded_models(http: httpx.Client) -> None:
    assert http.get("/api/ps").json() == {"models": []}


def test_official_ollama_client_works_unchanged(runner: LiveServer, tiny_gguf: Path) -> None:
    client = ollama.Client(host=runner.url)
    digest = client.create_blob(tiny_gguf)
    assert digest == sha256_file(tiny_gguf)
    progress = list(client.create(model="tiny", files={"tiny.gguf": digest}, stream=True))
    assert progress[-1].status == "success"
    client.create(model="tiny-sys", from_="tiny", system="Talk like a pirate.")
    assert {m.model for m in client.list().models} == {"tiny:latest", "tiny-sys:latest"}
    shown = client.show("tiny-sys")
    assert shown.modelfile is not None and "SYSTEM Talk like a pirate." in shown.modelfile
    assert shown.details is not None and shown.details.family == "llama"
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    client.copy("tiny-sys", "pirate")
    client.delete("tiny-sys")
    assert {m.model for m in client.list().models} == {"tiny:latest", "pirate:latest"}
    with pytest.raises(ollama.ResponseError) as info:
        client.show("missing")
    assert info.value.status_code == 404
    assert info.value.error == "model 'missing' not found"
