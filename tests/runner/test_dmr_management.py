"""DMR model management over real HTTP: shapes, the untag/delete rule, the Desktop prefix."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from tests.conftest import upload_and_create


def test_models_listing_shape(http: httpx.Client, tiny_gguf: Path) -> None:
    assert http.get("/models").json() == []
    upload_and_create(http, tiny_gguf, "tiny")
    (model,) = http.get("/models").json()
    assert model["id"].startswith("sha256:") and len(model["id"]) == 71
    assert model["tags"] == ["registry.ollama.ai/library/tiny:latest"]
    assert isinstance(model["created"], int)
    config = model["config"]
    assert config["format"] == "gguf"
    assert config["architecture"] == "llama"
    assert config["quantization"] == "F32"
    assert config["size"].endswith("KiB")
    assert config["gguf"]["general.architecture"] == "llama"
    assert config["context_size"] == 512


def test_get_model_by_dmr_name_bare_name_and_id(
    http: httpx.Client, tiny_gguf: Path, store_dir: Path
) -> None:
    upload_and_create(http, tiny_gguf, "tiny")
    http.post("/models/tiny/tag", params={"repo": "ai/tiny", "tag": "v1"})
    # A tag made later is still the same model: one creation time whatever the name.
    (tag_manifest,) = store_dir.glob("manifests/*/ai/tiny/v1")
    os.utime(tag_manifest, (time.time() + 3600, time.time() + 3600))
    by_dmr = http.get("/models/ai/tiny:v1").json()
    by_full = http.get("/models/docker.io/ai/tiny:v1").json()
    by_bare = http.get("/models/tiny").json()
    by_id = http.get(f"/models/{by_dmr['id']}").json()
    assert by_dmr == by_full == by_bare == by_id
    assert sorted(by_dmr["tags"]) == [
        "docker.io/ai/tiny:v1",
        "registry.ollama.ai/library/tiny:latest",
    ]


def test_missing_model_is_plain_text_404(http: httpx.Client) -> None:
    response = http.get("/models/ai/nothing")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Model not found\n"


def test_tag_needs_repo_and_tag(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(http, tiny_gguf, "tiny")
    response = http.post("/models/tiny/tag", params={"repo": "ai/x"})
    assert response.status_code == 400
    response = http.post("/models/tiny/tag", params={"repo": "ai/x", "tag": "1"})
    assert response.status_code == 201
    assert response.json()["target"] == "docker.io/ai/x:1"


def test_delete_untags_then_deletes_and_409_by_id(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(http, tiny_gguf, "tiny")
    http.post("/models/tiny/tag", params={"repo": "ai/tiny", "tag": "latest"})
    model_id = http.get("/models/ai/tiny").json()["id"]
    conflict = http.delete(f"/models/{model_id}")
    assert conflict.status_code == 409
    assert len(http.get("/models").json()[0]["tags"]) == 2  # nothing changed
    untag = http.delete("/models/ai/tiny")
    assert untag.status_code == 200
    assert untag.json() == [{"Untagged": "docker.io/ai/tiny:latest"}]
    last = http.delete("/models/registry.ollama.ai/library/tiny:latest")
    assert last.json() == [
        {"Untagged": "registry.ollama.ai/library/tiny:latest"},
        {"Deleted": model_id},
    ]
    assert http.get("/models").json() == []


def test_force_delete_by_id_removes_every_tag(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(http, tiny_gguf, "tiny")
    http.post("/models/tiny/tag", params={"repo": "ai/tiny", "tag": "latest"})
    model_id = http.get("/models/ai/tiny").json()["id"]
    response = http.delete(f"/models/{model_id}", params={"force": "true"})
    assert response.status_code == 200
    assert response.json()[-1] == {"Deleted": model_id}
    assert http.get("/api/tags").json() == {"models": []}


def test_docker_desktop_prefix_and_double_slashes(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(http, tiny_gguf, "tiny")
    assert http.get("/exp/vDD4.40/models").json() == http.get("/models").json()
    assert http.get("//models").status_code == 200
    df = http.get("/exp/vDD4.40/engines/df").json()
    assert df["models_disk_usage"] >= tiny_gguf.stat().st_size


def test_one_store_for_both_dialects(http: httpx.Client, tiny_gguf: Path) -> None:
    """A model tagged through DMR shows in Ollama's /api/tags, and the other way round."""
    upload_and_create(http, tiny_gguf, "tiny")
    http.post("/models/tiny/tag", params={"repo": "ai/smol", "tag": "latest"})
    names = {m["name"] for m in http.get("/api/tags").json()["models"]}
    assert names == {"tiny:latest", "docker.io/ai/smol:latest"}
    shown = http.post("/api/show", json={"model": "docker.io/ai/smol:latest"})
    assert shown.status_code == 200
