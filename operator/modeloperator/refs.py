"""Model references as the runner's Ollama API lists them, to compare a Model with /api/tags.

The operator only needs to know which name a pull will create and how ``/api/tags`` spells it:
Ollama names default to ``registry.ollama.ai/library/<m>:latest``; Docker Hub model references
(``ai/...``, ``docker.io/...``) are pulled through the DMR route and stored under ``docker.io``.
"""

from __future__ import annotations

OLLAMA_PREFIX = "registry.ollama.ai/library/"


def _split_tag(ref: str) -> tuple[str, str]:
    colon = ref.rfind(":")
    if colon > ref.rfind("/"):
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def is_docker_hub(source: str) -> bool:
    path = source.split("://", 1)[-1]
    first = path.split("/", 1)[0]
    return first in ("docker.io", "index.docker.io") or (first == "ai" and "/" in path)


def canonical(ref: str) -> str:
    """Fully qualified, lower-cased ``host/namespace/model:tag`` for comparisons."""
    path, tag = _split_tag(ref.split("://", 1)[-1])
    parts = path.split("/")
    if is_docker_hub(ref):
        if parts[0] in ("docker.io", "index.docker.io"):
            parts = parts[1:]
        parts = ["docker.io", *(["ai"] if len(parts) == 1 else []), *parts]
    elif len(parts) == 1:
        parts = ["registry.ollama.ai", "library", *parts]
    elif len(parts) == 2:
        parts = ["registry.ollama.ai", *parts]
    return f"{'/'.join(parts)}:{tag}".lower()


def display(ref: str) -> str:
    """How the runner's Ollama API shows ``ref`` (what /api/copy and /api/delete accept)."""
    full = canonical(ref)
    return full.removeprefix(OLLAMA_PREFIX) if full.startswith(OLLAMA_PREFIX) else full
