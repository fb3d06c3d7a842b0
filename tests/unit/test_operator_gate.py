"""The models-ready readiness gate: when a runner pod may take traffic."""

from __future__ import annotations

from typing import Any

from modeloperator.gate import (
    OPEN_REASON,
    Gate,
    ModelOnInstance,
    decide,
    is_open,
    needs_patch,
    served_elsewhere,
)
from modeloperator.resources import MODELS_READY


def pod(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "r-1"}, "status": {"conditions": list(conditions)}}


def test_opens_when_every_selected_model_is_present() -> None:
    gate = decide([ModelOnInstance("a", "Ready", elsewhere=True), ModelOnInstance("b", "Ready")])
    assert gate.open and gate.reason == OPEN_REASON and "2/2" in gate.message
    assert decide([]).open  # nothing selected: nothing to wait for


def test_stays_closed_while_a_model_served_elsewhere_is_missing() -> None:
    gate = decide(
        [
            ModelOnInstance("a", "Ready", elsewhere=True),
            ModelOnInstance("b", "Failed", "pull: connection reset", elsewhere=True),
        ]
    )
    assert not gate.open and gate.reason == "ModelsMissing"
    assert "b" in gate.message and "connection reset" in gate.message


def test_a_model_no_other_replica_serves_does_not_hold_the_gate() -> None:
    # A broken source or a missing pull secret fails everywhere: waiting for it would keep
    # every new replica out of rotation without making a single request succeed.
    gate = decide(
        [
            ModelOnInstance("a", "Ready", elsewhere=True),
            ModelOnInstance("broken", "Failed", "manifest unknown", elsewhere=False),
            ModelOnInstance("secret", "Waiting", "pullSecretRef: not found", elsewhere=False),
        ]
    )
    assert gate.open and "broken" in gate.message and "secret" in gate.message


def test_an_unreachable_pod_stays_closed() -> None:
    gate = decide([ModelOnInstance("a", "Unreachable", "connection refused", elsewhere=False)])
    assert not gate.open and gate.reason == "RunnerUnreachable"


def test_only_the_operators_true_counts_as_open() -> None:
    ours = {"type": MODELS_READY, "status": "True", "reason": OPEN_REASON, "message": "1/1"}
    assert is_open(pod({"type": "ContainersReady", "status": "True"}, ours))
    # kwok marks every readiness gate True when it starts a pod; the operator must still act.
    assert not is_open(pod({"type": MODELS_READY, "status": "True"}))
    assert not is_open(pod({**ours, "status": "False"}))
    assert not is_open(pod())


def test_patch_only_when_the_condition_changes() -> None:
    gate = Gate(True, OPEN_REASON, "1/1 selected models present")
    current = {**gate.condition(), "lastTransitionTime": "2026-01-01T00:00:00Z"}
    assert not needs_patch(pod(current), gate)
    assert needs_patch(pod(), gate)
    assert needs_patch(pod({**current, "message": "0/1 selected models present"}), gate)
    assert needs_patch(pod({**current, "status": "False"}), gate)


def test_served_elsewhere_counts_serving_peers_only() -> None:
    status = {
        "runners": [
            {"runner": "r", "instance": "r-0", "state": "Ready"},
            {"runner": "r", "instance": "r-1", "state": "Ready"},  # this pod, before a restart
            {"runner": "r", "instance": "r-2", "state": "Ready"},  # scaled away
            {"runner": "other", "instance": "other-0", "state": "Ready"},
        ]
    }
    assert served_elsewhere(status, "r", "r-1", serving={"r-0"})
    assert not served_elsewhere(status, "r", "r-1", serving={"r-1"})
    assert not served_elsewhere(status, "r", "r-1", serving=set())
    pulling = {"runners": [{"runner": "r", "instance": "r-0", "state": "Pulling"}]}
    assert not served_elsewhere(pulling, "r", "r-1", serving={"r-0"})
    assert not served_elsewhere({}, "r", "r-1", serving={"r-0"})
