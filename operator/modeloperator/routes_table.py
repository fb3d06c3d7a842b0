"""The gateway's routing table (pure): which runners a gateway fronts, the models each is declared
to serve, and which ready instance holds which of them now.

Format (GATEWAY-CONTRACT, ConfigMap key ``routes.json``)::

    {"version": 1,
     "runners": [{"name", "namespace", "models": [...], "replicas", "tokenFile"?}],
     "instances": [{"name", "runner", "url", "models": [...]}]}

Rendering is deterministic (sorted), so the operator writes the ConfigMap only when the content
changes and the gateway reloads only then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from modeloperator.plan import selects
from modeloperator.refs import canonical, display

VERSION = 1


@dataclass(frozen=True)
class InstanceView:
    """A runner instance that takes traffic, with the canonical names ``/api/tags`` lists."""

    name: str
    url: str
    tags: frozenset[str]


@dataclass(frozen=True)
class RunnerView:
    name: str
    namespace: str
    replicas: int
    models: list[dict[str, Any]]  # the Model objects the runner selects
    instances: list[InstanceView] = field(default_factory=list)
    token_file: str | None = None


def fronted(selector: dict[str, Any] | None, runners: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live ModelRunners a gateway's ``runnerSelector`` picks, by name."""
    return sorted(
        (r for r in runners
         if not r["metadata"].get("deletionTimestamp")
         and selects(selector, r["metadata"].get("labels") or {})),
        key=lambda r: str(r["metadata"]["name"]),
    )  # fmt: skip


def selected_models(runner: dict[str, Any], models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live Models a runner's ``modelSelector`` picks."""
    selector = (runner.get("spec") or {}).get("modelSelector")
    return [
        m for m in models
        if not m["metadata"].get("deletionTimestamp")
        and selects(selector, m["metadata"].get("labels") or {})
    ]  # fmt: skip


def served_names(model: dict[str, Any]) -> list[str]:
    """The names a Model is served under: its own, and a pulled Model's source reference."""
    names = [display(str(model["metadata"]["name"]))]
    source = (model.get("spec") or {}).get("source")
    if source and display(str(source)) not in names:
        names.append(display(str(source)))
    return names


def present_names(models: list[dict[str, Any]], tags: frozenset[str]) -> list[str]:
    """The served names of ``models`` that an instance's ``/api/tags`` lists."""
    out: list[str] = []
    for model in models:
        out += [n for n in served_names(model) if canonical(n) in tags and n not in out]
    return sorted(out)


def build(runners: list[RunnerView]) -> dict[str, Any]:
    table: dict[str, Any] = {"version": VERSION, "runners": [], "instances": []}
    for runner in sorted(runners, key=lambda r: r.name):
        declared = sorted({n for m in runner.models for n in served_names(m)})
        entry: dict[str, Any] = {"name": runner.name, "namespace": runner.namespace,
                                 "models": declared, "replicas": runner.replicas}  # fmt: skip
        if runner.token_file:
            entry["tokenFile"] = runner.token_file
        table["runners"].append(entry)
        for instance in sorted(runner.instances, key=lambda i: i.name):
            table["instances"].append({
                "name": instance.name, "runner": runner.name, "url": instance.url,
                "models": present_names(runner.models, instance.tags),
            })  # fmt: skip
    return table


def render(table: dict[str, Any]) -> str:
    return json.dumps(table, sort_keys=True, indent=1) + "\n"


def summary(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The table as the ModelGateway's ``status.runners`` shows it."""
    ready: dict[str, int] = {}
    for instance in table["instances"]:
        ready[instance["runner"]] = ready.get(instance["runner"], 0) + 1
    return [
        {"name": r["name"], "replicas": r["replicas"], "readyInstances": ready.get(r["name"], 0),
         "models": r["models"]}
        for r in table["runners"]
    ]  # fmt: skip
