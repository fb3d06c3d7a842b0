"""Who may call the gateway: the runner's API keys (same file format, same per-key limits, from
``modelrunner.security``) and its DNS-rebinding guard. The gateway's own management token, when
set, guards only the demand document; management routes are never served here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from modelrunner.gateway.settings import GatewaySettings
from modelrunner.gateway.usage import Usage
from modelrunner.security.hosts import host_allowed, is_loopback
from modelrunner.security.keys import Identity, KeyRing
from modelrunner.security.limits import KeyLimits
from modelrunner.settings import Settings, parse_listen


@dataclass
class Refusal(Exception):
    status: int
    message: str
    headers: dict[str, str]


def credential(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def _unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(parse_listen(address)[0]).is_unspecified
    except ValueError:
        return False


class Access:
    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry) -> None:
        # The runner's own settings type carries the key file and limits the security code reads.
        runner = Settings(
            listen=[],
            api_keys_file=settings.api_keys_file,
            management_token_file=settings.management_token_file,
            key_requests_per_minute=settings.key_requests_per_minute,
            key_concurrency=settings.key_concurrency,
            key_tokens_per_minute=settings.key_tokens_per_minute,
        )
        self.keys = KeyRing(runner)
        self.limits = KeyLimits(runner, registry, self.keys)
        self.wildcard = any(_unspecified(a) for a in settings.listen)

    @property
    def strips_auth(self) -> bool:
        """The caller's key is for the gateway; it is not passed on to runners."""
        return self.keys.keys_required

    def check_host(self, server: tuple[str, int] | None, headers: dict[str, str]) -> None:
        guarded = not self.wildcard and server is not None and is_loopback(str(server[0]))
        if guarded and not host_allowed(headers.get("host", ""), []):
            raise Refusal(403, "forbidden: this Host is not allowed", {})

    def admit(self, headers: dict[str, str]) -> Identity | None:
        """The caller's identity, counted against its limits (``release`` when done); raises
        ``Refusal`` (401, 429) otherwise."""
        identity = self.keys.identify(credential(headers))
        if identity is None:
            if self.keys.keys_required:
                raise Refusal(
                    401, "unauthorized: missing or invalid API key", {"WWW-Authenticate": "Bearer"}
                )
            return None
        if identity.management:
            return identity
        refusal = self.limits.admit(identity.id)
        if refusal is not None:
            raise Refusal(429, refusal[0], {"Retry-After": str(refusal[1])})
        return identity

    def release(self, identity: Identity | None) -> None:
        if identity is not None and not identity.management:
            self.limits.release(identity.id)

    def charge(self, key: str, usage: Usage) -> None:
        """Tokens a forwarded answer reported, against the key's tokens-per-minute (counted here:
        behind the gateway the runner never sees the caller's key)."""
        self.limits.charge(key, "prompt", usage.prompt)
        self.limits.charge(key, "generated", usage.generated)

    def demand_allowed(self, headers: dict[str, str]) -> bool:
        if not self.keys.token_required:
            return True
        identity = self.keys.identify(credential(headers))
        return identity is not None and identity.management
