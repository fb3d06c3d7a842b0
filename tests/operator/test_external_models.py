"""Models on an external-mode ModelRunner: real cluster, real registry, real runner process."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.operator.conftest import (
    RestartableRunner,
    SeededRegistry,
    condition,
    external_runner,
    model,
    status_of,
    wait_ready,
)
from tests.support.cluster import Kubectl, KubectlError, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.registry]


@pytest.fixture
def setup(
    kubectl: Kubectl, namespace: str, runner_process: RestartableRunner,
    operator_factory: Callable[..., Any],
) -> tuple[Kubectl, str, RestartableRunner, Any]:  # fmt: skip
    op = operator_factory()
    kubectl.apply(external_runner("model-runner", runner_process.url), namespace=namespace)
    wait_ready(kubectl, "modelrunner", "model-runner", namespace)
    return kubectl, namespace, runner_process, op


def test_pull_copy_create_and_status(setup: Any, seeded_registry: SeededRegistry) -> None:
    kubectl, ns, runner, _ = setup
    kubectl.apply(model("tiny", source=seeded_registry.v1, insecure=True), namespace=ns)
    wait_ready(kubectl, "model", "tiny", ns)
    names = runner.names()
    assert {"tiny:latest", seeded_registry.v1} <= names
    status = status_of(kubectl, "model", "tiny", ns)
    assert status["digest"] == seeded_registry.digests["v1"]
    assert status["phase"] == "Ready" and status["source"] == seeded_registry.v1
    assert status["details"]["family"] == "llama" and status["observedGeneration"] == 1
    assert status["runners"] == [{"runner": "model-runner", "instance": "external", "state": "Ready",
                                  "digest": seeded_registry.digests["v1"].removeprefix("sha256:")}]  # fmt: skip
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Reconciling": "False", "Stalled": "False"}  # fmt: skip

    kubectl.apply(model("tiny-copy", copyFrom="tiny"), namespace=ns)
    kubectl.apply(
        model("terse", modelfile="FROM tiny\nSYSTEM You answer in one word."), namespace=ns
    )
    wait_ready(kubectl, "model", "tiny-copy", ns)
    wait_ready(kubectl, "model", "terse", ns)
    assert {"tiny-copy:latest", "terse:latest"} <= runner.names()
    assert runner.show("terse").json()["system"] == "You answer in one word."
    events = kubectl(
        "get", "events", "--field-selector", "involvedObject.name=tiny", namespace=ns
    ).stdout
    assert events.count("Ready") == 1  # one Event for the transition, not one per poll


def test_source_edit_moves_the_name_without_a_gap(
    setup: Any, seeded_registry: SeededRegistry
) -> None:
    kubectl, ns, runner, _ = setup
    kubectl.apply(model("tiny", source=seeded_registry.v1, insecure=True), namespace=ns)
    wait_ready(kubectl, "model", "tiny", ns)
    gaps: list[int | str] = []
    answers = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal answers
        # One kept-alive client: a new one per call (TLS context and all) cost ~0.3 s a call on
        # a loaded machine, and a gap shorter than the sampling interval would go unseen.
        with httpx.Client(base_url=runner.url, timeout=60) as http:
            while not stop.is_set():
                try:
                    code = http.post("/api/show", json={"model": "tiny"}).status_code
                except httpx.TimeoutException:
                    continue  # no answer says nothing about the name: ask again
                except httpx.HTTPError as exc:  # the runner refused or dropped the call
                    gaps.append(repr(exc))
                    continue
                answers += 1
                if code != 200:
                    gaps.append(code)

    # Under load the shared API server can take a minute or fail a call: a poll that fails
    # has not seen the condition yet, and the deadlines bound the waits.
    transient = (KubectlError, subprocess.TimeoutExpired, httpx.TransportError)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        v2 = model("tiny", source=seeded_registry.v2, insecure=True)
        wait_for(lambda: kubectl.apply(v2, namespace=ns), timeout=120, ignore=transient,
                 message="the edit applied")  # fmt: skip
        wait_for(lambda: status_of(kubectl, "model", "tiny", ns).get("digest") == seeded_registry.digests["v2"],
                 timeout=120, ignore=transient, message="the name moved to v2")  # fmt: skip
        wait_for(lambda: seeded_registry.v1 not in runner.names(), timeout=60, ignore=transient,
                 message="v1 removed")  # fmt: skip
    finally:
        stop.set()
        watcher.join()
    assert gaps == []
    assert answers > 0, "the watcher got no answer at all"
    assert {"tiny:latest", seeded_registry.v2} <= runner.names()
    status = status_of(kubectl, "model", "tiny", ns)
    assert status["source"] == seeded_registry.v2 and status["observedGeneration"] == 2


def test_delete_and_retain(setup: Any, seeded_registry: SeededRegistry) -> None:
    kubectl, ns, runner, _ = setup
    kubectl.apply(model("gone", source=seeded_registry.v1, insecure=True), namespace=ns)
    kubectl.apply(model("kept", copyFrom="gone", deletionPolicy="Retain"), namespace=ns)
    wait_ready(kubectl, "model", "gone", ns)
    wait_ready(kubectl, "model", "kept", ns)
    kubectl("delete", "model", "kept", namespace=ns, timeout=60)
    assert "kept:latest" in runner.names()
    kubectl("delete", "model", "gone", namespace=ns, timeout=60)
    assert not {"gone:latest", seeded_registry.v1} & runner.names()
    assert "kept:latest" in runner.names()


def test_stopped_runner_is_reported_and_recovers(
    setup: Any, seeded_registry: SeededRegistry
) -> None:
    kubectl, ns, runner, _ = setup
    kubectl.apply(model("tiny", source=seeded_registry.v1, insecure=True), namespace=ns)
    wait_ready(kubectl, "model", "tiny", ns)
    runner.stop()

    def unready() -> bool:
        ready = condition(status_of(kubectl, "model", "tiny", ns), "Ready")
        return ready.get("status") == "False" and ready.get("reason") == "RunnerUnreachable"

    wait_for(unready, timeout=30, message="Ready=False with reason RunnerUnreachable")
    assert "unreachable" in condition(status_of(kubectl, "model", "tiny", ns), "Ready")["message"]
    runner_status = status_of(kubectl, "modelrunner", "model-runner", ns)
    wait_for(lambda: condition(status_of(kubectl, "modelrunner", "model-runner", ns), "Ready").get("status") == "False",
             timeout=30, message="runner not ready")  # fmt: skip
    del runner_status
    runner.start()
    wait_ready(kubectl, "model", "tiny", ns)
    # A model removed by hand comes back (level-triggered healing).
    runner_url = runner.url
    httpx.request("DELETE", f"{runner_url}/api/delete", json={"model": "tiny"}, timeout=10)
    wait_for(lambda: "tiny:latest" in runner.names(), timeout=30, message="model healed")


def test_delete_while_runner_is_down_keeps_the_finalizer(
    setup: Any, seeded_registry: SeededRegistry
) -> None:
    kubectl, ns, runner, _ = setup
    kubectl.apply(model("tiny", source=seeded_registry.v1, insecure=True), namespace=ns)
    wait_ready(kubectl, "model", "tiny", ns)
    runner.stop()
    kubectl("delete", "model", "tiny", "--wait=false", namespace=ns)
    wait_for(lambda: "DeleteRetry" in kubectl("get", "events", namespace=ns).stdout, timeout=30,
             message="a DeleteRetry event")  # fmt: skip
    assert kubectl.exists("model", "tiny", namespace=ns)  # finalizer kept
    runner.start()
    wait_for(
        lambda: not kubectl.exists("model", "tiny", namespace=ns), timeout=60, message="deleted"
    )
    assert "tiny:latest" not in runner.names()


def test_a_runner_has_no_finalizer_and_is_deleted_while_the_operator_is_down(setup: Any) -> None:
    """Drift checks run in one operator-wide loop, not a kopf timer per ModelRunner (a timer puts
    kopf's finalizer on the object, and deleting it then waited for the operator)."""
    kubectl, ns, _runner, operator = setup
    runner = json.loads(
        kubectl("get", "modelrunner", "model-runner", "-o", "json", namespace=ns).stdout
    )
    assert not runner["metadata"].get("finalizers")
    operator.stop()
    kubectl("delete", "modelrunner", "model-runner", "--timeout=30s", namespace=ns)
    assert not kubectl.exists("modelrunner", "model-runner", namespace=ns)


def test_invalid_models_are_refused(kubectl: Kubectl, namespace: str, crds: None) -> None:
    cases = [
        (
            model("both", source="a", copyFrom="b"),
            "set exactly one of source, copyFrom or modelfile",
        ),
        (model("none"), "set exactly one of source, copyFrom or modelfile"),
        (
            model("pol", source="a", deletionPolicy="Sometimes"),
            'supported values: "Delete", "Retain"',
        ),
    ]
    for body, message in cases:
        result = kubectl.apply(body, namespace=namespace, check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr
    kubectl.apply(model("fixed", source="a"), namespace=namespace)
    switched = kubectl.apply(model("fixed", copyFrom="b"), namespace=namespace, check=False)
    assert "cannot change after creation" in switched.stderr or "exactly one" in switched.stderr
    bad_runner = {"apiVersion": "modelrunner.io/v1alpha1", "kind": "ModelRunner", "metadata": {"name": "r"},
                  "spec": {"external": {"url": "http://x"}, "replicas": 2}}  # fmt: skip
    result = kubectl.apply(bad_runner, namespace=namespace, check=False)
    assert "external cannot be combined with pod settings" in result.stderr
    negative = {"apiVersion": "modelrunner.io/v1alpha1", "kind": "ModelRunner", "metadata": {"name": "r"},
                "spec": {"replicas": -1}}  # fmt: skip
    assert (
        "should be greater than or equal to 0"
        in kubectl.apply(negative, namespace=namespace, check=False).stderr
    )


def test_external_service_keeps_the_in_cluster_name(
    kubectl: Kubectl, namespace: str, operator_factory: Callable[..., Any]
) -> None:
    operator_factory()
    kubectl.apply(external_runner("by-ip", "http://10.20.30.40:11434"), namespace=namespace)
    kubectl.apply(
        external_runner("by-name", "http://ollama.example.internal:8080"), namespace=namespace
    )

    def slice_address() -> list[str] | None:
        found = kubectl(
            "get", "endpointslice", "by-ip-external", "-o", "json", namespace=namespace, check=False
        )
        if found.returncode:
            return None
        return [a for e in json.loads(found.stdout)["endpoints"] for a in e["addresses"]]

    assert wait_for(slice_address, timeout=30, message="EndpointSlice") == ["10.20.30.40"]
    svc = kubectl.json("get", "service", "by-ip", namespace=namespace)
    assert sorted(p["port"] for p in svc["spec"]["ports"]) == [80, 11434, 12434]
    named = wait_for(
        lambda: kubectl.json("get", "service", "by-name", namespace=namespace)
        if kubectl.exists("service", "by-name", namespace=namespace) else None,
        timeout=30, message="ExternalName Service",
    )  # fmt: skip
    assert named["spec"]["type"] == "ExternalName"
    assert named["spec"]["externalName"] == "ollama.example.internal"
    ready = condition(status_of(kubectl, "modelrunner", "by-ip", namespace), "Ready")
    assert ready["status"] == "False" and ready["reason"] == "RunnerUnreachable"
