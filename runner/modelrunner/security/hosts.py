"""Ollama's DNS-rebinding guard: a runner bound to loopback answers only requests whose ``Host``
is a loopback or local name or address (or one configured), so a web page on another origin
cannot reach it through a rebound DNS name. Ollama's rule (server/routes.go allowedHost): IP
addresses that are loopback, private or unspecified; ``localhost``; this machine's hostname;
names under .localhost, .local and .internal."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hostname_of(header: str) -> str:
    """The name in a ``Host`` header, without port or IPv6 brackets."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def host_allowed(header: str, allowed: Iterable[str]) -> bool:
    host = hostname_of(header)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return address.is_loopback or address.is_private or address.is_unspecified
    if host in ("", "localhost") or host == socket.gethostname().lower():
        return True
    if host.endswith(_LOCAL_SUFFIXES):
        return True
    return host in {name.lower() for name in allowed}
