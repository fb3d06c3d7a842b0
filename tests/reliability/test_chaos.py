"""Operator chaos on a private cluster of its own (the shared one is never restarted): one round
of each disruption (operator SIGKILL, API server and etcd restarts, runner process stop) while
Models are created, edited and deleted; ``MODELRUNNER_CHAOS_ROUNDS`` for more, and
bench/reliability.py runs 20."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.chaos import DISRUPTIONS, Chaos, OperatorProcess, private_cluster, seed_registry
from tests.support.cluster import find_binary
from tests.support.registry import Registry
from tests.support.runner_process import RunnerProcess

ROUNDS = int(os.environ.get("MODELRUNNER_CHAOS_ROUNDS", str(len(DISRUPTIONS))))


@pytest.mark.slow
@pytest.mark.cluster
def test_operator_chaos_on_a_private_cluster(tmp_path: Path, registry: Registry) -> None:
    if find_binary("kube-apiserver") is None or shutil.which("curl") is None:
        pytest.skip("cluster binaries are not built yet (hack/cluster.sh build)")
    sources, digests = seed_registry(registry.host, tmp_path)
    runner = RunnerProcess(tmp_path / "models", tmp_path / "runner.log").start()
    operator: OperatorProcess | None = None
    try:
        with private_cluster(tmp_path / "cluster") as cluster:
            operator = OperatorProcess(cluster.kubeconfig, tmp_path / "operator.log")
            try:
                result = Chaos(cluster, runner, operator, sources, digests, seed=15).run(ROUNDS)
            finally:
                operator.stop()
    finally:
        runner.stop()
    assert result.problems == [], (tmp_path / "operator.log").read_text()[-3000:]
    assert result.converged == result.rounds == ROUNDS
    assert result.creates > 0 and set(result.disruptions) == set(DISRUPTIONS[:ROUNDS])
