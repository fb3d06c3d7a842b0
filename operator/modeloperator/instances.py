"""Where a ModelRunner's models live: each pod whose containers are ready, or the external
server."""

from __future__ import annotations

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
