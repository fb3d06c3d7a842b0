"""kill -9 of a runner process at random points of pull, push, create, copy, delete and blob
upload, then the store checked: every manifest resolves to blobs whose bytes match their digest,
no blob file under a final name is partial, and what the restarted runner lists is exactly what
the manifests name. Used by tests/reliability/test_crash.py (a few kills) and
bench/reliability.py (many)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.registry import FaultProxy, Registry
from tests.support.runner_process import RunnerProcess

MB = 1 << 20
OPERATIONS = ("pull", "push", "create", "copy", "delete", "upload")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(MB), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def manifest_names(store: Path) -> dict[str, Path]:
    """``host/namespace/model:tag`` of every manifest file."""
    root = store / "manifests"
    names = {}
    for path in root.rglob("*") if root.exists() else []:
        if path.is_file() and not path.name.startswith("."):
            parts = path.relative_to(root).parts
            names["/".join(parts[:-1]) + ":" + parts[-1]] = path
    return names


def store_problems(store: Path) -> list[str]:
    """What is wrong with a store on disk (read while no runner runs)."""
    problems = []
    blobs = store / "blobs"
    for path in sorted(blobs.glob("sha256-*")) if blobs.exists() else []:
        if path.name.count("-") != 1:
            continue  # resume files (``-partial``, ``-partial-state``) are not blobs
        if _sha256(path) != "sha256:" + path.name.removeprefix("sha256-"):
            problems.append(f"blob {path.name} does not match its digest (partial or corrupt)")
    for name, path in manifest_names(store).items():
        try:
            manifest = json.loads(path.read_bytes())
            digests = [manifest["config"]["digest"]] + [x["digest"] for x in manifest["layers"]]
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"manifest {name} is unreadable: {exc}")
            continue
        for digest in digests:
            if not (blobs / digest.replace(":", "-")).is_file():
                problems.append(f"manifest {name} names missing blob {digest}")
    return problems


def saved_bytes(store: Path) -> int:
    """Bytes the partial downloads' state files record as written and synced."""
    total = 0
    for path in (store / "blobs").glob("*-partial-state") if (store / "blobs").exists() else []:
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
            total += sum(int(p["completed"]) for p in json.loads(path.read_text())["parts"])
    return total


def listed(http: httpx.Client) -> set[str]:
    return {m["name"] for m in http.get("/api/tags").json()["models"]}


def listing_problems(http: httpx.Client, store: Path) -> list[str]:
    """What the restarted runner lists against what the store holds."""
    problems = []
    on_disk = {n.removeprefix("registry.ollama.ai/library/") for n in manifest_names(store)}
    names = listed(http)
    if names != on_disk:
        problems.append(f"listed {sorted(names ^ on_disk)} differ from the manifests")
    for name in names:
        if http.post("/api/show", json={"model": name}).status_code != 200:
            problems.append(f"listed {name} cannot be shown")
    return problems


@dataclass
class CrashResult:
    kills: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)
    resumed_pulls: int = 0
    failed_rounds: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _slow_upload(data: bytes, pause: float) -> Iterator[bytes]:
    for start in range(0, len(data), 256 * 1024):
        yield data[start : start + 256 * 1024]
        time.sleep(pause)


class CrashLoop:
    """One runner process over ``store``; :meth:`round` starts an operation in a thread, kills
    the runner at a random moment, restarts it and checks the store."""

    def __init__(self, runner: RunnerProcess, registry: Registry, proxy: FaultProxy,
                 tiny: Path, pull_ref: str, pull_size: int, seed: int) -> None:  # fmt: skip
        self.runner, self.registry, self.proxy = runner, registry, proxy
        self.tiny, self.pull_ref, self.pull_size = tiny, pull_ref, pull_size
        self.rng = random.Random(seed)
        self.result = CrashResult()
        self.counter = 0

    def http(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.runner.url, timeout=timeout)

    def ensure_tiny(self) -> None:
        with self.http() as http:
            if http.post("/api/show", json={"model": "tiny"}).status_code == 200:
                return
            data = self.tiny.read_bytes()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            http.post(f"/api/blobs/{digest}", content=data).raise_for_status()
            body = {"model": "tiny", "files": {"tiny.gguf": digest}, "stream": False}
            http.post("/api/create", json=body).raise_for_status()

    def _operation(self, kind: str) -> tuple[Callable[[httpx.Client], object], float]:
        """The call to interrupt, and the window (seconds) to kill it in."""
        self.counter += 1
        n = self.counter
        if kind == "pull":
            # About three seconds of transfer: the state file (saved each second) has progress.
            self.proxy.reset("pass", rate=self.pull_size / 3.0)
            body = {"model": self.pull_ref, "insecure": True, "stream": False}
            return (lambda h: h.post("/api/pull", json=body)), 3.5
        if kind == "push":
            ref = f"{self.registry.host}/crash/pushed:v{n}"
            body = {"model": "tiny", "insecure": True, "stream": False}
            return (lambda h: (h.post("/api/copy", json={"source": "tiny", "destination": ref}),
                               h.post("/api/push", json=body | {"model": ref}))), 0.6  # fmt: skip
        if kind == "create":
            body = {"model": f"made-{n}", "from": "tiny", "system": f"s{n}", "stream": False,
                    "parameters": {"temperature": 0.1 * (n % 9)}}  # fmt: skip
            return (lambda h: h.post("/api/create", json=body)), 0.3
        if kind == "copy":
            body = {"source": "tiny", "destination": f"copy-{n}"}
            return (lambda h: h.post("/api/copy", json=body)), 0.15
        if kind == "delete":
            with self.http() as http:
                victims = sorted(listed(http) - {"tiny:latest"}) or ["tiny:latest"]
            body = {"model": self.rng.choice(victims)}
            return (lambda h: h.request("DELETE", "/api/delete", json=body)), 0.15
        data = random.Random(n).randbytes(2 * MB)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return (lambda h: h.post(f"/api/blobs/{digest}", content=_slow_upload(data, 0.05))), 0.5

    def round(self, kind: str) -> None:
        call, window = self._operation(kind)
        client = self.http(timeout=30)

        def run() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the runner dies under it: expected
                call(client)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        time.sleep(self.rng.uniform(0.0, window))
        self.runner.kill()
        worker.join(30)
        client.close()
        self.result.kills += 1
        self.result.by_operation[kind] = self.result.by_operation.get(kind, 0) + 1
        problems = store_problems(self.runner.store)
        saved = saved_bytes(self.runner.store)
        self.proxy.reset("pass")
        self.runner.start()
        with self.http() as http:
            problems += listing_problems(http, self.runner.store)
            if kind == "pull":
                problems += self._repull(http, saved)
        self.result.problems += [f"after a kill during {kind}: {p}" for p in problems]
        self.result.failed_rounds += bool(problems)
        self.ensure_tiny()

    def _repull(self, http: httpx.Client, saved: int) -> list[str]:
        """Pull again after the kill: it completes, fetching only what the partial download's
        state did not already hold."""
        done = http.post("/api/pull", json={"model": self.pull_ref, "insecure": True,
                                            "stream": False})  # fmt: skip
        if done.status_code != 200 or done.json() != {"status": "success"}:
            return [f"the pull after restart failed: {done.status_code} {done.text[:200]}"]
        fetched = self.proxy.down  # blob bytes plus a few KiB of manifest, config and headers
        problems = []
        if fetched > self.pull_size - saved + 256 * 1024:
            problems.append(f"the pull after restart fetched {fetched} bytes of "
                            f"{self.pull_size} with {saved} already saved")  # fmt: skip
        elif saved:
            self.result.resumed_pulls += 1
        http.request("DELETE", "/api/delete", json={"model": self.pull_ref})
        return problems

    def run(self, kills: int) -> CrashResult:
        started = time.monotonic()
        self.ensure_tiny()
        for index in range(kills):
            self.round(OPERATIONS[index % len(OPERATIONS)])
        self.result.seconds = time.monotonic() - started
        return self.result
