"""A Model's ``spec.runtime`` on real runner processes through the real API server: preloaded on
every instance before any request, and again after a runner is SIGKILLed and restarted (same
store) or comes back with an empty store; the context size it declares is what ``/api/ps``
reports on every instance; editing the policy applies it without pulling again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.operator.conftest import SeededRegistry, external_runner, model, status_of, wait_ready
from tests.support.cluster import Kubectl, wait_for
from tests.support.runner_process import RunnerProcess

pytestmark = [pytest.mark.cluster, pytest.mark.registry]


@pytest.fixture
def runners(tmp_path: Path) -> Iterator[list[RunnerProcess]]:
    started = [
        RunnerProcess(tmp_path / f"store-{i}", tmp_path / f"runner-{i}.log").start()
        for i in range(2)
    ]
    yield started
    for runner in started:
        runner.stop()


def loaded(runner: RunnerProcess) -> dict[str, int]:
    """``/api/ps``: model name -> context length."""
    models = httpx.get(f"{runner.url}/api/ps", timeout=10).json()["models"]
    return {m["name"]: int(m.get("context_length") or 0) for m in models}


def requests(runner: RunnerProcess, route: str) -> int:
    return runner.log.read_text(errors="replace").count(f'"{route} HTTP/1.1"')


def tiny(seeded: SeededRegistry, **runtime: Any) -> dict[str, Any]:
    return model("tiny", source=seeded.v1, insecure=True, runtime=runtime)


def test_preload_and_context_size_on_every_instance_and_after_restarts(
    kubectl: Kubectl, namespace: str, runners: list[RunnerProcess],
    operator_factory: Callable[..., Any], seeded_registry: SeededRegistry,
) -> None:  # fmt: skip
    operator_factory()
    for i, runner in enumerate(runners):
        kubectl.apply(external_runner(f"r{i}", runner.url), namespace=namespace)
    kubectl.apply(tiny(seeded_registry, contextSize=512, keepAlive="forever", preload=True),
                  namespace=namespace)  # fmt: skip
    wait_ready(kubectl, "model", "tiny", namespace)
    for runner in runners:  # loaded before any request, with the declared context
        wait_for(lambda r=runner: loaded(r).get("tiny:latest") == 512, timeout=60,
                 message=lambda r=runner: f"tiny preloaded with 512: {loaded(r)}")  # fmt: skip
        assert requests(runner, "POST /api/generate") == 0
    status = status_of(kubectl, "model", "tiny", namespace)
    assert status["runtime"] == {"contextSize": 512, "keepAlive": "-1", "preload": True,
                                 "pinned": False}  # fmt: skip
    assert status["size"] > 0 and status["sizeHuman"].endswith(("KB", "MB"))

    first, second = runners
    first.kill()  # SIGKILL, then the same store: the runner preloads from its own policy
    first.start()
    wait_for(lambda: loaded(first).get("tiny:latest") == 512, timeout=60,
             message=lambda: f"tiny preloaded again after a restart: {loaded(first)}")  # fmt: skip

    second.kill()  # a new pod with a new volume: the operator puts the model and policy back
    second.store = second.store.with_name("store-fresh")
    second.start()
    wait_for(lambda: loaded(second).get("tiny:latest") == 512, timeout=90,
             message=lambda: f"tiny back and preloaded on a fresh store: {loaded(second)}")  # fmt: skip


def test_editing_the_policy_applies_without_a_pull(
    kubectl: Kubectl, namespace: str, runners: list[RunnerProcess],
    operator_factory: Callable[..., Any], seeded_registry: SeededRegistry,
) -> None:  # fmt: skip
    runner = runners[0]
    operator_factory()
    kubectl.apply(external_runner("r0", runner.url), namespace=namespace)
    kubectl.apply(tiny(seeded_registry, contextSize=512, preload=True), namespace=namespace)
    wait_ready(kubectl, "model", "tiny", namespace)
    wait_for(lambda: loaded(runner).get("tiny:latest") == 512, timeout=60, message="preloaded")
    pulls, creates = requests(runner, "POST /api/pull"), requests(runner, "POST /api/create")
    assert pulls == 1

    kubectl.apply(tiny(seeded_registry, contextSize=1024, preload=True, pinned=True),
                  namespace=namespace)  # fmt: skip
    wait_for(lambda: loaded(runner).get("tiny:latest") == 1024, timeout=60,
             message=lambda: f"reloaded with 1024: {loaded(runner)}")  # fmt: skip
    wait_for(lambda: (status_of(kubectl, "model", "tiny", namespace).get("runtime") or {})
             .get("contextSize") == 1024, timeout=30, message="status shows 1024")  # fmt: skip
    status = status_of(kubectl, "model", "tiny", namespace)
    assert status["runtime"]["pinned"] is True and status["observedGeneration"] == 2
    assert requests(runner, "POST /api/pull") == pulls  # nothing pulled again
    assert requests(runner, "POST /api/create") == creates
    policy = httpx.get(f"{runner.url}/runner/policies", timeout=10).json()["policies"]
    assert [p["context_size"] for p in policy.values()] == [1024]

    # Dropping spec.runtime removes the policy from the runner.
    kubectl.apply(model("tiny", source=seeded_registry.v1, insecure=True), namespace=namespace)
    wait_for(lambda: httpx.get(f"{runner.url}/runner/policies", timeout=10).json()["policies"]
             == {}, timeout=30, message="policy removed")  # fmt: skip


def test_invalid_runtime_is_refused(kubectl: Kubectl, namespace: str, crds: None) -> None:
    cases = [
        ({"contextSize": 100}, "should be greater than or equal to 256"),
        ({"keepAlive": "soon"}, "should match"),
        ({"pinned": True, "keepAlive": "0"}, "a pinned model cannot have keepAlive 0"),
        ({"parallel": 0}, "should be greater than or equal to 1"),
    ]
    for runtime, message in cases:
        result = kubectl.apply(model("bad", source="a", runtime=runtime), namespace=namespace,
                               check=False)  # fmt: skip
        assert result.returncode != 0 and message in result.stderr, result.stderr
    kubectl.apply(model("good", source="a", runtime={"keepAlive": "1h30m", "contextSize": 4096}),
                  namespace=namespace)  # fmt: skip
