"""Registry credentials and the distribution auth handshake.

Where credentials come from, first match wins:

1. a token given with the request (DMR's ``bearer-token``), sent as ``Authorization: Bearer``;
2. the ``MODEL_RUNNER_REGISTRY_AUTH`` environment variable: a JSON object mapping a registry host
   to ``"user:password"``, ``{"username", "password"}``, ``{"auth": base64("user:password")}`` or
   ``{"registrytoken": token}``; a Docker ``config.json`` body (``{"auths": {...}}``) works too;
3. Docker's ``config.json`` (the ``docker_config`` setting, else ``$DOCKER_CONFIG/config.json``,
   else ``~/.docker/config.json``), its ``auths`` section.

A 401 answer carries ``WWW-Authenticate``. ``Bearer realm=...,service=...,scope=...``: fetch a
token from the realm (anonymously, or with the credentials as Basic auth) and retry once.
``Basic``: retry once with the credentials.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from modelrunner.registry.errors import RegistryUnauthorized, RegistryUnavailable

ENV_VAR = "MODEL_RUNNER_REGISTRY_AUTH"
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    token: str | None = None

    @property
    def basic(self) -> str | None:
        if self.username is None or self.password is None:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    params: dict[str, str]

    @classmethod
    def parse(cls, header: str) -> Challenge | None:
        scheme, _, rest = header.strip().partition(" ")
        if not scheme:
            return None
        params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM.finditer(rest)}
        return cls(scheme.lower(), params)


class CredentialStore:
    """Looks credentials up per registry host; files are read at each lookup (they may change)."""

    def __init__(self, env_value: str | None = None, docker_config: Path | None = None) -> None:
        self.env_value = env_value
        self.docker_config = docker_config

    @classmethod
    def from_environment(cls, docker_config: Path | None = None) -> CredentialStore:
        return cls(os.environ.get(ENV_VAR), docker_config)

    def config_path(self) -> Path:
        if self.docker_config is not None:
            return self.docker_config
        folder = os.environ.get("DOCKER_CONFIG")
        if folder:
            return Path(folder) / "config.json"
        return Path.home() / ".docker" / "config.json"

    def lookup(self, *hosts: str) -> Credentials | None:
        for entries in (self._env_entries(), self._docker_entries()):
            found = lookup_in(entries, *hosts)
            if found is not None:
                return found
        return None

    def _env_entries(self) -> dict[str, Any]:
        return auth_entries(self.env_value or "")

    def _docker_entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.config_path().read_text())
        except (OSError, ValueError):
            return {}
        auths = data.get("auths") if isinstance(data, dict) else None
        return auths if isinstance(auths, dict) else {}


def auth_entries(text: str) -> dict[str, Any]:
    """Registry host -> auth entry from JSON: a Docker config (``{"auths": {...}}``) or the map
    alone; ``{}`` when the text is not that."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    if isinstance(data, dict) and isinstance(data.get("auths"), dict):
        data = data["auths"]
    return data if isinstance(data, dict) else {}


def lookup_in(entries: dict[str, Any], *hosts: str) -> Credentials | None:
    """The credentials ``entries`` hold for any of ``hosts`` (Docker Hub's aliases included)."""
    keys = _lookup_keys(hosts)
    for key, value in entries.items():
        if _normalise_key(key) in keys:
            found = _credentials(value)
            if found is not None:
                return found
    return None


def _normalise_key(key: str) -> str:
    text = key.strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    text = text.split("/", 1)[0]
    return text


def _lookup_keys(hosts: Iterable[str]) -> set[str]:
    keys = {_normalise_key(h) for h in hosts if h}
    if keys & {"docker.io", "registry-1.docker.io", "index.docker.io"}:
        keys |= {_normalise_key(k) for k in DOCKER_HUB_KEYS} | {"registry-1.docker.io"}
    return keys


def _credentials(value: Any) -> Credentials | None:
    if isinstance(value, str):
        user, sep, password = value.partition(":")
        return Credentials(user, password) if sep else None
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("registrytoken"), str) and value["registrytoken"]:
        return Credentials(token=value["registrytoken"])
    if isinstance(value.get("username"), str) and isinstance(value.get("password"), str):
        return Credentials(value["username"], value["password"])
    encoded = value.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=False).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return Credentials(user, password) if sep else None
    return None


class Authenticator:
    """The ``Authorization`` header for one registry, obtained on demand from its challenges."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: Credentials | None,
        *,
        registry_host: str,
        allow_plain_realm: bool,
    ) -> None:
        self.http = http
        self.credentials = credentials
        self.registry_host = registry_host
        self.allow_plain_realm = allow_plain_realm
        self.scopes: list[str] = []
        self.header: str | None = None
        if credentials is not None and credentials.token:
            self.header = "Bearer " + credentials.token

    def add_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            self.scopes.append(scope)

    async def answer(self, www_authenticate: str | None) -> None:
        """Obtain new credentials after a 401; raises :class:`RegistryUnauthorized` if none."""
        challenge = Challenge.parse(www_authenticate or "")
        given_token = self.credentials is not None and self.credentials.token
        if challenge is None or given_token:
            raise RegistryUnauthorized("unauthorized: authentication required")
        if challenge.scheme == "basic":
            basic = self.credentials.basic if self.credentials else None
            if basic is None or self.header == basic:
                raise RegistryUnauthorized("unauthorized: authentication required")
            self.header = basic
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise RegistryUnauthorized(f"unauthorized: unsupported challenge {challenge.scheme!r}")
        for scope in challenge.params.get("scope", "").split(" "):
            if scope:
                self.add_scope(scope)
        self.header = "Bearer " + await self._token(challenge)

    async def _token(self, challenge: Challenge) -> str:
        realm = httpx.URL(challenge.params["realm"])
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params += [("scope", scope) for scope in self.scopes]
        headers = {}
        basic = self.credentials.basic if self.credentials else None
        # Credentials go to a realm only over TLS, on the registry's own host, or when allowed.
        trusted = realm.scheme == "https" or realm.host == self.registry_host
        if basic is not None and (trusted or self.allow_plain_realm):
            headers["Authorization"] = basic
        try:
            response = await self.http.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"token request to {realm} failed: {exc}") from None
        if response.status_code in (401, 403):
            raise RegistryUnauthorized(f"unauthorized: token request refused: {_detail(response)}")
        if response.status_code >= 400:
            raise RegistryUnavailable(
                f"token request to {realm} failed with status {response.status_code}"
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryUnavailable(f"token request to {realm}: no token in the answer")
        return token


def _detail(response: httpx.Response) -> str:
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase
