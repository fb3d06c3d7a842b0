"""A full disk during pull, create, blob upload and archive load, with the store on a small
tmpfs: a clean error in the caller's dialect, nothing registered, and the space given back.
Needs root to mount; skipped otherwise, but fails under CI=true (CI runs as root)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import upload_and_create
from tests.runner.test_dmr_completeness import dmr_archive
from tests.runner.test_registry import push_random_model
from tests.support.crash import MB, manifest_names, store_problems
from tests.support.fuzz import shape_problem
from tests.support.registry import Registry
from tests.support.runner_process import RunnerProcess
from tests.support.tiny_model import write_tiny_gguf

HEADROOM = 256 * 1024  # free bytes left on the store when each case runs


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


@dataclass
class FullStore:
    root: Path
    http: httpx.Client
    runner: RunnerProcess


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        message = f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def unmount(path: Path) -> None:
    for _ in range(50):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def full_store(tmp_path: Path, tiny_gguf: Path) -> Iterator[FullStore]:
    root = tmp_path / "small"
    mount_tmpfs(root, "8m")
    runner = RunnerProcess(root / "models", tmp_path / "runner.log")
    try:
        runner.start()
        with httpx.Client(base_url=runner.url, timeout=60) as http:
            upload_and_create(http, tiny_gguf, "tiny")
            filler = root / "filler"
            with filler.open("wb") as handle:  # leave HEADROOM free
                handle.write(b"\0" * max(free_bytes(root) - HEADROOM, 0))
            yield FullStore(root, http, runner)
            filler.unlink()
            # The store works again once there is room.
            upload_and_create(http, write_tiny_gguf(tmp_path / "after.gguf", seed=9), "after")
    finally:
        runner.stop()
        unmount(root)


def check_clean(store: FullStore, before: set[str], free: int, response: httpx.Response,
                path: str, status: tuple[int, ...] = (507,)) -> None:  # fmt: skip
    assert response.status_code in status, response.text
    assert shape_problem(response, path) is None, response.text
    assert "no space left" in response.text
    models = store.root / "models"
    assert set(manifest_names(models)) == before, "something was registered"
    assert store_problems(models) == []
    assert not [p for p in (models / "blobs").iterdir() if p.name.startswith(".")], "temp left"
    assert free_bytes(store.root) >= free - 8192, "space was not given back"


def test_full_disk_everywhere(full_store: FullStore, registry: Registry, tmp_path: Path) -> None:
    http, before = full_store.http, set(manifest_names(full_store.root / "models"))
    free = free_bytes(full_store.root)
    assert free <= HEADROOM + 8192

    big = f"{registry.host}/full/big:v1"
    push_random_model(registry, "full/big", "v1", 2 * MB, seed=21)
    pulled = http.post("/api/pull", json={"model": big, "insecure": True, "stream": False})
    check_clean(full_store, before, free, pulled, "/api/pull")
    dmr = http.post("/models/create", json={"from": big})  # DMR streams: 200, error inside
    assert "no space left" in dmr.text
    check_clean(full_store, before, free, dmr, "/models/create", (200, 507))

    body = {"model": "wordy", "from": "tiny", "system": "s" * (HEADROOM * 2), "stream": False}
    created = http.post("/api/create", json=body)
    check_clean(full_store, before, free, created, "/api/create")

    data = os.urandom(MB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    uploaded = http.post(f"/api/blobs/{digest}", content=data)
    check_clean(full_store, before, free, uploaded, "/api/blobs/x")

    archive, _ = dmr_archive(write_tiny_gguf(tmp_path / "other.gguf", seed=3))
    loaded = http.post("/models/load", content=archive)
    check_clean(full_store, before, free, loaded, "/models/load")
