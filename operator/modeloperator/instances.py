"""Where a ModelRunner's models live: each ready pod, or the external server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeloperator.kube import Kube
from modeloperator.resources import OLLAMA_PORT, selector
from modeloperator.settings import OperatorSettings


@dataclass(frozen=True)
class Instance:
    runner: str
    name: str
    url: str


def pod_is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_instances(
    runner: str, namespace: str, pods: list[dict[str, Any]], overrides: dict[str, str]
) -> list[Instance]:
    """Ready pods, addressed by pod IP unless ``overrides`` maps ``<namespace>/<pod>`` to a URL."""
    out = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        if (pod.get("metadata") or {}).get("deletionTimestamp") or not pod_is_ready(pod):
            continue
        url = overrides.get(f"{namespace}/{name}")
        ip = (pod.get("status") or {}).get("podIP")
        if url is None and ip:
            url = f"http://{ip}:{OLLAMA_PORT}"
        if url:
            out.append(Instance(runner, name, url))
    return out


async def resolve(kube: Kube, settings: OperatorSettings, runner: dict[str, Any]) -> list[Instance]:
    meta, spec = runner["metadata"], runner.get("spec") or {}
    name, namespace = meta["name"], meta["namespace"]
    external = spec.get("external")
    if external:
        return [Instance(name, "external", str(external["url"]))]
    labels = ",".join(f"{k}={v}" for k, v in selector(name).items())
    pods = await kube.list_objects("v1", "Pod", namespace, labels)
    return pod_instances(name, namespace, pods, settings.instance_urls)
