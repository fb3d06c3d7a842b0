"""Pure planning: what to do on one runner instance so that it serves a Model as declared.

Inputs are plain data (the Model's spec and status, the instance's ``/api/tags``, the references
other Models still need); the output is an ordered list of actions. No I/O here, so every rule is
unit-tested on its own.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Any

from modeloperator.modelfile import ModelfileError, to_create_fields
from modeloperator.refs import canonical, display, is_docker_hub


@dataclass(frozen=True)
class Pull:
    source: str
    insecure: bool = False
    docker: bool = False  # through DMR's /models/create (Docker Hub model artifacts)


@dataclass(frozen=True)
class Copy:
    source: str
    destination: str


@dataclass(frozen=True)
class Create:
    name: str
    fields: dict[str, Any]  # /api/create's fields for the Modelfile (modelfile.py)


@dataclass(frozen=True)
class Delete:
    name: str


@dataclass(frozen=True)
class Wait:
    reason: str
    message: str


Action = Pull | Copy | Create | Delete | Wait


@dataclass(frozen=True)
class ModelView:
    """What planning needs to know about one Model."""

    name: str
    spec: dict[str, Any]
    status: dict[str, Any]

    @property
    def served(self) -> str:
        return display(self.name)

    @property
    def kind(self) -> str:
        for key in ("source", "copyFrom", "modelfile"):
            if self.spec.get(key):
                return key
        return "none"

    @property
    def previous_source(self) -> str | None:
        value = self.status.get("source")
        return value if isinstance(value, str) and value else None


def spec_hash(spec: dict[str, Any]) -> str:
    relevant = {k: spec.get(k) for k in ("source", "copyFrom", "modelfile", "insecure")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def tag_index(tags: list[dict[str, Any]]) -> dict[str, str]:
    """``/api/tags`` as canonical name -> manifest digest."""
    return {canonical(str(t.get("name") or t.get("model"))): str(t.get("digest", "")) for t in tags}


def plan_present(
    model: ModelView, tags: dict[str, str], needed_elsewhere: Container[str]
) -> list[Action]:
    """Actions that make ``model`` served on an instance whose models are ``tags``.

    ``needed_elsewhere`` holds canonical references other Models still serve from this instance,
    so an old source is only removed when nothing else uses it.
    """
    own = canonical(model.name)
    if model.kind == "source":
        return _plan_source(model, tags, own, needed_elsewhere)
    if model.kind == "copyFrom":
        origin = canonical(model.spec["copyFrom"])
        if origin not in tags:
            return [Wait("WaitingForModel", f"waiting for Model {model.spec['copyFrom']!r}")]
        if tags.get(own) != tags[origin]:
            return [Copy(display(model.spec["copyFrom"]), model.served)]
        return []
    if model.kind == "modelfile":
        applied = model.status.get("appliedHash")
        if own not in tags or applied != spec_hash(model.spec):
            try:
                return [Create(model.served, to_create_fields(model.spec["modelfile"]))]
            except ModelfileError as exc:
                return [Wait("InvalidSpec", f"modelfile: {exc}")]
        return []
    return [Wait("InvalidSpec", "set exactly one of source, copyFrom or modelfile")]


def _plan_source(
    model: ModelView, tags: dict[str, str], own: str, needed_elsewhere: Container[str]
) -> list[Action]:
    source = str(model.spec["source"])
    wanted = canonical(source)
    actions: list[Action] = []
    if wanted not in tags:
        actions.append(Pull(source, bool(model.spec.get("insecure")), is_docker_hub(source)))
    if wanted != own and (wanted not in tags or tags.get(own) != tags[wanted]):
        actions.append(Copy(display(source), model.served))
    previous = model.previous_source
    old = canonical(previous) if previous else None
    if old and old not in (wanted, own) and old in tags and old not in needed_elsewhere:
        actions.append(Delete(display(old)))
    return actions


def plan_absent(
    model: ModelView, tags: dict[str, str], needed_elsewhere: Container[str]
) -> list[Action]:
    """Actions that remove ``model`` from an instance when the Model is deleted."""
    if model.spec.get("deletionPolicy") == "Retain":
        return []
    names = [model.name]
    if model.kind == "source":
        names.append(str(model.spec["source"]))
        if model.previous_source:
            names.append(model.previous_source)
    actions: list[Action] = []
    for name in dict.fromkeys(canonical(n) for n in names):
        if name in tags and (name == canonical(model.name) or name not in needed_elsewhere):
            actions.append(Delete(display(name)))
    return actions


def references_of(name: str, spec: dict[str, Any]) -> list[str]:
    """Canonical names one Model serves or pulls: its own, and its source or copy origin."""
    out = [canonical(name)]
    kind = ModelView(name, spec, {}).kind
    if kind in ("source", "copyFrom"):
        out.append(canonical(str(spec[kind])))
    return out


def references_in_use(models: list[ModelView], exclude: str) -> set[str]:
    """Canonical names that Models other than ``exclude`` serve or pull."""
    used: set[str] = set()
    for other in models:
        if other.name != exclude:
            used.update(references_of(other.name, other.spec))
    return used


def reference_counts(models: Iterable[dict[str, Any]]) -> Counter[str]:
    """How many Models (bodies) serve or pull each canonical name."""
    counts: Counter[str] = Counter()
    for body in models:
        counts.update(references_of(body["metadata"]["name"], body.get("spec") or {}))
    return counts


@dataclass(frozen=True)
class InUseElsewhere:
    """``references_in_use`` for one Model without building the set: a name is in use elsewhere
    when more Models reference it than the Model itself does (memory O(1) per reconcile, so a
    thousand reconciles at once do not each hold a copy of the namespace)."""

    counts: Counter[str]
    own: tuple[str, ...]

    def __contains__(self, ref: object) -> bool:
        return self.counts.get(str(ref), 0) > self.own.count(str(ref))


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty or missing selector selects everything."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and (not present or labels[key] not in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
