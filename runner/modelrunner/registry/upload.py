"""Blob and manifest uploads (OCI distribution's push protocol).

For each blob: ``HEAD`` (already there: done); else, when another repository of the same registry is
known to hold it, a cross-repository mount (``POST .../blobs/uploads/?mount=<digest>&from=<repo>``,
201 = mounted); else an upload session: one ``PUT ...?digest=`` with the body for blobs up to
``upload_chunk_size``, or ``PATCH`` chunks with ``Content-Range`` then an empty ``PUT ...?digest=``.
The manifest is ``PUT`` last with the stored bytes, so its digest is the one the store lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Literal, TypeVar

import anyio
import httpx

from modelrunner.errors import UpstreamError
from modelrunner.registry.client import RegistryClient, raise_for_status
from modelrunner.registry.errors import RegistryUnavailable
from modelrunner.store.manifests import Descriptor, Manifest

READ_CHUNK = 1 << 20
Outcome = Literal["exists", "mounted", "uploaded"]
T = TypeVar("T")


async def push_blob(
    client: RegistryClient,
    descriptor: Descriptor,
    path: Path,
    progress: Callable[[int], None],
    mount_from: str | None = None,
) -> Outcome:
    """Make sure the registry repository holds the blob; ``progress`` gets the bytes sent."""
    digest = descriptor.digest
    if await client.blob_size(digest) is not None:
        progress(descriptor.size)
        return "exists"
    location: str | None = None
    if mount_from and mount_from != client.repository:
        client.auth.add_scope(f"repository:{mount_from}:pull")
        response = await client.send(
            "POST", client.url("blobs/uploads/"), params={"mount": digest, "from": mount_from}
        )
        if response.status_code == 201:
            progress(descriptor.size)
            return "mounted"
        raise_for_status(response, f"push blob {digest}")
        location = response.headers.get("Location")
    if location is None:
        response = await client.send("POST", client.url("blobs/uploads/"))
        raise_for_status(response, f"push blob {digest}")
        location = response.headers.get("Location")
    if not location:
        raise UpstreamError(f"push blob {digest}: the registry gave no upload location", 502)
    url = httpx.URL(client.url("blobs/uploads/")).join(location)
    chunk = client.config.upload_chunk_size
    if descriptor.size <= chunk:
        body = _file_body(path, 0, descriptor.size, progress, 0)
        headers = _octet(descriptor.size)
        response = await client.send(
            "PUT", str(_with_digest(url, digest)), headers=headers, body=body
        )
    else:
        for start in range(0, descriptor.size, chunk):
            length = min(chunk, descriptor.size - start)
            headers = _octet(length) | {"Content-Range": f"{start}-{start + length - 1}"}
            body = _file_body(path, start, length, progress, start)
            response = await client.send("PATCH", str(url), headers=headers, body=body)
            raise_for_status(response, f"push blob {digest}")
            url = url.join(response.headers.get("Location") or str(url))
        response = await client.send(
            "PUT", str(_with_digest(url, digest)), headers={"Content-Length": "0"}
        )
    raise_for_status(response, f"push blob {digest}")
    stored = response.headers.get("Docker-Content-Digest")
    if stored and stored != digest:
        raise UpstreamError(f"push blob {digest}: the registry stored {stored}", 502)
    progress(descriptor.size)
    return "uploaded"


async def push_manifest(client: RegistryClient, manifest: Manifest) -> None:
    response = await client.send(
        "PUT",
        client.url(f"manifests/{client.endpoint.tag}"),
        headers={"Content-Type": manifest.media_type},
        body=manifest.raw,
    )
    raise_for_status(response, "push manifest")
    stored = response.headers.get("Docker-Content-Digest")
    if stored and stored != manifest.digest:
        raise UpstreamError(
            f"push manifest: the registry stored {stored}, expected {manifest.digest}", 502
        )


def _octet(length: int) -> dict[str, str]:
    return {"Content-Type": "application/octet-stream", "Content-Length": str(length)}


def _with_digest(url: httpx.URL, digest: str) -> httpx.URL:
    return url.copy_merge_params({"digest": digest})


def _file_body(
    path: Path, start: int, length: int, progress: Callable[[int], None], base: int
) -> Callable[[], AsyncIterator[bytes]]:
    """A fresh reader of ``length`` bytes from ``start`` each time it is called (retries)."""

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        with path.open("rb") as handle:
            handle.seek(start)
            while sent < length:
                data = await anyio.to_thread.run_sync(handle.read, min(READ_CHUNK, length - sent))
                if not data:
                    raise RegistryUnavailable(f"{path.name} is shorter than its descriptor")
                sent += len(data)
                yield data
                progress(base + sent)

    return body


async def with_retries(
    attempt: Callable[[], Awaitable[T]], what: str, retries: int, backoff: float, max_backoff: float
) -> T:
    """Retry a whole blob upload on transport errors and registry server errors."""
    failures = 0
    while True:
        try:
            return await attempt()
        except (httpx.TransportError, RegistryUnavailable) as exc:
            failures += 1
            if failures > retries:
                if isinstance(exc, RegistryUnavailable):
                    raise
                raise RegistryUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
            await asyncio.sleep(min(backoff * 2 ** (failures - 1), max_backoff))
