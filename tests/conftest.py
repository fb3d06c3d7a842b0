"""Shared fixtures: a temporary store, a live runner over real HTTP, model files."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.app import create_app
from modelrunner.settings import Settings
from tests.support.server import LiveServer
from tests.support.tiny_model import write_tiny_gguf

pytest_plugins = ["tests.support.cluster", "tests.support.node", "tests.support.registry"]


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    from modelrunner.core.defaults import default_gguf

    return default_gguf()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def settings(store_dir: Path) -> Settings:
    return Settings(models=store_dir, listen=[], prune=False)


@pytest.fixture
def runner(settings: Settings) -> Iterator[LiveServer]:
    """The whole runner app behind a real uvicorn server on loopback."""
    server = LiveServer(create_app(settings)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(runner: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runner.url, timeout=60) as client:
        yield client


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def upload_and_create(client: httpx.Client, path: Path, name: str, **extra: object) -> str:
    """Import a GGUF the standard Ollama way: upload the blob, then create with ``files``."""
    digest = sha256_file(path)
    response = client.post(f"/api/blobs/{digest}", content=path.read_bytes())
    assert response.status_code in (200, 201), response.text
    body = {"model": name, "files": {path.name: digest}, "stream": False, **extra}
    response = client.post("/api/create", json=body)
    assert response.status_code == 200, response.text
    return digest


@pytest.fixture(scope="module")
def gemma_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A runner whose store holds the real Gemma 3 270M as gemma3:270m, shared by a module."""
    from modelrunner.core.defaults import ensure_default_model
    from modelrunner.store.models import ModelStore

    root = tmp_path_factory.mktemp("gemma") / "models"
    ensure_default_model(ModelStore(root))
    server = LiveServer(create_app(Settings(models=root, listen=[], prune=False))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_runner(store_dir: Path) -> Iterator[Any]:
    """Start a runner with custom settings: ``make_runner(max_queue=1, ...)``."""
    servers: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        settings = Settings(models=store_dir, listen=[], prune=False, **overrides)
        server = LiveServer(create_app(settings)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
