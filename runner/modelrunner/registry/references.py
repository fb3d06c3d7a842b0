"""From a model name to registry URLs: which host serves it, over which scheme.

``registry.ollama.ai`` and ``hf.co`` serve their own names; ``docker.io`` is served by
``registry-1.docker.io``; any other host is used as written (``127.0.0.1:5000``, ``ghcr.io``).

Plain http needs consent. An explicit ``http://`` prefix needs ``insecure`` (else Ollama's error
``insecure protocol http``). Without a scheme, ``insecure`` (or the host being listed in the
``insecure_registries`` setting) means: try https without verifying the certificate, and fall back to
http if the registry does not speak TLS, as Docker does for insecure registries. Docker Model
Runner's reference library treats loopback, private-network, ``localhost`` and ``*.local`` hosts as
plain http on its own; the DMR dialect does the same.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from modelrunner.names import DOCKER_HOST, Dialect, ModelName, parse
from modelrunner.registry.errors import InsecureProtocol

_SERVED_BY = {DOCKER_HOST: "registry-1.docker.io"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one model lives: ``{scheme}://{netloc}/v2/{repository}/manifests/{tag}``."""

    name: ModelName
    netloc: str
    repository: str
    scheme: str = "https"
    #: The registry may be plain http: if https cannot connect, use http from then on.
    http_fallback: bool = False
    verify_tls: bool = True

    @property
    def tag(self) -> str:
        return self.name.tag

    @property
    def host(self) -> str:
        """The host name without a port (credential and insecure-list lookups use both)."""
        return _strip_port(self.netloc)

    def base(self, scheme: str | None = None) -> str:
        return f"{scheme or self.scheme}://{self.netloc}/v2/"

    def for_repository(self, repository: str) -> Endpoint:
        return Endpoint(
            self.name, self.netloc, repository, self.scheme, self.http_fallback, self.verify_tls
        )


def split_scheme(ref: str) -> tuple[str | None, str]:
    text = ref.strip()
    for scheme in ("http", "https"):
        prefix = scheme + "://"
        if text.lower().startswith(prefix):
            return scheme, text[len(prefix) :]
    return None, text


def registry_netloc(name: ModelName) -> str:
    return _SERVED_BY.get(name.host.lower(), name.host)


def repository_of(name: ModelName) -> str:
    # OCI repository names are lower case; Ollama's own registry matches case-insensitively.
    return f"{name.namespace}/{name.model}".lower()


def resolve(
    ref: str,
    dialect: Dialect,
    *,
    insecure: bool = False,
    insecure_registries: Iterable[str] = (),
) -> Endpoint:
    """Parse ``ref`` with ``dialect``'s defaults and decide how to reach its registry."""
    scheme, rest = split_scheme(ref)
    return endpoint(
        parse(rest, dialect),
        scheme,
        dialect,
        insecure=insecure,
        insecure_registries=insecure_registries,
    )


def endpoint(
    name: ModelName,
    scheme: str | None,
    dialect: Dialect,
    *,
    insecure: bool = False,
    insecure_registries: Iterable[str] = (),
) -> Endpoint:
    """How to reach the registry of ``name``; ``scheme`` is what the caller wrote, if anything."""
    netloc = registry_netloc(name)
    repository = repository_of(name)
    allowed = insecure or _listed(netloc, insecure_registries)
    local = dialect is Dialect.DMR and is_local_host(netloc)
    if scheme == "http":
        if not (allowed or local):
            raise InsecureProtocol()
        return Endpoint(name, netloc, repository, "http")
    if scheme == "https":
        return Endpoint(name, netloc, repository, "https", verify_tls=not allowed)
    if local:
        return Endpoint(name, netloc, repository, "http")
    if allowed:
        return Endpoint(name, netloc, repository, "https", http_fallback=True, verify_tls=False)
    return Endpoint(name, netloc, repository)


def _strip_port(netloc: str) -> str:
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    host, sep, port = netloc.rpartition(":")
    return host if sep and port.isdigit() else netloc


def _listed(netloc: str, registries: Iterable[str]) -> bool:
    wanted = {netloc.lower(), _strip_port(netloc).lower()}
    for entry in registries:
        _, bare = split_scheme(entry)
        if bare.rstrip("/").lower() in wanted:
            return True
    return False


def is_local_host(netloc: str) -> bool:
    """localhost, ``*.local``, loopback and private-network addresses (go-containerregistry's
    rule for choosing plain http)."""
    host = _strip_port(netloc).lower()
    if host == "localhost" or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private
