"""Measure the runner's reliability and write RELIABILITY.md: the fuzzer over every route, kill -9
loops, full-disk cases, a soak, the operator's RBAC and operator chaos on a private cluster. Each part writes its own section, so
parts can be run (and re-run) alone:

    python -m bench.reliability                       # everything (about 35 minutes)
    python -m bench.reliability --only fuzz --fuzz-requests 3000
    python -m bench.reliability --only soak --soak-seconds 600

Real runner processes on loopback with the tiny GGUF, a local docker-registry, the local cluster
for RBAC. Not part of ``make bench`` (it takes long); run by hand.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.runner.test_registry import push_random_model  # noqa: E402
from tests.support.chaos import Chaos, OperatorProcess, private_cluster, seed_registry  # noqa: E402
from tests.support.crash import MB, CrashLoop  # noqa: E402
from tests.support.fuzz import fuzz, reseeder, routes  # noqa: E402
from tests.support.registry import FaultProxy, run_registry  # noqa: E402
from tests.support.runner_process import RunnerProcess  # noqa: E402
from tests.support.soak import Soak  # noqa: E402
from tests.support.tiny_model import write_tiny_gguf  # noqa: E402
from tests.support.tiny_reranker import write_tiny_reranker  # noqa: E402

from modelrunner.app import create_app  # noqa: E402
from modelrunner.settings import Settings  # noqa: E402

REPORT = ROOT / "RELIABILITY.md"
HEADER = (
    "# Reliability\n\nWritten by `python -m bench.reliability` (each section by its part; "
    "`--only PART` re-runs one).\nReal runner processes on loopback with the tiny GGUF model, "
    "a local docker-registry, the local cluster.\nThe machine is shared with other work "
    "(2 cores), so latencies are loaded figures, not a quiet machine's.\n"
)


def machine() -> str:
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )


def write_section(key: str, body: str) -> None:
    text = REPORT.read_text() if REPORT.exists() else HEADER
    start, end = f"<!-- reliability:{key}:start -->", f"<!-- reliability:{key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    REPORT.write_text(text)


def _runner(work: Path, tiny: Path) -> RunnerProcess:
    runner = RunnerProcess(work / "models", work / "runner.log").start()
    with httpx.Client(base_url=runner.url, timeout=60) as http:
        reseeder({"tiny": tiny})(http)
    return runner


def part_fuzz(args: argparse.Namespace, work: Path, tiny: Path) -> bool:
    all_routes = routes(create_app(Settings(models=work / "routes", listen=[], prune=False)))
    runner = RunnerProcess(work / "models", work / "runner.log").start()
    try:
        seed = reseeder({"tiny": tiny, "rank": write_tiny_reranker(work / "rank.gguf")})
        result = fuzz(runner.url, all_routes, args.fuzz_requests, args.seed, runner.store, seed)
    finally:
        runner.stop()
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(result.statuses.items()))
    failures = "\n".join(f"- `{f[:300]}`" for f in result.failures[:20]) or "- none"
    write_section(
        "fuzz",
        f"""## Fuzzing every route

{args.started}. `tests/support/fuzz.py`, seed {args.seed}: {len(all_routes)} routes (every method
and path the app declares, all dialects and prefixes), each mutated from a valid body: fields
dropped or of the wrong type, NaN/Infinity and numbers past float range, long strings, nesting up
to and past the limit, unknown fields, malformed JSON, odd content types, headers, path
parameters and query strings.

| requests | seconds | 5xx (failures) | 4xx in the wrong dialect shape | store changed by a refusal |
|---|---|---|---|---|
| {result.requests} | {result.seconds:.0f} | {sum(1 for f in result.failures if " -> 5" in f)} | {sum(1 for f in result.failures if "shape" in f)} | {sum(1 for f in result.failures if "store changed" in f)} |

Statuses: {statuses}. The 502s are pulls and pushes to a registry that is a closed loopback
port; a 501 is llama-server's answer for a rank route on a model without a rank head. Failures:

{failures}

Found and fixed while building it (each a class, not a case): a `_configure` context of 2^31
tokens (and any Modelfile, policy or artifact context) bypassed the num_ctx ceiling and got the
runner OOM-killed at 22 GB, now refused with the ceiling and a KV-cache-vs-memory estimate; a
1 MB prompt or embedding input blocked the event loop for 110 s (llama.cpp's tokenizer is
superlinear on long runs), now tokenized off the loop; `num_batch` is capped at the context;
broken `/models/load` archives and uninstalling the built-in backend were 500s; a DMR push that
could not reach its registry left a config blob behind; `/responses` refusals came in DMR's
text instead of OpenAI's JSON.
""",
    )
    return not result.failures


def part_crash(args: argparse.Namespace, work: Path, tiny: Path) -> bool:
    with run_registry(work / "registry") as registry:
        proxy = FaultProxy(registry.host).start()
        size = 4 * MB
        push_random_model(registry, "crash/big", "v1", size, seed=15)
        runner = RunnerProcess(work / "models", work / "runner.log").start()
        try:
            loop = CrashLoop(runner, registry, proxy, tiny, f"{proxy.host}/crash/big:v1", size,
                             seed=args.seed)  # fmt: skip
            result = loop.run(args.kills)
        finally:
            runner.stop()
            proxy.stop()
    ops = ", ".join(f"{k} {n}" for k, n in sorted(result.by_operation.items()))
    problems = "\n".join(f"- {p}" for p in result.problems[:20]) or "- none"
    write_section(
        "crash",
        f"""## kill -9 during store operations

{args.started}. `tests/support/crash.py`: a runner process is SIGKILLed at a random moment of an
operation, restarted on the same store, and checked: every blob file matches its digest, every
manifest names blobs that exist, the listing equals the manifests and each listed model shows;
after a kill during a pull, the pull runs again and must complete without fetching more than
the blob once.

| kills | survived | by operation | interrupted pulls resumed from their partial | seconds |
|---|---|---|---|---|
| {result.kills} | {result.kills - result.failed_rounds} | {ops} | {result.resumed_pulls} | {result.seconds:.0f} |

Problems:

{problems}
""",
    )
    return not result.problems


def _pytest(*paths: str) -> tuple[bool, str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *paths], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode == 0, lines[-1] if lines else proc.stderr[-300:]


def part_disk(args: argparse.Namespace, work: Path, tiny: Path) -> bool:
    ok, summary = _pytest("tests/reliability/test_disk_full.py")
    write_section(
        "disk",
        f"""## Full disk

{args.started}. `tests/reliability/test_disk_full.py`: the store on an 8 MiB tmpfs filled to
256 KiB free, then five operations that need more: an Ollama pull (2 MiB blob), a DMR pull of
the same model, `/api/create` with a 512 KiB system prompt, a 1 MiB blob upload and a DMR
`/models/load` archive. Each must answer a clean "no space left" error in its dialect (507, or
DMR's streamed error), register nothing, leave no temporary file and give the space back; with
the filler removed the store takes a new model.

Result: {"all 5 cases clean" if ok else "FAILED"} (`{summary}`).
""",
    )
    return ok


def part_soak(args: argparse.Namespace, work: Path, tiny: Path) -> bool:
    runner = _runner(work, tiny)
    try:
        result = Soak(runner, clients=args.soak_clients, seed=args.seed).run(args.soak_seconds)
    finally:
        runner.stop()
    mib = 1 << 20
    dialects = ", ".join(f"{k} {n}" for k, n in sorted(result.by_dialect.items()))
    ok = (result.server_errors == 0 and not result.errors and result.busy_after == 0
          and result.rss_after <= result.rss_before * 1.25 + 64 * mib)  # fmt: skip
    write_section(
        "soak",
        f"""## Soak

{args.started}. `tests/support/soak.py`: {args.soak_clients} concurrent clients for
{result.seconds / 60:.1f} minutes against one runner process (tiny model, 4 slots), requests
drawn from every dialect (Ollama generate/chat/embed, OpenAI chat stream/completions/embeddings/
Responses stream, Anthropic messages stream/count_tokens, DMR engine chat and model list),
about 15% hanging up after the first bytes and 10% giving up after 5-50 ms.

| requests | completed | disconnects | cancellations | 5xx | dropped connections | slots and queue after | RSS before | RSS after | p50 | p99 |
|---|---|---|---|---|---|---|---|---|---|---|
| {result.requests} | {result.completed} | {result.disconnects} | {result.cancellations} | {result.server_errors} | {len(result.errors)} | {result.busy_after:.0f} | {result.rss_before / mib:.0f} MiB | {result.rss_after / mib:.0f} MiB | {result.percentile(50) * 1000:.0f} ms | {result.percentile(99) * 1000:.0f} ms |

By dialect: {dialects}. Latency is request to last byte for requests that ran to the end.
""",
    )
    return ok


def part_rbac(args: argparse.Namespace, work: Path, tiny: Path) -> bool:
    from tests.e2e.test_rbac import NEEDS, needs

    ok, summary = _pytest("tests/e2e/test_rbac.py")
    write_section(
        "rbac",
        f"""## Operator RBAC

{args.started}. `tests/e2e/test_rbac.py`: the chart's rendered rules equal the {len(needs())}
(resource, verb) pairs over {len(NEEDS)} resources that the operator's code calls (each entry
names its call site; every kind the operator writes must have one). With the chart installed on
the local cluster, `kubectl auth can-i --as=system:serviceaccount:NS:SA` allows each of them,
and `can-i --list` shows nothing beyond the rendered rules and what every account has, in the
release's namespace and in another.

Result: {"exactly the needed verbs" if ok else "FAILED"} (`{summary}`). Trimmed on the way:
get/list/watch on StatefulSets, EndpointSlices and Deployments, list/watch on Services, get on
Pods, ServiceAccounts, Roles, RoleBindings, Models, ModelGateways and the status subresources,
none of which any code reads.
""",
    )
    return ok


def part_chaos(args: argparse.Namespace, work: Path, tiny: Path) -> bool:
    with run_registry(work / "registry") as registry:
        sources, digests = seed_registry(registry.host, work)
        runner = RunnerProcess(work / "models", work / "runner.log").start()
        try:
            with private_cluster(work / "cluster") as cluster:
                operator = OperatorProcess(cluster.kubeconfig, work / "operator.log")
                try:
                    chaos = Chaos(cluster, runner, operator, sources, digests, seed=args.seed)
                    result = chaos.run(args.chaos_rounds)
                finally:
                    operator.stop()
        finally:
            runner.stop()
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.disruptions.items()))
    waits = sorted(result.converge_seconds)
    problems = "\n".join(f"- {p}" for p in result.problems[:20]) or "- none"
    write_section(
        "chaos",
        f"""## Operator chaos

{args.started}. `tests/support/chaos.py` on a private cluster (`hack/cluster.sh up` in its own
directory and ports, no real node; the shared cluster is never touched): an operator process,
one external-mode ModelRunner backed by a runner process on loopback, a local registry with two
tiny models. Each round makes 1-3 changes (create a Model, flip its source between the two, or
delete one) and then, at a random moment, one disruption in turn: the operator SIGKILLed and
restarted, the API server or etcd SIGKILLed and started again with the same arguments, or the
runner process killed and restarted. The round passes when every live Model is Ready with its
source's digest, the runner holds exactly the live Models and their sources, every deleted Model
is gone, and the runner saw no more pulls than one per change plus one retry per change.

| rounds | converged | disruptions | creates / edits / deletes | pulls (allowed) | time to converge min / median / max | seconds |
|---|---|---|---|---|---|---|
| {result.rounds} | {result.converged} | {kinds} | {result.creates} / {result.edits} / {result.deletes} | {result.pulls} ({result.pulls_allowed}) | {waits[0]:.1f} / {waits[len(waits) // 2]:.1f} / {waits[-1]:.1f} s | {result.seconds:.0f} |

Problems:

{problems}
""",
    )
    return not result.problems


PARTS: dict[str, Callable[[argparse.Namespace, Path, Path], bool]] = {
    "fuzz": part_fuzz, "crash": part_crash, "disk": part_disk, "soak": part_soak,
    "rbac": part_rbac, "chaos": part_chaos,
}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(PARTS), action="append")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--fuzz-requests", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument("--soak-clients", type=int, default=6)
    parser.add_argument("--chaos-rounds", type=int, default=20)
    args = parser.parse_args()
    # SIGTERM unwinds like an exception, so a private cluster and runner processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    failed = []
    for name in args.only or list(PARTS):
        print(f"== {name}", flush=True)
        args.started = machine()  # the load when the part began, shown in its section
        with tempfile.TemporaryDirectory(prefix=f"reliability-{name}-") as folder:
            work = Path(folder)
            tiny = write_tiny_gguf(work / "tiny.gguf")
            if not PARTS[name](args, work, tiny):
                failed.append(name)
    print("failed: " + ", ".join(failed) if failed else "all parts passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
