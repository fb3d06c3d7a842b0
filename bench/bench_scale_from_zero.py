"""Scale from zero through a ModelGateway on the local cluster's real node: the time from a
request for a model whose runner has no pod to its answer (the gateway holds it, the operator
sees it queued and scales the runner up, the pod starts on its volume claim that still holds the
model, the operator opens its gate and updates the routing table, the gateway forwards it).

Runs tests/node/test_gateway.py (examples/07-gateway with the tiny model of the cluster's
registry) with extra timed rounds from the host; needs root and the local cluster with its real
node (the test's fixtures start them). Results in BENCHMARKS.md (section scale-from-zero)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.report import machine, median, write_section

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds from the host")
    args = parser.parse_args(argv)
    header = machine()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timings.json"
        env = dict(os.environ, MODELRUNNER_GATEWAY_COLD_ROUNDS=str(args.rounds),
                   MODELRUNNER_GATEWAY_BENCH_OUT=str(out))  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/node/test_gateway.py", "-x", "-q",
             "-p", "no:cacheprovider"],
            cwd=ROOT, env=env, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            print("bench_scale_from_zero: the test failed; nothing measured")
            return proc.returncode
        if not out.exists():  # skipped: no real node here
            print("bench_scale_from_zero needs the local cluster's real node (root): skipped")
            return 0
        timings = json.loads(out.read_text())
    cold, warm = [float(v) for v in timings["cold"]], float(timings["warm"])
    body = "\n".join([
        "## Scale from zero through the gateway (issue 16)",
        "",
        f"`bench/bench_scale_from_zero.py --rounds {args.rounds}`, {header} (a shared machine); "
        "examples/07-gateway on the real node with the tiny test model, the runner image already "
        "on the node, the model on the pod's volume claim (kept while scaled to zero), operator "
        "demand poll every 2 s. Round 1 is the client pod's first request (OpenAI chat, in the "
        "cluster); the others are `/api/generate` from the host, each after the runner went back "
        "to zero.",
        "",
        "| first request to a runner at zero, answered | median | min / max | rounds |",
        "|---|---|---|---|",
        f"| held, runner scaled 0 → 1, pod ready, routed, 4 tokens | {median(cold):.1f} s | "
        f"{min(cold):.1f} / {max(cold):.1f} s | {len(cold)} |",
        f"| the same model once warm (for scale) | {warm:.2f} s | | 1 |",
    ])  # fmt: skip
    write_section("scale-from-zero", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
