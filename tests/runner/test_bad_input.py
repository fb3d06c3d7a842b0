"""Bad input gets a clear error in the caller's dialect, and the store is unchanged afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import sha256_file, upload_and_create


def snapshot(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_size for p in store.rglob("*") if p.is_file()}


@pytest.fixture
def seeded(http: httpx.Client, tiny_gguf: Path, store_dir: Path) -> Iterator[dict[str, int]]:
    upload_and_create(http, tiny_gguf, "tiny")
    before = snapshot(store_dir)
    yield before
    assert snapshot(store_dir) == before, "a rejected request changed the store"


OLLAMA_CASES = [
    ("POST", "/api/show", b"{not json", 400, "invalid JSON"),
    ("POST", "/api/show", b"", 400, "missing request body"),
    ("POST", "/api/show", b'{"model": 5}', 400, "invalid value for model"),
    ("POST", "/api/show", b'{"model": "missing"}', 404, "model 'missing' not found"),
    ("POST", "/api/show", b'{"model": "../../etc/passwd"}', 404, "not found"),
    ("POST", "/api/show", b'{"model": "tiny", "verbose": "yes"}', 400, "verbose"),
    (
        "POST",
        "/api/copy",
        b'{"source": "tiny", "destination": "../x"}',
        400,
        'destination "../x" is invalid',
    ),
    (
        "POST",
        "/api/copy",
        b'{"source": "bad name", "destination": "x"}',
        400,
        'source "bad name" is invalid',
    ),
    ("POST", "/api/copy", b'{"source": "nope", "destination": "x"}', 404, 'model "nope" not found'),
    ("DELETE", "/api/delete", b'{"model": "nope"}', 404, "model 'nope' not found"),
    ("DELETE", "/api/delete", b"[]", 400, "JSON object"),
    ("POST", "/api/create", b'{"model": "x"}', 400, "neither 'from' or 'files' was specified"),
    ("POST", "/api/create", b'{"model": "../x", "from": "tiny"}', 400, "invalid model name"),
    # A FROM model that is not local is pulled first, as Ollama does (here: nothing listens).
    (
        "POST",
        "/api/create",
        b'{"model": "x", "from": "127.0.0.1:9/ns/nope", "stream": false}',
        502,
        "cannot reach",
    ),
    (
        "POST",
        "/api/create",
        b'{"model": "x", "files": {"/etc/m.gguf": "sha256:' + b"a" * 64 + b'"}}',
        400,
        "file path must be relative",
    ),
    (
        "POST",
        "/api/create",
        b'{"model": "x", "files": {"../m.gguf": "sha256:' + b"a" * 64 + b'"}}',
        400,
        "file path must be relative",
    ),
    (
        "POST",
        "/api/create",
        b'{"model": "x", "files": {"m.gguf": "sha256:bad"}}',
        400,
        "invalid digest format",
    ),
    (
        "POST",
        "/api/create",
        b'{"model": "x", "files": {"m.gguf": "sha256:' + b"a" * 64 + b'"}}',
        404,
        "not found",
    ),
    (
        "POST",
        "/api/create",
        b'{"model": "x", "from": "tiny", "parameters": {"num_ctx": "big"}}',
        400,
        'option "num_ctx" must be of type integer',
    ),
    ("POST", "/api/create", b'{"model": "x", "modelfile": "SYSTEM hi"}', 400, "no FROM line"),
    ("POST", "/api/blobs/sha256:123", b"data", 400, "invalid digest format"),
    ("POST", "/api/blobs/../../etc/passwd", b"data", 404, ""),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), OLLAMA_CASES)
def test_ollama_errors(
    http: httpx.Client,
    seeded: dict[str, int],
    method: str,
    path: str,
    body: bytes,
    status: int,
    message: str,
) -> None:
    response = http.request(method, path, content=body)
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["error"]


def test_digest_mismatch_on_upload(http: httpx.Client, seeded: dict[str, int]) -> None:
    wrong = "sha256:" + "0" * 64
    response = http.post(f"/api/blobs/{wrong}", content=b"some bytes")
    assert response.status_code == 400
    assert response.json()["error"].startswith(f'digest mismatch, expected "{wrong}", got "sha256:')


def test_create_from_non_gguf_blob(http: httpx.Client, tmp_path: Path, store_dir: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"definitely not gguf")
    digest = sha256_file(junk)
    assert http.post(f"/api/blobs/{digest}", content=junk.read_bytes()).status_code == 201
    response = http.post("/api/create", json={"model": "j", "files": {"j.gguf": digest}})
    assert response.status_code == 400
    assert "not a GGUF file" in response.json()["error"]
    assert not (store_dir / "manifests" / "registry.ollama.ai").exists()
    assert http.get("/api/tags").json() == {"models": []}


DMR_CASES = [
    ("GET", "/models/ai/none", 404, "Model not found\n"),
    ("DELETE", "/models/ai/none", 404, "Model not found\n"),
    ("POST", "/models/tiny/tag?repo=ai/x", 400, "Missing repo or tag query parameter\n"),
    ("POST", "/models/tiny/tag?repo=../x&tag=1", 400, "Invalid model reference\n"),
    ("POST", "/models/none/tag?repo=ai/x&tag=1", 404, "Model not found\n"),
]


@pytest.mark.parametrize(("method", "path", "status", "text"), DMR_CASES)
def test_dmr_errors_are_plain_text(
    http: httpx.Client, seeded: dict[str, int], method: str, path: str, status: int, text: str
) -> None:
    response = http.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == text
