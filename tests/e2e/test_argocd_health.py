"""Argo CD health checks of examples/05-gitops/argocd/argocd-cm.yaml, under Lua 5.1, against the
statuses the operator writes (shapes from operator/modeloperator/reconcile.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.argocd import health, scripts


def conditions(ready: bool, reconciling: bool, stalled: bool, reason: str,
               message: str) -> list[dict[str, Any]]:  # fmt: skip
    def cond(kind: str, on: bool, why: str, text: str) -> dict[str, Any]:
        return {"type": kind, "status": "True" if on else "False", "reason": why,
                "message": text, "observedGeneration": 1,
                "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip

    return [
        cond("Ready", ready, "Ready" if ready else reason, message),
        cond("Reconciling", reconciling, reason if reconciling else "Done", message if reconciling else ""),
        cond("Stalled", stalled, reason if stalled else "None", message if stalled else ""),
    ]  # fmt: skip


def obj(kind: str, status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "modelrunner.io/v1alpha1", "kind": kind,
                            "metadata": {"name": "x", "namespace": "llm", "generation": generation}}  # fmt: skip
    if status is not None:
        body["status"] = status
    return body


MODEL_CASES = [
    ("new, no status yet", None, 1, "Progressing", "Waiting for the operator"),
    ("ready", {"observedGeneration": 1, "phase": "Ready", "digest": "sha256:ab",
               "conditions": conditions(True, False, False, "Ready", "served by 2 runner instance(s)")},
     1, "Healthy", "served by 2 runner instance(s)"),
    ("pulling", {"observedGeneration": 1, "phase": "Pulling",
                 "progress": {"status": "pulling", "completed": 300, "total": 1000},
                 "conditions": conditions(False, True, False, "Waiting", "pulling")},
     1, "Progressing", "Pulling: 30%"),
    ("no runner yet", {"observedGeneration": 1, "phase": "Pending",
                       "conditions": conditions(False, True, False, "NoRunner",
                                                "no ready ModelRunner instance selects this model")},
     1, "Progressing", "no ready ModelRunner instance selects this model"),
    ("runner unreachable", {"observedGeneration": 1, "phase": "Pending",
                            "conditions": conditions(False, True, False, "RunnerUnreachable", "runner down")},
     1, "Progressing", "runner down"),
    ("failed pull", {"observedGeneration": 1, "phase": "Failed",
                     "conditions": conditions(False, False, True, "RunnerError",
                                              "model-runner-0: pull model manifest: file does not exist")},
     1, "Degraded", "model-runner-0: pull model manifest: file does not exist"),
    ("edited spec, not yet seen (a stale Ready)", {"observedGeneration": 1, "phase": "Ready",
                                                   "conditions": conditions(True, False, False, "Ready", "ok")},
     2, "Progressing", "Waiting for the operator to handle generation 2"),
    ("stale Degraded after an edit", {"observedGeneration": 2, "phase": "Failed",
                                      "conditions": conditions(False, False, True, "RunnerError", "bad tag")},
     3, "Progressing", "Waiting for the operator to handle generation 3"),
]  # fmt: skip

RUNNER_CASES = [
    ("new, no status yet", None, 1, "Progressing", "Waiting for the operator"),
    ("ready", {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
               "conditions": conditions(True, False, False, "Ready", "2/2 runner pods ready")},
     1, "Healthy", "2/2 runner pods ready"),
    ("pods starting", {"observedGeneration": 1, "replicas": 2, "readyReplicas": 1,
                       "conditions": conditions(False, True, False, "Progressing", "1/2 runner pods ready")},
     1, "Progressing", "1/2 runner pods ready"),
    ("external server down", {"observedGeneration": 1, "replicas": 1, "readyReplicas": 0,
                              "conditions": conditions(False, True, False, "RunnerUnreachable", "refused")},
     1, "Progressing", "refused"),
    ("not enough GPUs", {"observedGeneration": 1, "replicas": 2, "readyReplicas": 0,
                         "conditions": conditions(False, False, True, "Unschedulable",
                                                  "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")},
     1, "Degraded", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."),
    ("scaled, not yet seen", {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
                              "conditions": conditions(True, False, False, "Ready", "2/2 runner pods ready")},
     2, "Progressing", "Waiting for the operator to handle generation 2"),
]  # fmt: skip


def test_both_kinds_have_a_health_check() -> None:
    assert set(scripts()) == {"Model", "ModelRunner"}


@pytest.mark.parametrize(("case", "status", "generation", "want", "message"), MODEL_CASES,
                         ids=[c[0] for c in MODEL_CASES])  # fmt: skip
def test_model_health(case: str, status: dict[str, Any] | None, generation: int, want: str,
                      message: str) -> None:  # fmt: skip
    assert health("Model", obj("Model", status, generation)) == {"status": want, "message": message}


@pytest.mark.parametrize(("case", "status", "generation", "want", "message"), RUNNER_CASES,
                         ids=[c[0] for c in RUNNER_CASES])  # fmt: skip
def test_modelrunner_health(case: str, status: dict[str, Any] | None, generation: int, want: str,
                            message: str) -> None:  # fmt: skip
    assert health("ModelRunner", obj("ModelRunner", status, generation)) == {
        "status": want, "message": message}  # fmt: skip


def test_status_without_conditions_and_null_fields() -> None:
    # The operator writes "progress": null once a pull ends; Argo CD passes JSON null as nil.
    status = {"observedGeneration": 1, "phase": "Ready", "progress": None}
    assert health("Model", obj("Model", status))["status"] == "Progressing"
    status = {"observedGeneration": 1, "phase": "Pulling", "progress": {"completed": 0, "total": 0},
              "conditions": conditions(False, True, False, "Waiting", "starting")}  # fmt: skip
    assert health("Model", obj("Model", status)) == {"status": "Progressing", "message": "starting"}
