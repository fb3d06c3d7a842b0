"""The operator at scale: N Models over K runner instances on the local cluster (issue 17).

    .venv/bin/python bench/bench_operator.py [--models 200] [--instances 1] [--rest 60]
        [--tree PATH] [--label after] [--out result.json] [--logs DIR]
    .venv/bin/python bench/bench_operator.py --report before.json after.json ...

Real API server (the repo's cluster harness, started if needed and left running), K runner
processes (``modelrunner serve``) on loopback, each holding one tiny base model, and the operator
as a process (bench/operator_probe.py, which counts its API server requests and runner calls)
managing them as K external ModelRunners. N Models are Modelfile creates ``FROM base`` with a
system prompt of their own, so every Model is a distinct manifest on every instance.

Measured: time from the first create until every Model is Ready; per-Model latency from its create
call to the first watch event that shows it Ready (p50/p99); operator RSS at rest and its peak
(VmHWM); runner calls (the runners' access logs) and API server requests (the operator's own
count) per minute over ``--rest`` seconds once all are Ready; time until all are deleted.
``--tree`` runs the operator (and runner) code of another checkout, e.g. a git worktree of the
commit before a change. ``--report`` writes the "Operator at scale" section of BENCHMARKS.md
from saved results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubernetes_asyncio import client, config, watch  # noqa: E402
from tests.support import cluster as harness  # noqa: E402
from tests.support.server import free_port  # noqa: E402
from tests.support.tiny_model import write_tiny_gguf  # noqa: E402

from bench.report import machine, write_section  # noqa: E402

GROUP, VERSION = "modelrunner.io", "v1alpha1"
CREATE_CONCURRENCY = 16


@contextlib.contextmanager
def cluster() -> Iterator[str]:
    """A reachable cluster's kubeconfig; holds a session lease as pytest sessions do, so a
    pytest session that started the shared cluster does not stop it under the benchmark."""
    env = os.environ.get("KUBECONFIG")
    kubectl = harness.find_binary("kubectl")
    if env and harness._reachable(env, kubectl):
        yield env
        return
    lease = harness.SESSIONS_DIR / str(os.getpid())
    with harness._sessions_lock():
        harness._cluster_script("up", timeout=harness.UP_TIMEOUT)
        harness.SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
        lease.touch()
    try:
        yield str(harness.LOCAL_KUBECONFIG)
    finally:
        lease.unlink(missing_ok=True)


def python_env(tree: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(tree / "operator"), str(tree / "runner"), str(ROOT)])
    return dict(os.environ, PYTHONPATH=path, **extra)


class Runner:
    """A ``modelrunner serve`` process on loopback with the base model in its store."""

    def __init__(self, tree: Path, work: Path, index: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / f"runner-{index}.log"
        env = python_env(tree, MODEL_RUNNER_MODELS=str(work / f"store-{index}"),
                         MODEL_RUNNER_LISTEN=f"127.0.0.1:{self.port}",
                         MODEL_RUNNER_PRUNE="false")  # fmt: skip
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelrunner.cli", "serve"], env=env,
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def seed(self, gguf: Path) -> None:
        import hashlib

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/api/version", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        data = gguf.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with httpx.Client(base_url=self.url, timeout=60) as http:
            http.post(f"/api/blobs/{digest}", content=data).raise_for_status()
            body = {"model": "base", "files": {gguf.name: digest}, "stream": False}
            http.post("/api/create", json=body).raise_for_status()

    def calls(self) -> int:
        return self.log.read_text(errors="replace").count('HTTP/1.1" ')

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Operator:
    def __init__(
        self, tree: Path, work: Path, kubeconfig: str, namespace: str, trace: bool = False
    ) -> None:
        self.counts = work / "operator-counts.json"
        self.log = work / "operator.log"
        self.top = work / "tracemalloc.txt"
        env = python_env(tree, KUBECONFIG=kubeconfig, BENCH_COUNTS=str(self.counts))
        if trace:
            env["BENCH_TRACEMALLOC"] = str(self.top)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "operator_probe.py"), "--standalone",
             "--namespace", namespace], env=env, cwd=tree,
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def memory(self) -> tuple[float, float]:
        """(RSS, peak RSS) in MB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def requests(self) -> tuple[int, dict[str, int]]:
        try:
            data = json.loads(self.counts.read_text())
        except (OSError, ValueError):
            return 0, {}
        return sum(data["api"].values()), data["runner"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def ready(obj: dict[str, Any]) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


class Watcher:
    """One watch of the namespace's Models: when each was first seen Ready, and which exist."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.ready_at: dict[str, float] = {}
        self.present: set[str] = set()
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        try:
            await self._run()
        except Exception as exc:  # a dead watch would look like a hang
            print(f"watch failed: {exc!r}", flush=True)
            raise

    async def _run(self) -> None:
        version = ""
        while True:
            stream = watch.Watch().stream(
                self.api.list_namespaced_custom_object, GROUP, VERSION, self.namespace, "models",
                resource_version=version or None, timeout_seconds=120, allow_watch_bookmarks=True,
            )  # fmt: skip
            async for event in stream:
                obj = event["object"]
                meta = obj.get("metadata") or {}
                if event["type"] == "ERROR":  # e.g. 410 Gone: list again from now
                    version = ""
                    break
                version = meta.get("resourceVersion", version)
                if event["type"] == "BOOKMARK":
                    continue
                name = meta["name"]
                if event["type"] == "DELETED":
                    self.present.discard(name)
                    continue
                self.present.add(name)
                if name not in self.ready_at and ready(obj):
                    self.ready_at[name] = time.monotonic()


def model(name: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {"modelfile": f"FROM base\nSYSTEM You are assistant number {index}."},
    }


def external_runner(name: str, url: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRunner", "metadata": {"name": name},
            "spec": {"external": {"url": url}}}  # fmt: skip


async def wait_until(predicate: Any, limit: float, what: str) -> float:
    start = last = time.monotonic()
    while not predicate():
        now = time.monotonic()
        if now - start > limit:
            raise TimeoutError(what)
        if now - last > 10:
            print(f"{now - start:.0f}s waiting for {what}", flush=True)
            last = now
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def until_empty(api: client.CustomObjectsApi, namespace: str, limit: float) -> float | None:
    """Seconds until the namespace lists no Model (a list of one item, so cheap to repeat;
    a watch that had to start over would miss DELETED events); None past ``limit``."""
    start = time.monotonic()
    while True:
        found = await api.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "models", limit=1
        )
        if not found["items"]:
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            return None
        await asyncio.sleep(0.5)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


async def measure(args: argparse.Namespace, kubeconfig: str, work: Path) -> dict[str, Any]:
    await config.load_kube_config(config_file=kubeconfig)
    api_client = client.ApiClient()
    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    namespace = f"bench-op-{uuid.uuid4().hex[:6]}"
    at_start = machine()
    tree = Path(args.tree)  # made absolute by main()
    gguf = write_tiny_gguf(work / "base.gguf")
    runners = [Runner(tree, work, i) for i in range(args.instances)]
    operator: Operator | None = None
    try:
        for runner in runners:
            await asyncio.to_thread(runner.seed, gguf)
        await core.create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
        operator = Operator(tree, work, kubeconfig, namespace, trace=bool(args.trace))
        await asyncio.sleep(5)
        rss_idle = operator.memory()[0]
        for i, runner in enumerate(runners):
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "modelrunners", external_runner(f"r{i}", runner.url)
            )
        watcher = Watcher(custom, namespace)
        names = [f"m-{i:04d}" for i in range(args.models)]
        created: dict[str, float] = {}
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)
        start = time.monotonic()

        async def create(i: int, name: str) -> None:
            async with gate:
                await custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "models", model(name, i)
                )
                created[name] = time.monotonic()

        await asyncio.gather(*(create(i, n) for i, n in enumerate(names)))
        created_s = time.monotonic() - start
        peak_busy = 0.0

        print(f"created {len(names)} Models in {created_s:.1f}s", flush=True)

        def all_ready() -> bool:
            nonlocal peak_busy
            peak_busy = max(peak_busy, operator.memory()[0] if operator else 0.0)
            return len(watcher.ready_at) >= len(names)

        await wait_until(all_ready, args.timeout, "all Models Ready")
        ready_s = max(watcher.ready_at.values()) - start
        latencies = [watcher.ready_at[n] - created[n] for n in names]
        if args.trace:  # where the operator's Python memory is once all are Ready
            await asyncio.sleep(25)
            shutil.copyfile(operator.top, args.trace)
        await asyncio.sleep(args.settle)
        api0, runner0 = operator.requests()[0], [r.calls() for r in runners]
        rss_samples = []
        rest_start = time.monotonic()
        while time.monotonic() - rest_start < args.rest:
            await asyncio.sleep(2)
            rss_samples.append(operator.memory()[0])
        minutes = (time.monotonic() - rest_start) / 60
        api1, runner1 = operator.requests()[0], [r.calls() for r in runners]
        runner_rates = [(b - a) / minutes for a, b in zip(runner0, runner1, strict=True)]
        start = time.monotonic()
        await custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, "models")
        deleted_s = await until_empty(custom, namespace, args.delete_timeout)
        left = await custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "models")
        del start
        watcher.task.cancel()
        rss_now, peak = operator.memory()
        return {
            "label": args.label,
            "models": args.models,
            "instances": args.instances,
            "machine": at_start,
            "created_s": round(created_s, 1),
            "settle_s": args.settle,
            "ready_s": round(ready_s, 1),
            "latency_p50_s": round(pct(latencies, 0.5), 2),
            "latency_p99_s": round(pct(latencies, 0.99), 2),
            "rss_idle_mb": round(rss_idle),
            "rss_rest_mb": round(statistics.median(rss_samples)),
            "rss_peak_mb": round(peak),
            "rss_end_mb": round(rss_now),
            "runner_calls_per_min": [round(r, 1) for r in runner_rates],
            "api_requests_per_min": round((api1 - api0) / minutes, 1),
            "deleted_s": None if deleted_s is None else round(deleted_s, 1),
            "delete_timeout_s": args.delete_timeout,
            "left_after_timeout": len(left["items"]),
        }
    finally:
        if operator is not None:
            with contextlib.suppress(Exception):  # its timers keep a finalizer on each runner
                await custom.delete_collection_namespaced_custom_object(
                    GROUP, VERSION, namespace, "modelrunners"
                )
                await asyncio.sleep(5)
            operator.stop()
        for plural in ("models", "modelrunners"):
            with contextlib.suppress(Exception):  # a run cut short: nobody left to remove these
                left = await custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
                for item in left["items"]:
                    await custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                        GROUP, VERSION, namespace, plural, item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                        _content_type="application/merge-patch+json",
                    )  # fmt: skip
        with contextlib.suppress(Exception):
            await core.delete_namespace(namespace)
        for runner in runners:
            runner.stop()
        await api_client.close()


ROWS: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
    ("Models x instances", lambda r: f"{r['models']} x {r['instances']}"),
    ("all Ready (s)", lambda r: r["ready_s"]),
    ("create -> Ready p50 / p99 (s)", lambda r: f"{r['latency_p50_s']} / {r['latency_p99_s']}"),
    ("RSS idle / at rest / peak (MB)",
     lambda r: f"{r['rss_idle_mb']} / {r['rss_rest_mb']} / {r['rss_peak_mb']}"),
    ("runner calls per minute at rest, per instance",
     lambda r: " / ".join(str(x) for x in r["runner_calls_per_min"])),
    ("API server requests per minute at rest", lambda r: r["api_requests_per_min"]),
    ("all deleted (s)", lambda r: r["deleted_s"] if r["deleted_s"] is not None
     else f"not within {r.get('delete_timeout_s', 0):.0f} ({r.get('left_after_timeout')} left)"),
]  # fmt: skip


def report(paths: list[str], notes_file: str | None = None) -> str:
    results = [json.loads(Path(p).read_text()) for p in paths]
    head = "| | " + " | ".join(f"{r['label']}" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for title, cell in ROWS:
        lines.append(f"| {title} | " + " | ".join(str(cell(r)) for r in results) + " |")
    runs = "\n".join(f"- {r['label']}, {r['models']} x {r['instances']}: {r['machine']}"
                     + (f"; rest measured from {r['settle_s']:g} s after Ready"
                        if "settle_s" in r else "")
                     for r in results)  # fmt: skip
    notes = Path(notes_file).read_text() if notes_file else ""
    return (
        "## Operator at scale (issue 17)\n\n"
        "`bench/bench_operator.py`: N Models (Modelfile creates `FROM base`) over K runner "
        "processes on loopback managed as external ModelRunners, real API server, the operator as "
        "a process with default settings (`before`: the code at the commit named, with its 30 s "
        "timers). One run each on a shared 2-core machine, so single figures, not medians; the "
        "commit of each run is in its column, and the machine's load and how long after the last "
        "Model was Ready the rest window began are under Runs.\n\n"
        + "\n".join(lines)
        + "\n\nRuns:\n"
        + runs
        + "\n"
        + notes
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--rest", type=float, default=60, help="seconds measured at rest")
    parser.add_argument("--settle", type=float, default=10, help="seconds before the rest window")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for Ready")
    parser.add_argument("--delete-timeout", type=float, default=600)
    parser.add_argument("--tree", default=str(ROOT), help="checkout whose operator/runner run")
    parser.add_argument("--label", default="current")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--logs", default=None, help="copy the operator and runner logs here")
    parser.add_argument("--report", nargs="+", default=None, help="results to write up")
    parser.add_argument("--notes", default=None, help="with --report: text to add after it")
    parser.add_argument(
        "--trace", default=None, help="run the operator under tracemalloc; its top lines here"
    )
    args = parser.parse_args()
    # SIGTERM (timeout, a stopped job) unwinds like Ctrl-C, so the operator and runners stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.tree = str(Path(args.tree).resolve())
    if args.report:
        write_section("operator", report(args.report, args.notes))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp, cluster() as kubeconfig:
        crds = ROOT / "crds"
        harness.Kubectl(kubeconfig)("apply", "--server-side", "--force-conflicts", "-f", str(crds))
        try:
            result = asyncio.run(measure(args, kubeconfig, Path(tmp)))
        finally:
            if args.logs:  # the operator's and runners' logs, to see where the time went
                Path(args.logs).mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob("*.log"):
                    shutil.copyfile(log, Path(args.logs) / log.name)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
