"""One registry repository over OCI distribution v2: auth, redirects, manifests, blob metadata.

Every request to the registry host carries the current ``Authorization`` header; a 401 is answered
once (see :mod:`.auth`). Redirects are followed by hand so that the header never leaves the registry
host (blob storage URLs are presigned). A registry allowed to be plain http is tried over https
first and switched to http if TLS cannot connect.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from modelrunner.errors import InvalidRequest, NotFound, UpstreamError
from modelrunner.registry.auth import Authenticator, Credentials
from modelrunner.registry.config import TransferConfig
from modelrunner.registry.errors import (
    ManifestNotFound,
    RegistryForbidden,
    RegistryUnauthorized,
    RegistryUnavailable,
)
from modelrunner.registry.references import Endpoint
from modelrunner.registry.transport import Transport
from modelrunner.store import media

MANIFEST_ACCEPT = ", ".join(
    (media.DOCKER_MANIFEST, media.OCI_MANIFEST, media.OCI_INDEX, media.DOCKER_MANIFEST_LIST)
)
MAX_REDIRECTS = 5
MAX_MANIFEST_BYTES = 4 << 20

Body = bytes | Callable[[], AsyncIterator[bytes]] | None


class RegistryClient:
    def __init__(
        self,
        transport: Transport,
        endpoint: Endpoint,
        credentials: Credentials | None,
        config: TransferConfig,
        actions: str = "pull",
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.scheme = endpoint.scheme
        self._scheme_settled = not endpoint.http_fallback
        self.http = transport.client(verify=endpoint.verify_tls)
        self.sync_http = transport.sync_client(verify=endpoint.verify_tls)
        self.auth = Authenticator(
            self.http,
            credentials,
            registry_host=endpoint.host,
            allow_plain_realm=not endpoint.verify_tls or endpoint.scheme == "http",
        )
        self.auth.add_scope(f"repository:{endpoint.repository}:{actions}")

    @property
    def repository(self) -> str:
        return self.endpoint.repository

    def url(self, path: str, repository: str | None = None) -> str:
        return f"{self.endpoint.base(self.scheme)}{repository or self.repository}/{path}"

    # -- requests ------------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: Body = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        follow_redirects: bool = True,
    ) -> httpx.Response:
        """Send with auth, one 401 retry, scheme fallback and host-safe redirects.

        With ``stream=True`` the caller must close the response."""
        answered = False
        redirects = 0
        target = httpx.URL(url, params=params) if params else httpx.URL(url)
        while True:
            request = self._build(method, target, headers, body)
            try:
                response = await self.http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if self._scheme_settled or not self.is_registry(target):
                    raise _unreachable(target, exc) from exc
                # A plain-http registry cannot complete a TLS handshake: use http from now on.
                self._scheme_settled = True
                self.scheme = "http"
                target = target.copy_with(scheme="http")
                continue
            except httpx.TransportError as exc:
                raise _unreachable(target, exc) from exc
            if self.is_registry(target):
                self._scheme_settled = True
            if response.status_code == 401 and self.is_registry(target) and not answered:
                await response.aclose()
                answered = True
                await self.auth.answer(response.headers.get("WWW-Authenticate"))
                continue
            location = response.headers.get("Location")
            if follow_redirects and response.is_redirect and location:
                await response.aclose()
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise RegistryUnavailable(f"too many redirects from {url}")
                target = target.join(location)
                if response.status_code == 303:
                    method, body = "GET", None
                continue
            if not stream:
                await response.aread()
                await response.aclose()
            return response

    def is_registry(self, url: httpx.URL) -> bool:
        netloc = url.netloc.decode() if isinstance(url.netloc, bytes) else str(url.netloc)
        return netloc.lower() == self.endpoint.netloc.lower()

    def auth_header_for(self, url: httpx.URL) -> str | None:
        """The ``Authorization`` value for ``url``: only the registry host ever gets one."""
        return self.auth.header if self.is_registry(url) else None

    def _build(
        self, method: str, url: httpx.URL, headers: dict[str, str] | None, body: Body
    ) -> httpx.Request:
        all_headers = dict(headers or {})
        if self.is_registry(url) and self.auth.header:
            all_headers["Authorization"] = self.auth.header
        content: Any = body() if callable(body) else body
        return self.http.build_request(method, url, headers=all_headers, content=content)

    # -- manifests -----------------------------------------------------------------------------

    async def get_manifest(self, reference: str | None = None) -> bytes:
        """The manifest bytes for ``reference`` (the tag by default). An index is resolved to
        the model artifact it lists."""
        ref = reference or self.endpoint.tag
        try:
            response = await self.send(
                "GET", self.url(f"manifests/{ref}"), headers={"Accept": MANIFEST_ACCEPT}
            )
        except RegistryUnauthorized as exc:  # the challenge could not be answered
            raise RegistryUnauthorized(f"pull model manifest: {exc.message}") from None
        if response.status_code == 404:
            raise ManifestNotFound(str(self.endpoint.name))
        raise_for_status(response, "pull model manifest")
        raw = response.content
        if len(raw) > MAX_MANIFEST_BYTES:
            raise UpstreamError("pull model manifest: manifest too large", 502)
        _check_digest(raw, ref, response.headers.get("Docker-Content-Digest"))
        data = _json_object(raw)
        kind = str(data.get("mediaType") or response.headers.get("Content-Type", ""))
        if kind.split(";")[0].strip() in media.INDEX_TYPES or "manifests" in data:
            child = pick_from_index(data)
            if reference is not None:
                raise UpstreamError("pull model manifest: nested image index", 502)
            return await self.get_manifest(child)
        return raw

    # -- blobs ---------------------------------------------------------------------------------

    async def blob_size(self, digest: str, repository: str | None = None) -> int | None:
        """``HEAD`` a blob: its size, or None if the repository does not have it."""
        response = await self.send(
            "HEAD", self.url(f"blobs/{digest}", repository), follow_redirects=False
        )
        if response.status_code == 404:
            return None
        if response.is_redirect:
            return -1  # served from elsewhere: it exists, the size is the descriptor's
        raise_for_status(response, f"check blob {digest}")
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else -1


def _unreachable(url: httpx.URL, exc: httpx.TransportError) -> RegistryUnavailable:
    detail = str(exc) or type(exc).__name__
    return RegistryUnavailable(f"cannot reach {url.scheme}://{url.netloc.decode()}: {detail}")


def pick_from_index(index: dict[str, Any]) -> str:
    """The manifest of an index that holds the model: attestations are skipped; a model artifact
    type, then a manifest without a platform, then linux/amd64, then the first one wins."""
    entries = [e for e in index.get("manifests") or [] if isinstance(e, dict)]
    candidates = []
    for entry in entries:
        annotations = entry.get("annotations") or {}
        if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        if entry.get("mediaType") not in (*media.MANIFEST_TYPES, None):
            continue
        candidates.append(entry)
    if not candidates:
        raise UpstreamError("pull model manifest: the image index lists no model manifest", 502)

    def rank(entry: dict[str, Any]) -> int:
        if entry.get("artifactType") in media.DOCKER_CONFIGS:
            return 0
        platform = entry.get("platform")
        if not platform:
            return 1
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return 2
        return 3

    digest = min(candidates, key=rank).get("digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise UpstreamError("pull model manifest: bad digest in image index", 502)
    return digest


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise UpstreamError("pull model manifest: the registry sent invalid JSON", 502) from None
    if not isinstance(data, dict):
        raise UpstreamError("pull model manifest: the registry sent invalid JSON", 502)
    return data


def _check_digest(raw: bytes, reference: str, header: str | None) -> None:
    actual = "sha256:" + hashlib.sha256(raw).hexdigest()
    expected = reference if reference.startswith("sha256:") else None
    if expected is None and header and header.startswith("sha256:"):
        expected = header
    if expected is not None and expected != actual:
        raise UpstreamError(
            f"pull model manifest: digest mismatch, expected {expected}, got {actual}", 502
        )


def registry_message(response: httpx.Response) -> str:
    """The message of an OCI error body (``{"errors": [{"code", "message"}]}``), or the reason."""
    try:
        data = json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError, httpx.ResponseNotRead):
        data = None
    if isinstance(data, dict) and isinstance(data.get("errors"), list) and data["errors"]:
        first = data["errors"][0]
        if isinstance(first, dict):
            text = str(first.get("message") or first.get("code") or "").strip()
            if text:
                return text
    return response.reason_phrase or str(response.status_code)


def raise_for_status(response: httpx.Response, action: str) -> None:
    """Turn a registry error into the typed error the dialects render."""
    code = response.status_code
    if code < 400:
        return
    detail = registry_message(response)
    if code == 401:
        raise RegistryUnauthorized(f"{action}: unauthorized: {detail}")
    if code == 403:
        raise RegistryForbidden(f"{action}: denied: {detail}")
    if code == 404:
        raise NotFound(f"{action}: not found: {detail}")
    if code == 429 or code >= 500:
        raise RegistryUnavailable(f"{action}: registry returned {code} {response.reason_phrase}")
    if code == 400:
        raise InvalidRequest(f"{action}: {detail}")
    raise UpstreamError(f"{action}: registry returned {code}: {detail}", 502)
