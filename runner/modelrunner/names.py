"""Model references: parsing and display per dialect.

Every model in the store lives at ``<host>/<namespace>/<model>:<tag>``. Each dialect fills in its own
defaults when a caller leaves parts out: Ollama uses ``registry.ollama.ai/library/...:latest``, Docker
Model Runner uses ``docker.io/ai/...:latest``. Hugging Face references (``hf.co/org/repo:quant``)
are ordinary references whose host is ``hf.co``.

A parsed name is always valid: every part matches a strict grammar, so no part can contain a path
separator or ``..`` and a name can be turned into a store path without escaping the store root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from modelrunner.errors import InvalidName

OLLAMA_HOST = "registry.ollama.ai"
OLLAMA_NAMESPACE = "library"
DOCKER_HOST = "docker.io"
DOCKER_NAMESPACE = "ai"
HF_HOST = "hf.co"
DEFAULT_TAG = "latest"

# Hosts that name the same registry; the first is how the store spells it.
_HOST_ALIASES = {
    "index.docker.io": DOCKER_HOST,
    "registry-1.docker.io": DOCKER_HOST,
    "huggingface.co": HF_HOST,
}

_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAMESPACE = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}"
_HOST = r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}"
_PART_RE = re.compile(_PART)
_NAMESPACE_RE = re.compile(_NAMESPACE)
_HOST_RE = re.compile(_HOST)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class Dialect(Enum):
    OLLAMA = "ollama"
    DMR = "dmr"


@dataclass(frozen=True, slots=True)
class ModelName:
    """A fully qualified, validated model reference."""

    host: str
    namespace: str
    model: str
    tag: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Case-folded identity: two names that differ only in case are the same model."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    @property
    def repository(self) -> str:
        return f"{self.namespace}/{self.model}"

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def display(self, dialect: Dialect = Dialect.OLLAMA) -> str:
        """The shortest form a client of ``dialect`` reads back as this same name."""
        if dialect is Dialect.OLLAMA:
            if self.host == OLLAMA_HOST and self.namespace == OLLAMA_NAMESPACE:
                return f"{self.model}:{self.tag}"
            if self.host == OLLAMA_HOST:
                return f"{self.namespace}/{self.model}:{self.tag}"
            return str(self)
        # DMR shows Docker Hub models as docker.io/<org>/<model>:<tag> since its 2026 releases.
        return str(self)

    def with_tag(self, tag: str) -> ModelName:
        return ModelName(self.host, self.namespace, self.model, _check(tag, _PART_RE, "tag"))


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise InvalidName(f"invalid model name: bad {what} {value!r}")
    return value


def _split_tag(ref: str) -> tuple[str, str | None]:
    colon = ref.rfind(":")
    if colon > ref.rfind("/"):
        return ref[:colon], ref[colon + 1 :]
    return ref, None


def _looks_like_host(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost"


def parse(ref: str, dialect: Dialect = Dialect.OLLAMA) -> ModelName:
    """Parse ``ref`` with ``dialect``'s defaults. Raises :class:`InvalidName`."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidName("invalid model name: empty")
    text = ref.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    if "@" in text:
        raise InvalidName(f"invalid model name: digest references are not supported: {ref!r}")
    path, tag = _split_tag(text)
    parts = path.split("/")
    if any(p == "" for p in parts) or len(parts) > 3:
        raise InvalidName(f"invalid model name: {ref!r}")
    if dialect is Dialect.DMR:
        host, namespace, model = _dmr_parts(parts)
        model = model.lower()
        namespace = namespace.lower()
    else:
        host, namespace, model = _ollama_parts(parts)
    host = _HOST_ALIASES.get(host.lower(), host)
    name = ModelName(
        _check(host, _HOST_RE, "host"),
        _check(namespace, _NAMESPACE_RE, "namespace"),
        _check(model, _PART_RE, "model"),
        _check(tag if tag is not None else DEFAULT_TAG, _PART_RE, "tag"),
    )
    if ".." in name.host or ".." in name.model or ".." in name.tag:
        raise InvalidName(f"invalid model name: {ref!r}")
    return name


def _ollama_parts(parts: list[str]) -> tuple[str, str, str]:
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return OLLAMA_HOST, parts[0], parts[1]
    return OLLAMA_HOST, OLLAMA_NAMESPACE, parts[0]


def _dmr_parts(parts: list[str]) -> tuple[str, str, str]:
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        if _looks_like_host(parts[0]):
            # registry/model: OCI registries have no implicit namespace, "library" is Docker's.
            return parts[0], "library", parts[1]
        return DOCKER_HOST, parts[0], parts[1]
    return DOCKER_HOST, DOCKER_NAMESPACE, parts[0]


def try_parse(ref: str, dialect: Dialect = Dialect.OLLAMA) -> ModelName | None:
    try:
        return parse(ref, dialect)
    except InvalidName:
        return None


def candidates(ref: str, dialect: Dialect) -> list[ModelName]:
    """Names ``ref`` may mean, most likely first: the dialect's own reading, then the other's."""
    other = Dialect.DMR if dialect is Dialect.OLLAMA else Dialect.OLLAMA
    out: list[ModelName] = []
    for d in (dialect, other):
        name = try_parse(ref, d)
        if name is not None and name.key not in {n.key for n in out}:
            out.append(name)
    return out


def is_hex_id(ref: str) -> bool:
    """A 64-hex model ID, with or without ``sha256:``, as DMR accepts in place of a name."""
    text = ref.lower().removeprefix("sha256:")
    return bool(_HEX64.fullmatch(text))
