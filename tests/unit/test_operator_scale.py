"""The operator at scale (issue 17), pure parts: status written only when it changed, the SIZE
column, runtime policies as the runner takes them, which Models drifted, bounded locks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from modeloperator.drift import KeyedLocks, dependents, drifted
from modeloperator.inventory import snapshot_of
from modeloperator.models import compact
from modeloperator.runtime import desired_policy, same_policy, status_runtime
from modeloperator.status import changes, human_size


def test_status_patch_holds_only_what_changed() -> None:
    old = {"phase": "Ready", "digest": "sha256:a", "runners": [{"state": "Ready"}]}
    assert changes(old, dict(old, progress=None)) == {}  # None equals absent: no write
    assert changes(old, dict(old, phase="Pending")) == {"phase": "Pending"}
    assert changes(None, {"phase": "Ready"}) == {"phase": "Ready"}
    assert changes({"progress": {"completed": 1}}, {"progress": None}) == {"progress": None}


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (17_000, "17 KB"), (291_456_000, "291 MB"),
     (1_300_000_000, "1.3 GB"), (4_700_000_000_000, "4.7 TB")],
)  # fmt: skip
def test_size_for_humans(size: int, text: str) -> None:
    assert human_size(size) == text


def test_runtime_spec_to_policy_and_back() -> None:
    assert desired_policy(None) is None and desired_policy({}) is None
    policy = desired_policy({"contextSize": 8192, "keepAlive": "forever", "preload": True})
    assert policy == {"context_size": 8192, "keep_alive": "-1", "parallel": None,
                      "preload": True, "pinned": False}  # fmt: skip
    stored = dict(policy or {})
    assert same_policy(policy or {}, stored)
    assert not same_policy(policy or {}, dict(stored, context_size=4096))
    assert not same_policy(policy or {}, None)
    # A runner that leaves out unset fields holds the same policy.
    assert same_policy({"context_size": None, "preload": False, "pinned": True}, {"pinned": True})
    assert status_runtime(stored) == {"contextSize": 8192, "keepAlive": "-1",
                                      "preload": True, "pinned": False}  # fmt: skip
    assert status_runtime(None) is None


def model(name: str, generation: int = 1, **status: Any) -> dict[str, Any]:
    spec = status.pop("spec", {"modelfile": "FROM base"})
    return {"metadata": {"name": name, "generation": generation}, "spec": spec, "status": status}


def ready(name: str, digest: str = "d1", **extra: Any) -> dict[str, Any]:
    entry = {"runner": "r", "instance": "external", "state": "Ready", "digest": digest}
    return model(name, phase="Ready", observedGeneration=1, runners=[entry], **extra)


def listing(policies: dict[str, Any] | None, **models: str) -> Any:
    tags = [{"name": name, "digest": digest, "size": 10} for name, digest in models.items()]
    return snapshot_of(tags, policies, 0.0)


def test_only_models_that_differ_from_the_listing_drift() -> None:
    snap = listing({}, m1="d1", m2="d2")
    assert not drifted(ready("m1"), "r", "external", snap)
    assert drifted(ready("m1", digest="old"), "r", "external", snap)  # replaced by hand
    assert drifted(ready("gone"), "r", "external", snap)  # removed by hand
    assert drifted(ready("m1"), "r", "external", None)  # instance unreachable
    assert drifted(ready("m1"), "r", "pod-1", snap)  # a new instance of the runner
    assert drifted(model("m1", phase="Pending"), "r", "external", snap)  # still waiting
    stale = ready("m1")
    stale["metadata"]["generation"] = 2
    assert drifted(stale, "r", "external", snap)
    deleting = ready("gone")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not drifted(deleting, "r", "external", snap)


def test_a_lost_or_edited_runtime_policy_is_drift() -> None:
    runtime = {"contextSize": 8192, "preload": True}
    want = ready("m1", spec={"modelfile": "FROM base", "runtime": runtime})
    held = desired_policy(runtime) or {}
    assert not drifted(want, "r", "external", listing({"m1": held}, m1="d1"))
    assert drifted(want, "r", "external", listing({}, m1="d1"))  # a fresh store lost it
    assert drifted(want, "r", "external", listing({"m1": dict(held, context_size=4096)}, m1="d1"))
    # A policy left on the runner for a Model that no longer declares one.
    assert drifted(ready("m1"), "r", "external", listing({"m1": held}, m1="d1"))
    assert not drifted(ready("m1"), "r", "external", listing(None, m1="d1"))  # plain Ollama


def test_models_waiting_for_one_are_found() -> None:
    models = [
        model("copy", phase="Pending", spec={"copyFrom": "base"}),
        model("mf", phase="Pending", spec={"modelfile": "# c\nFROM base:latest\nSYSTEM x"}),
        model("other", phase="Pending", spec={"modelfile": "FROM elsewhere"}),
        ready("done", spec={"copyFrom": "base"}),
    ]
    assert [m["metadata"]["name"] for m in dependents(models, "base")] == ["copy", "mf"]


def test_locks_are_dropped_when_free() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def work(key: str, tag: str) -> None:
        async with locks.hold(key):
            order.append(f"{tag}+")
            await asyncio.sleep(0.01)
            order.append(f"{tag}-")

    async def main() -> None:
        await asyncio.gather(work("a", "1"), work("a", "2"), work("b", "3"))

    asyncio.run(main())
    assert order.index("1-") < order.index("2+")  # same key: one at a time
    assert len(locks) == 0  # nothing kept for objects nobody works on


def test_runner_limits_reach_the_runner_as_env() -> None:
    from modeloperator.resources import statefulset

    engine = {"maxLoadedModels": 2, "memoryBudget": "8GiB"}
    sts = statefulset("r", "ns", {"engine": engine}, "img")
    env = {e["name"]: e["value"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODEL_RUNNER_MAX_LOADED_MODELS"] == "2"
    assert env["MODEL_RUNNER_MEMORY_BUDGET"] == "8GiB"


def test_names_in_use_elsewhere_without_a_set_per_reconcile() -> None:
    from modeloperator.plan import InUseElsewhere, reference_counts, references_of
    from modeloperator.refs import canonical

    def body(name: str, **spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": name}, "spec": spec}

    models = [body("a", source="reg/x:1"), body("b", source="reg/x:1"), body("c", copyFrom="a"),
              body("d", modelfile="FROM a")]  # fmt: skip
    counts = reference_counts(models)
    for_a = InUseElsewhere(counts, tuple(references_of("a", {"source": "reg/x:1"})))
    assert canonical("reg/x:1") in for_a  # b pulls it too
    assert "registry.ollama.ai/library/a:latest" in for_a  # c copies a
    for_b = InUseElsewhere(counts, tuple(references_of("b", {"source": "reg/x:1"})))
    assert "registry.ollama.ai/library/b:latest" not in for_b
    assert canonical("reg/y:1") not in for_b
    alone = InUseElsewhere(reference_counts([body("a", source="reg/x:1")]),
                           tuple(references_of("a", {"source": "reg/x:1"})))  # fmt: skip
    assert canonical("reg/x:1") not in alone


def test_a_status_is_written_and_announced_once() -> None:
    from modeloperator.kube import Kube
    from modeloperator.models import State
    from modeloperator.reconcile import Context
    from modeloperator.settings import OperatorSettings

    state = State(Context(Kube(None), OperatorSettings()), lambda body, status: None)  # type: ignore[arg-type]
    body = {"metadata": {"uid": "u1", "name": "m"}, "status": {"phase": "Pending"}}
    status = {"phase": "Ready", "appliedHash": "h1"}
    assert state.to_write(body, status) == {"phase": "Ready", "appliedHash": "h1"}
    # The index still shows the old status: the same result is not written (or announced) again,
    # and the next reconcile plans from what was written (a Modelfile is not created twice).
    assert state.to_write(body, status) == {}
    assert state.with_last(body)["status"] == status
    state.forget("u1")
    assert state.with_last(body) is body


def test_the_index_copy_is_independent_and_shares_repeated_strings() -> None:
    def event(name: str) -> dict[str, Any]:  # as parsed from a watch event: strings of its own
        text = json.dumps(
            {"metadata": {"name": name, "namespace": "ns", "uid": name + "-uid",
                          "annotations": {"kopf": "x"}, "managedFields": [{}]},
             "spec": {"source": "tiny"},
             "status": {"phase": "Ready", "conditions": [{"type": "Ready", "reason": "Ready"}]}}
        )  # fmt: skip
        parsed: dict[str, Any] = json.loads(text)
        return parsed

    first, second = event("a"), event("b")
    one, two = compact(first), compact(second)
    assert one["status"] == first["status"] and one["spec"] == first["spec"]
    assert "annotations" not in one["metadata"] and "managedFields" not in one["metadata"]
    first["status"]["conditions"][0]["reason"] = "Changed"
    assert one["status"]["conditions"][0]["reason"] == "Ready"  # a copy, not a view
    assert one["status"]["phase"] is two["status"]["phase"]
    key_one = next(iter(one["status"]["conditions"][0]))
    key_two = next(iter(two["status"]["conditions"][0]))
    assert key_one is key_two
