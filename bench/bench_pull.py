"""Pull throughput: the runner pulling a ~100 MB model from a local registry, against curl fetching
the same blob from the same registry, in the same run.

    .venv/bin/python bench/bench_pull.py [--size-mb 100] [--runs 5] [--no-write]

Starts Debian's docker-registry on loopback (as the tests do), pushes a DMR artifact whose GGUF layer
is random bytes, then alternates: ``curl -o FILE`` of the blob, and ``POST /api/pull`` (then delete)
on a live runner, for the default settings (one range for a blob under 100 MB) and for 8 parallel
ranges. Each pull writes to disk, hashes, fsyncs and publishes the blob; curl only writes it.
Medians are reported in the "Pull throughput" section of BENCHMARKS.md (``bench.report``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.registry import Registry, run_registry  # noqa: E402
from tests.support.server import LiveServer  # noqa: E402

from bench.report import machine, write_section  # noqa: E402
from modelrunner.app import create_app  # noqa: E402
from modelrunner.core.transfer import CONFIG_KEY, TransferConfig  # noqa: E402
from modelrunner.settings import Settings  # noqa: E402

SECTION = "## Pull throughput"
MB = 1 << 20
DMR_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
DMR_GGUF = "application/vnd.docker.ai.gguf.v3"


def push_model(registry: Registry, size: int) -> tuple[str, str]:
    data = os.urandom(size)
    config = b'{"config":{"format":"gguf","architecture":"llama"},"descriptor":{}}'
    registry.push_artifact("bench/model", "v1", config, DMR_CONFIG, [(DMR_GGUF, data)])
    return f"{registry.host}/bench/model:v1", registry.push_blob("bench/model", data)


def time_curl(url: str, target: Path, verify: bool = False) -> float:
    """curl to a file; with ``verify``, then also sha256 and fsync it (what a pull must do)."""
    started = time.perf_counter()
    subprocess.run(["curl", "-sSf", "-o", str(target), url], check=True)
    if verify:
        digest = hashlib.sha256()
        with target.open("rb") as handle:
            for chunk in iter(lambda: handle.read(4 * MB), b""):
                digest.update(chunk)
            os.fsync(handle.fileno())
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def time_pull(http: httpx.Client, name: str) -> float:
    started = time.perf_counter()
    response = http.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
    elapsed = time.perf_counter() - started
    if response.json() != {"status": "success"}:
        raise RuntimeError(f"pull failed: {response.text}")
    http.request("DELETE", "/api/delete", json={"model": name}).raise_for_status()
    return elapsed


def runner(store: Path, config: TransferConfig) -> LiveServer:
    app = create_app(Settings(models=store, listen=[], prune=False))
    app.state.services.extra[CONFIG_KEY] = config
    return LiveServer(app).start()


def measure(size_mb: int, runs: int) -> dict[str, list[float]]:
    size = size_mb * MB
    times: dict[str, list[float]] = {"curl": [], "curl_verify": [], "pull": [], "pull8": []}
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as folder:
        work = Path(folder)
        with run_registry(work / "registry") as registry:
            name, digest = push_model(registry, size)
            blob_url = f"{registry.url}/v2/bench/model/blobs/{digest}"
            default = TransferConfig()
            parallel = dataclasses.replace(default, min_part_size=max(size // 8, 1), max_streams=8)
            servers = {
                "pull": runner(work / "store-default", default),
                "pull8": runner(work / "store-parallel", parallel),
            }
            try:
                clients = {
                    key: httpx.Client(base_url=server.url, timeout=600)
                    for key, server in servers.items()
                }
                time_pull(clients["pull"], name)  # warm-up: connections, page cache
                for _ in range(runs):
                    times["curl"].append(time_curl(blob_url, work / "curl.bin"))
                    times["curl_verify"].append(time_curl(blob_url, work / "curl.bin", True))
                    for key, client in clients.items():
                        times[key].append(time_pull(client, name))
                for client in clients.values():
                    client.close()
            finally:
                for server in servers.values():
                    server.stop()
    return times


def report(times: dict[str, list[float]], size_mb: int, runs: int, started: str) -> str:
    medians = {key: statistics.median(values) for key, values in times.items()}
    speed = {key: size_mb / value for key, value in medians.items()}
    lines = [
        SECTION,
        "",
        f"`bench/bench_pull.py`: a {size_mb} MB blob pulled from a local docker-registry on "
        f"loopback, median of {runs} runs, all measured together in one run ({started}, "
        f"Python {platform.python_version()}).",
        "",
        "| client | median time | throughput | vs curl |",
        "|---|---|---|---|",
    ]
    labels = {
        "curl": "curl -o FILE (reference)",
        "curl_verify": "curl -o FILE, then sha256 + fsync",
        "pull": "runner /api/pull, default parts (1 range)",
        "pull8": "runner /api/pull, 8 parallel ranges",
    }
    for key in ("curl", "curl_verify", "pull", "pull8"):
        lines.append(
            f"| {labels[key]} | {medians[key]:.3f} s | {speed[key]:.0f} MB/s | "
            f"{speed[key] / speed['curl']:.2f}x |"
        )
    lines += [
        "",
        "A pull also hashes (sha256, while the bytes arrive), fsyncs and atomically publishes "
        "the blob and writes the manifest; plain curl only writes the file, so the second row "
        "adds the same verification to curl. Ratios are throughput relative to plain curl "
        "(above 1 = faster). Parallel ranges pay off on links with latency or per-connection "
        "limits; on loopback with few CPUs they compete for the same cores.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    started = machine()
    section = report(measure(args.size_mb, args.runs), args.size_mb, args.runs, started)
    print(section)
    if not args.no_write:
        write_section("pull", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
