"""Pure planning of the operator: every rule on its own, no cluster and no runner."""

from __future__ import annotations

from typing import Any

import pytest

from modeloperator.plan import (
    Copy,
    Create,
    Delete,
    ModelView,
    Pull,
    Wait,
    plan_absent,
    plan_present,
    references_in_use,
    selects,
    spec_hash,
    tag_index,
)
from modeloperator.refs import canonical, display


def view(name: str, status: dict[str, Any] | None = None, **spec: Any) -> ModelView:
    return ModelView(name=name, spec=spec, status=status or {})


def tags(*names: str, digest: str = "d1") -> dict[str, str]:
    return tag_index([{"name": n, "digest": digest} for n in names])


@pytest.mark.parametrize(
    ("ref", "full", "shown"),
    [
        ("llama3.2", "registry.ollama.ai/library/llama3.2:latest", "llama3.2:latest"),
        ("smollm2", "registry.ollama.ai/library/smollm2:latest", "smollm2:latest"),
        (
            "ai/smollm2:360M-Q4_K_M",
            "docker.io/ai/smollm2:360m-q4_k_m",
            "docker.io/ai/smollm2:360m-q4_k_m",
        ),
        ("docker.io/ai/smollm2", "docker.io/ai/smollm2:latest", "docker.io/ai/smollm2:latest"),
        ("127.0.0.1:5000/team/m:v1", "127.0.0.1:5000/team/m:v1", "127.0.0.1:5000/team/m:v1"),
        ("hf.co/org/repo:Q4_K_M", "hf.co/org/repo:q4_k_m", "hf.co/org/repo:q4_k_m"),
        ("me/m", "registry.ollama.ai/me/m:latest", "registry.ollama.ai/me/m:latest"),
    ],
)
def test_references(ref: str, full: str, shown: str) -> None:
    assert canonical(ref) == full
    assert display(ref) == shown


def test_source_missing_pulls_then_copies_under_the_model_name() -> None:
    model = view("smollm2", source="127.0.0.1:5000/ai/m:v1", insecure=True)
    assert plan_present(model, tags(), set()) == [
        Pull("127.0.0.1:5000/ai/m:v1", insecure=True, docker=False),
        Copy("127.0.0.1:5000/ai/m:v1", "smollm2:latest"),
    ]


def test_docker_hub_sources_use_the_dmr_pull() -> None:
    (pull, _) = plan_present(view("smol", source="ai/smollm2"), tags(), set())
    assert pull == Pull("ai/smollm2", insecure=False, docker=True)


def test_nothing_to_do_when_present_under_both_names() -> None:
    model = view("m", source="reg.io/a/m:1")
    assert plan_present(model, tags("reg.io/a/m:1", "m:latest"), set()) == []


def test_name_pointing_at_another_digest_is_moved() -> None:
    model = view("m", source="reg.io/a/m:2")
    present = {**tags("reg.io/a/m:2", digest="new"), **tags("m:latest", digest="old")}
    assert plan_present(model, present, set()) == [Copy("reg.io/a/m:2", "m:latest")]


def test_tag_bump_moves_the_name_then_removes_the_old_reference() -> None:
    model = view("m", {"source": "reg.io/a/m:1"}, source="reg.io/a/m:2")
    present = tags("reg.io/a/m:1", "m:latest")
    assert plan_present(model, present, set()) == [
        Pull("reg.io/a/m:2"),
        Copy("reg.io/a/m:2", "m:latest"),
        Delete("reg.io/a/m:1"),
    ]


def test_old_reference_stays_when_another_model_uses_it() -> None:
    model = view("m", {"source": "reg.io/a/m:1"}, source="reg.io/a/m:2")
    present = {**tags("reg.io/a/m:2", "m:latest", digest="new"), **tags("reg.io/a/m:1")}
    assert plan_present(model, present, {canonical("reg.io/a/m:1")}) == []


def test_copy_waits_for_its_origin() -> None:
    model = view("copy", copyFrom="base")
    (action,) = plan_present(model, tags(), set())
    assert isinstance(action, Wait) and "base" in action.message
    assert plan_present(model, tags("base"), set()) == [Copy("base:latest", "copy:latest")]
    assert plan_present(model, tags("base", "copy"), set()) == []


def test_modelfile_is_applied_once_per_spec() -> None:
    text = "FROM base\nSYSTEM You are terse."
    model = view("terse", modelfile=text)
    fields = {"from": "base", "system": "You are terse."}
    assert plan_present(model, tags("base"), set()) == [Create("terse:latest", fields)]
    done = view("terse", {"appliedHash": spec_hash({"modelfile": text})}, modelfile=text)
    assert plan_present(done, tags("base", "terse"), set()) == []
    edited = view("terse", {"appliedHash": spec_hash({"modelfile": text})}, modelfile=text + "!")
    assert plan_present(edited, tags("base", "terse"), set()) == [
        Create("terse:latest", {"from": "base", "system": "You are terse.!"})
    ]
    bad = view("bad", modelfile="SYSTEM no base model")
    (action,) = plan_present(bad, tags("base"), set())
    assert action == Wait("InvalidSpec", "modelfile: no FROM line")


def test_delete_removes_name_and_unshared_source() -> None:
    model = view("m", source="reg.io/a/m:1")
    present = tags("reg.io/a/m:1", "m:latest")
    assert plan_absent(model, present, set()) == [Delete("m:latest"), Delete("reg.io/a/m:1")]
    assert plan_absent(model, present, {canonical("reg.io/a/m:1")}) == [Delete("m:latest")]


def test_retain_keeps_everything() -> None:
    model = view("m", source="reg.io/a/m:1", deletionPolicy="Retain")
    assert plan_absent(model, tags("reg.io/a/m:1", "m:latest"), set()) == []


def test_references_in_use_by_other_models() -> None:
    models = [
        view("a", source="reg.io/x:1"),
        view("b", copyFrom="a"),
        view("c", modelfile="FROM a"),
    ]
    used = references_in_use(models, exclude="c")
    assert used == {canonical("a"), canonical("reg.io/x:1"), canonical("b")}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (None, {}, True),
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"tier": "gpu"}}, {"tier": "gpu"}, True),
        ({"matchLabels": {"tier": "gpu"}}, {"tier": "cpu"}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            {"tier": "b"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]},
            {"tier": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, {}, True),
    ],
)
def test_label_selectors(
    selector: dict[str, Any] | None, labels: dict[str, str], expected: bool
) -> None:
    assert selects(selector, labels) is expected
