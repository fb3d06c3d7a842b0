"""Where a ModelRunner's models live: each pod whose containers are ready, or the external
server."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from modeloperator.auth import management_token
from modeloperator.credentials import SecretError
from modeloperator.gate import is_open
from modeloperator.kube import Kube
from modeloperator.resources import OLLAMA_PORT, selector
from modeloperator.settings import OperatorSettings


@dataclass(frozen=True)
class Instance:
    runner: str
    name: str
    url: str
    # Takes traffic: the operator opened the pod's models-ready gate (always, for external).
    serving: bool = True
    pod: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    # The runner's management token, sent on every call to it (None: none could be read).
    token: str | None = field(default=None, compare=False, repr=False)


def containers_ready(pod: dict[str, Any]) -> bool:
    """``ContainersReady``, not ``Ready``: Ready waits for the models-ready gate, which the
    operator opens only after it has put the models on the pod."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "ContainersReady" and c.get("status") == "True" for c in conditions)


def pod_instances(
    runner: str, namespace: str, pods: list[dict[str, Any]], overrides: dict[str, str],
    token: str | None = None,
) -> list[Instance]:  # fmt: skip
    """Pods with ready containers, addressed by pod IP unless ``overrides`` maps
    ``<namespace>/<pod>`` to a URL."""
    out = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        if (pod.get("metadata") or {}).get("deletionTimestamp") or not containers_ready(pod):
            continue
        url = overrides.get(f"{namespace}/{name}")
        ip = (pod.get("status") or {}).get("podIP")
        if url is None and ip:
            url = f"http://{ip}:{OLLAMA_PORT}"
        if url:
            out.append(Instance(runner, name, url, is_open(pod), pod, token))
    return out


async def resolve(kube: Kube, settings: OperatorSettings, runner: dict[str, Any]) -> list[Instance]:
    meta, spec = runner["metadata"], runner.get("spec") or {}
    name, namespace = meta["name"], meta["namespace"]
    try:
        token = await management_token(kube, runner)
    except SecretError:  # the runner's status says why; its calls then fail with 401
        token = None
    external = spec.get("external")
    if external:
        return [Instance(name, "external", str(external["url"]), token=token)]
    labels = ",".join(f"{k}={v}" for k, v in selector(name).items())
    pods = await kube.list_objects("v1", "Pod", namespace, labels)
    return pod_instances(name, namespace, pods, settings.instance_urls, token)


class Resolver:
    """``resolve`` per ModelRunner, reused for ``ttl`` seconds while the runner object is the
    same version: a thousand Models targeting one runner read its Secret and pods once, not a
    thousand times. Pod events call ``forget`` so a new or restarted pod is seen at once."""

    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube, self.settings = kube, settings
        self.entries: dict[tuple[str, str], tuple[str, float, list[Instance]]] = {}
        self.lock = asyncio.Lock()

    async def instances(self, runner: dict[str, Any]) -> list[Instance]:
        meta = runner["metadata"]
        key, version = (meta["namespace"], meta["name"]), str(meta.get("resourceVersion", ""))
        hit = self._hit(key, version)
        if hit is not None:
            return hit
        async with self.lock:  # one resolve at a time; those waiting then find it cached
            hit = self._hit(key, version)
            if hit is not None:
                return hit
            found = await resolve(self.kube, self.settings, runner)
            now = time.monotonic()
            ttl = self.settings.observe_ttl
            self.entries = {k: e for k, e in self.entries.items() if now - e[1] < ttl}
            self.entries[key] = (version, now, found)
            return found

    def _hit(self, key: tuple[str, str], version: str) -> list[Instance] | None:
        entry = self.entries.get(key)
        if entry is None or entry[0] != version:
            return None
        if time.monotonic() - entry[1] >= self.settings.observe_ttl:
            return None
        return entry[2]

    def forget(self, namespace: str, name: str) -> None:
        self.entries.pop((namespace, name), None)
