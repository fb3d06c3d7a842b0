"""Blob downloads: parallel byte ranges into a resumable partial file, verified, then published.

A blob being fetched lives in ``blobs/sha256-<hex>-partial`` (sparse, pre-allocated) next to
``sha256-<hex>-partial-state``, a small JSON file listing each part's offset, size and completed
bytes. The data is fsynced before the state is saved, so after a crash or a dropped connection the
next pull continues every part where the state says it stopped. Nothing is published into the store
until the whole file hashes to the expected digest; a mismatch removes the partial file.

Two pulls that need the same blob share one :class:`BlobDownload` (and so its progress); it is
cancelled when the last puller waiting for it goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import anyio
import httpx

from modelrunner.errors import DigestMismatch, ModelRunnerError, NotFound, UpstreamError
from modelrunner.registry.client import MAX_REDIRECTS, RegistryClient, raise_for_status
from modelrunner.registry.config import TransferConfig
from modelrunner.registry.errors import RegistryUnauthorized, RegistryUnavailable
from modelrunner.registry.partial import Part, PartialFile
from modelrunner.store.blobs import BlobStore
from modelrunner.store.manifests import Descriptor


class AuthRequired(Exception):
    """The registry answered 401: the async side must answer the challenge, then retry."""

    def __init__(self, challenge: str | None) -> None:
        super().__init__("authentication required")
        self.challenge = challenge


class IncompleteError(Exception):
    """The registry closed a response before the requested range was complete."""


def retryable(exc: BaseException) -> bool:
    # httpx's read timeout (``stall_timeout``) is how a stalled part is noticed.
    return isinstance(exc, httpx.TransportError | IncompleteError | RegistryUnavailable)


class BlobDownload:
    """One blob being fetched; any number of pulls may wait on it."""

    def __init__(
        self,
        blobs: BlobStore,
        client: RegistryClient,
        descriptor: Descriptor,
        config: TransferConfig,
        executor: Executor,
    ) -> None:
        self.blobs = blobs
        self.executor = executor
        self.client = client
        self.digest = descriptor.digest
        self.total = descriptor.size
        self.config = config
        self.parts: list[Part] = []
        self.phase = "starting"
        self.received = 0  # bytes that came over the network for this download
        self.resumed = 0  # bytes a previous attempt had already saved
        self.waiters = 0
        self.task: asyncio.Task[None] | None = None
        self._location: httpx.URL | None = None  # blob storage a redirect pointed to
        self._last_save = 0.0
        self._lock = threading.Lock()

    @property
    def completed(self) -> int:
        if self.phase in ("verifying", "done"):
            return self.total
        return sum(p.completed for p in self.parts)

    async def run(self, previous: asyncio.Task[None] | None = None) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        if self.blobs.exists(self.digest):
            self.phase = "done"
            return
        partial = PartialFile(self.blobs, self.digest, self.total)
        try:
            self.parts = await anyio.to_thread.run_sync(partial.open, self.config)
            self.resumed = partial.resumed
            self.phase = "downloading"
            pending = [p for p in self.parts if not p.done]
            if pending:
                await self._retrying(self._check_exists)
                if len(pending) > 1:
                    await self._retrying(self._resolve_location)
                await _first_failure(self._fetch_part(p, partial) for p in pending)
            self.phase = "verifying"
            actual = await anyio.to_thread.run_sync(partial.sha256)
            if actual != self.digest:
                partial.discard()
                raise DigestMismatch(
                    f"digest mismatch, file must be downloaded again: expected {self.digest}, "
                    f"got {actual}"
                )
            await anyio.to_thread.run_sync(partial.publish)
            self.phase = "done"
        finally:
            if self.phase != "done" and partial.fd is not None:
                with contextlib.suppress(OSError, ModelRunnerError):
                    partial.save(self.parts)
            partial.close()

    async def _check_exists(self) -> None:
        size = await self.client.blob_size(self.digest)
        if size is None:
            raise NotFound(f"pull blob {self.digest}: not found in the registry")
        if size >= 0 and size != self.total:
            raise UpstreamError(
                f"pull blob {self.digest}: the registry has {size} bytes, the manifest says "
                f"{self.total}",
                502,
            )

    async def _resolve_location(self) -> None:
        """Before parallel parts start, learn once where a redirect sends blob downloads."""
        url = httpx.URL(self.client.url(f"blobs/{self.digest}"))
        for _ in range(MAX_REDIRECTS):
            response = await self.client.send(
                "GET",
                str(url),
                headers={"Range": "bytes=0-0"},
                follow_redirects=False,
                stream=True,
            )
            await response.aclose()  # the body is not needed (a registry may ignore the range)
            location = response.headers.get("Location")
            if not (response.is_redirect and location):
                return
            url = url.join(location)
            if not self.client.is_registry(url):
                self._location = url
                return

    async def _retrying(self, step: Callable[[], Awaitable[None]]) -> None:
        for failures in range(self.config.retries + 1):
            try:
                return await step()
            except Exception as exc:
                if not retryable(exc):
                    raise
                if failures == self.config.retries:
                    raise _give_up(self.digest, exc) from exc
            await asyncio.sleep(min(self.config.backoff * 2**failures, self.config.max_backoff))

    async def _fetch_part(self, part: Part, partial: PartialFile) -> None:
        failures = 0
        while not part.done:
            before = part.completed
            try:
                await self._fetch_range(part, partial)
            except Exception as exc:
                if not retryable(exc):
                    raise
                failures = 1 if part.completed > before else failures + 1
                if failures > self.config.retries:
                    raise _give_up(self.digest, exc) from exc
                delay = min(self.config.backoff * 2 ** (failures - 1), self.config.max_backoff)
                await asyncio.sleep(delay)

    async def _fetch_range(self, part: Part, partial: PartialFile) -> None:
        """One ranged GET, its body copied to the partial file by a worker thread."""
        answered = False
        while True:
            try:
                await self._in_thread(part, partial)
                return
            except AuthRequired as exc:
                if answered:
                    raise RegistryUnauthorized(f"pull blob {self.digest}: unauthorized") from None
                answered = True
                await self.client.auth.answer(exc.challenge)

    async def _in_thread(self, part: Part, partial: PartialFile) -> None:
        """Fetch in the download pool; on cancellation tell the thread to stop, and wait."""
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        work = functools.partial(self._fetch_range_sync, part, partial, stop)
        future = loop.run_in_executor(self.executor, work)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(BaseException):
                await future
            raise

    def _fetch_range_sync(self, part: Part, partial: PartialFile, stop: threading.Event) -> None:
        # Bodies are read with httpx's blocking client in a thread: several times faster than
        # the event loop for large bodies, and parts run in parallel outside the GIL.
        cached = self._location
        target = cached or httpx.URL(self.client.url(f"blobs/{self.digest}"))
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"Range": f"bytes={part.first}-{part.last}"}
            auth = self.client.auth_header_for(target)
            if auth:
                headers["Authorization"] = auth
            with self.client.sync_http.stream("GET", target, headers=headers) as response:
                location = response.headers.get("Location")
                if response.is_redirect and location:
                    target = target.join(location)
                    continue
                if response.status_code == 401 and self.client.is_registry(target):
                    raise AuthRequired(response.headers.get("WWW-Authenticate"))
                if response.status_code >= 400:
                    response.read()
                    if cached is not None:
                        self._location = None  # a presigned URL may have expired: resolve again
                        raise RegistryUnavailable(f"blob storage answered {response.status_code}")
                    raise_for_status(response, f"pull blob {self.digest}")
                if response.status_code != 206 and part.first != 0:
                    raise UpstreamError(
                        f"pull blob {self.digest}: the registry ignores range requests", 502
                    )
                if not self.client.is_registry(target):
                    self._location = target
                self._copy(response, part, partial, stop)
            break
        else:
            raise RegistryUnavailable(f"pull blob {self.digest}: too many redirects")
        if not part.done and not stop.is_set():
            raise IncompleteError(f"connection closed at byte {part.first} of {self.digest}")

    def _copy(
        self, response: httpx.Response, part: Part, partial: PartialFile, stop: threading.Event
    ) -> None:
        for chunk in response.iter_raw():
            if stop.is_set():
                return
            data = chunk[: part.size - part.completed]
            partial.write(part.first, data)
            with self._lock:
                part.completed += len(data)
                self.received += len(data)
                now = time.monotonic()
                save = now - self._last_save >= self.config.state_interval
                if save:
                    self._last_save = now
            if save:
                partial.save(self.parts)
            if part.done:
                return


def _give_up(digest: str, exc: BaseException) -> ModelRunnerError:
    prefix = f"pull blob {digest}: "
    if isinstance(exc, ModelRunnerError):
        if exc.message.startswith(prefix):
            return exc
        return RegistryUnavailable(prefix + exc.message)
    return RegistryUnavailable(f"{prefix}{str(exc) or type(exc).__name__}")


async def _first_failure(coros: Iterable[Any]) -> None:
    """Run coroutines together; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Downloader:
    """Starts blob downloads, and lets a second puller of the same digest join the first."""

    def __init__(self, blobs: BlobStore, config: TransferConfig) -> None:
        self.blobs = blobs
        self.config = config
        self._jobs: dict[str, BlobDownload] = {}
        self.executor = ThreadPoolExecutor(
            max_workers=max(8, 2 * config.max_streams), thread_name_prefix="blob-download"
        )

    def start(self, client: RegistryClient, descriptor: Descriptor) -> BlobDownload:
        old = self._jobs.get(descriptor.digest)
        previous = old.task if old is not None else None
        if old is not None and previous is not None and not previous.done():
            if not previous.cancelling():
                return old
        else:
            previous = None  # a download being cancelled must let go of the partial file first
        job = BlobDownload(self.blobs, client, descriptor, self.config, self.executor)
        job.task = asyncio.create_task(job.run(previous), name=f"download {descriptor.digest}")
        job.task.add_done_callback(self._finished(descriptor.digest, job))
        self._jobs[descriptor.digest] = job
        return job

    def _finished(self, digest: str, job: BlobDownload) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if self._jobs.get(digest) is job:
                del self._jobs[digest]
            if not task.cancelled():
                task.exception()  # retrieved: the waiters re-raise it

        return done

    async def wait(self, job: BlobDownload) -> None:
        """Wait for ``job``; the last waiter to leave cancels it (the partial file stays)."""
        assert job.task is not None
        job.waiters += 1
        try:
            await asyncio.shield(job.task)
        finally:
            job.waiters -= 1
            if job.waiters == 0 and not job.task.done():
                job.task.cancel()
