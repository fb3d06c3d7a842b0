"""The routing table: which runner declares which models, which instance holds which models Ready
now, and name matching by each dialect's rules (``modelrunner.names``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelrunner.names import Dialect, candidates, try_parse

NameKey = tuple[str, str, str, str]


class TableError(ValueError):
    """A routing table that does not follow the format; the last good table stays in use."""


def table_key(name: str) -> NameKey | None:
    """A name as the table spells it (an ``/api/tags`` name, a Model's name or source): read as
    Ollama reads it, which keeps every host and namespace written out."""
    parsed = try_parse(name, Dialect.OLLAMA)
    return parsed.key if parsed is not None else None


def request_keys(ref: str, dialect: Dialect) -> list[NameKey]:
    """What a caller's ``model`` may mean, most likely first (the runner's own lookup order)."""
    return [name.key for name in candidates(ref, dialect)]


def _short(key: NameKey) -> tuple[str, str]:
    return key[2], key[3]


@dataclass(frozen=True)
class Instance:
    name: str
    url: str
    runner: str
    models: frozenset[NameKey]
    token_file: Path | None = None


@dataclass(frozen=True)
class Runner:
    name: str
    models: frozenset[NameKey]
    namespace: str = ""
    replicas: int | None = None
    token_file: Path | None = None


@dataclass(frozen=True)
class Table:
    runners: tuple[Runner, ...] = ()
    instances: tuple[Instance, ...] = ()
    names: dict[NameKey, str] = field(default_factory=dict)  # key -> a spelling, for messages

    def merged(self, other: Table) -> Table:
        return Table(
            self.runners + other.runners,
            self.instances + other.instances,
            {**self.names, **other.names},
        )

    def resolve(self, ref: str, dialect: Dialect) -> NameKey | None:
        """The table's key for ``ref``: the dialect's reading, the other's, then (as DMR and the
        runner's store do) a bare ``model:tag`` with any host and namespace."""
        known = self.known()
        for key in request_keys(ref, dialect):
            if key in known:
                return key
        first = try_parse(ref, dialect)
        if first is not None and "/" not in ref:
            matches = [k for k in known if _short(k) == _short(first.key)]
            if len(matches) == 1:
                return matches[0]
        return None

    def known(self) -> set[NameKey]:
        out: set[NameKey] = set()
        for runner in self.runners:
            out |= runner.models
        for instance in self.instances:
            out |= instance.models
        return out

    def holders(self, key: NameKey) -> list[Instance]:
        return [i for i in self.instances if key in i.models]

    def declaring(self, key: NameKey) -> list[Runner]:
        return [r for r in self.runners if key in r.models]

    def runner_of(self, key: NameKey) -> str:
        """The runner a model's demand is counted for: the first declaring it, else the first
        instance's runner (static backends are their own runners)."""
        for runner in self.declaring(key):
            return runner.name
        for instance in self.holders(key):
            return instance.runner
        return ""


def _models(raw: Any, where: str, names: dict[NameKey, str]) -> frozenset[NameKey]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        raise TableError(f"{where}.models must be a list of names")
    keys = set()
    for name in raw:
        key = table_key(name)
        if key is None:
            raise TableError(f"{where}.models: invalid model name {name!r}")
        keys.add(key)
        names.setdefault(key, name)
    return frozenset(keys)


def _text(item: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise TableError(f"{where}.{key} must be a non-empty string")
    return value


def parse_table(data: Any) -> Table:
    """A table from its JSON form (``{"version": 1, "runners": [...], "instances": [...]}``)."""
    if not isinstance(data, dict):
        raise TableError("the routing table must be a JSON object")
    if data.get("version", 1) != 1:
        raise TableError(f"unsupported routing table version {data.get('version')!r}")
    names: dict[NameKey, str] = {}
    runners: list[Runner] = []
    for i, item in enumerate(data.get("runners") or []):
        where = f"runners[{i}]"
        if not isinstance(item, dict):
            raise TableError(f"{where} must be an object")
        token = item.get("tokenFile")
        replicas = item.get("replicas")
        runners.append(
            Runner(
                name=_text(item, "name", where),
                models=_models(item.get("models"), where, names),
                namespace=_text(item, "namespace", where, required=False),
                replicas=replicas if isinstance(replicas, int) else None,
                token_file=Path(token) if isinstance(token, str) and token else None,
            )
        )
    tokens = {r.name: r.token_file for r in runners}
    instances: list[Instance] = []
    for i, item in enumerate(data.get("instances") or []):
        where = f"instances[{i}]"
        if not isinstance(item, dict):
            raise TableError(f"{where} must be an object")
        url = _text(item, "url", where).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise TableError(f"{where}.url must be an http(s) URL")
        runner = _text(item, "runner", where, required=False)
        instances.append(
            Instance(
                name=_text(item, "name", where, required=False) or url,
                url=url,
                runner=runner,
                models=_models(item.get("models"), where, names),
                token_file=tokens.get(runner),
            )
        )
    return Table(tuple(runners), tuple(instances), names)
