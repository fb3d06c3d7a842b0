"""Pull and push: the dialect-neutral service behind ``/api/pull``, ``/api/push``,
``POST /models/create`` and ``POST /models/{name}/push``.

A transfer is started in two steps so that each dialect can answer errors properly: ``pull()`` /
``push()`` do everything that can fail cheaply (parse the name, check ``insecure``, find the local
model, fetch and check the manifest) and raise typed errors the router turns into an HTTP status;
the returned :class:`Transfer` then streams progress events while blobs move. A pull publishes the
manifest only after every blob is in the store and verified, so a failed or interrupted pull never
leaves a half-registered model (partial files stay for the next pull to resume).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any, Literal

import anyio

from modelrunner.core.dmr_artifact import docker_artifact
from modelrunner.errors import InvalidRequest
from modelrunner.names import Dialect, ModelName
from modelrunner.registry.auth import Credentials, CredentialStore, lookup_in
from modelrunner.registry.client import RegistryClient, raise_for_status
from modelrunner.registry.config import TransferConfig
from modelrunner.registry.download import BlobDownload, Downloader
from modelrunner.registry.errors import UnsupportedArtifact
from modelrunner.registry.progress import LayerProgress, TransferEvent, follow
from modelrunner.registry.references import Endpoint, endpoint, resolve, split_scheme
from modelrunner.registry.transport import Transport
from modelrunner.registry.upload import push_blob, push_manifest, with_retries
from modelrunner.settings import Settings
from modelrunner.store import media
from modelrunner.store.manifests import Descriptor, Manifest
from modelrunner.store.models import ModelStore

__all__ = ["Transfer", "TransferConfig", "TransferEvent", "TransferService"]

log = logging.getLogger(__name__)

SERVICE_KEY = "transfers"
CONFIG_KEY = "transfer_config"
PUSH_CONCURRENCY = 4
_MODEL_LAYER_PREFIXES = (
    "application/vnd.ollama.image.",
    "application/vnd.docker.ai.",
    "application/vnd.cncf.model.",
)

Mode = Literal["pull", "push"]


class Transfer:
    """A started pull or push: iterate :attr:`events` once to carry it out. :meth:`cancel` stops
    its work at once (a client that hung up), even if nobody iterates the events any more."""

    def __init__(
        self,
        name: ModelName,
        mode: Mode,
        body: Callable[[Transfer], AsyncIterator[TransferEvent]],
    ) -> None:
        self.name = name
        self.mode = mode
        #: Filled in as the transfer runs: bytes ``received`` / ``resumed`` (pull), and how many
        #: blobs were ``uploaded``, ``mounted`` or already ``exists`` (push).
        self.stats: dict[str, int] = {}
        self.cancelled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.events = body(self)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.cancelled:
            task.cancel()
        return task

    def cancel(self) -> None:
        self.cancelled = True
        for task in list(self._tasks):
            task.cancel()

    async def run(self) -> TransferEvent:
        """Carry the transfer out without streaming; the last event (``success``)."""
        last = TransferEvent("success", "success")
        async for event in self.events:
            last = event
        return last


class TransferService:
    """One per app: shared connection pools, shared downloads, known blob locations."""

    def __init__(
        self,
        store: ModelStore,
        *,
        config: TransferConfig | None = None,
        insecure_registries: Iterable[str] = (),
        credentials: CredentialStore | None = None,
    ) -> None:
        self.store = store
        self.config = config or TransferConfig()
        self.insecure_registries = list(insecure_registries)
        self.credentials = credentials or CredentialStore()
        self.transport = Transport(self.config)
        self.downloader = Downloader(store.blobs, self.config)
        # digest -> {(registry netloc, repository)} known to hold it, for cross-repo mounts
        self._origins: dict[str, set[tuple[str, str]]] = {}

    @classmethod
    def from_settings(
        cls, store: ModelStore, settings: Settings, config: TransferConfig | None = None
    ) -> TransferService:
        return cls(
            store,
            config=config,
            insecure_registries=settings.insecure_registries,
            credentials=CredentialStore.from_environment(settings.docker_config),
        )

    @classmethod
    def shared(
        cls, extra: dict[str, Any], store: ModelStore, settings: Settings
    ) -> TransferService:
        """The app's service, kept in ``extra`` (which may also hold a ``transfer_config``)."""
        service = extra.get(SERVICE_KEY)
        if not isinstance(service, cls):
            config = extra.get(CONFIG_KEY)
            service = cls.from_settings(
                store, settings, config if isinstance(config, TransferConfig) else None
            )
            extra[SERVICE_KEY] = service
        return service

    # -- pull ----------------------------------------------------------------------------------

    async def pull(
        self,
        ref: str,
        dialect: Dialect,
        *,
        insecure: bool = False,
        bearer_token: str | None = None,
        registry_auth: dict[str, Any] | None = None,
    ) -> Transfer:
        """``registry_auth``: this request's credentials, host -> Docker auth entry; used
        before the runner's own (environment, Docker config)."""
        target = resolve(
            ref, dialect, insecure=insecure, insecure_registries=self.insecure_registries
        )
        client = self._client(target, bearer_token, registry_auth, "pull")
        raw = await client.get_manifest()
        manifest = Manifest.parse(raw)
        check_model_artifact(manifest)
        return Transfer(
            target.name, "pull", lambda t: self._pull_events(t, client, target, manifest)
        )

    async def _pull_events(
        self,
        transfer: Transfer,
        client: RegistryClient,
        target: Endpoint,
        manifest: Manifest,
    ) -> AsyncIterator[TransferEvent]:
        stats = transfer.stats
        yield TransferEvent("pulling manifest")
        blobs = _unique([*manifest.layers, manifest.config])
        progress = LayerProgress("pulling", blobs)
        with self.store.pinned(d.digest for d in blobs):
            waits: list[asyncio.Task[None]] = []
            jobs = []
            try:
                for blob in blobs:
                    if self.store.blobs.exists(blob.digest):
                        progress.complete(blob.digest)
                        continue
                    job = self.downloader.start(client, blob)
                    jobs.append(job)
                    progress.track(blob.digest, _completed_of(job))
                    waits.append(transfer.spawn(self.downloader.wait(job)))
                async for event in follow(waits, progress, self.config.progress_interval):
                    yield event
            finally:
                await _cancel(waits)
                stats["received"] = sum(job.received for job in jobs)
                stats["resumed"] = sum(job.resumed for job in jobs)
            yield TransferEvent("verifying sha256 digest")
            yield TransferEvent("writing manifest")
            removed = await anyio.to_thread.run_sync(
                self.store.write_manifest, target.name, manifest
            )
        self._remember(target, manifest)
        log.info(
            "pulled %s (%s): %d bytes received, %d resumed from partial files",
            target.name,
            manifest.digest,
            stats["received"],
            stats["resumed"],
        )
        if removed:
            yield TransferEvent("removing unused layers")
        yield TransferEvent("success", "success")

    async def inspect_remote(
        self,
        ref: str,
        dialect: Dialect,
        *,
        bearer_token: str | None = None,
        registry_auth: dict[str, Any] | None = None,
    ) -> tuple[Manifest, dict[str, Any]]:
        """A model's manifest and config JSON in its registry, without pulling it (DMR's
        ``GET /models/{name}?remote=true``)."""
        target = resolve(ref, dialect, insecure_registries=self.insecure_registries)
        client = self._client(target, bearer_token, registry_auth, "pull")
        manifest = Manifest.parse(await client.get_manifest())
        check_model_artifact(manifest)
        response = await client.send("GET", client.url(f"blobs/{manifest.config.digest}"))
        raise_for_status(response, "fetch model config")
        try:
            config = json.loads(response.content)
        except ValueError:
            config = {}
        return manifest, config if isinstance(config, dict) else {}

    # -- push ----------------------------------------------------------------------------------

    async def push(
        self,
        ref: str,
        dialect: Dialect,
        *,
        insecure: bool = False,
        bearer_token: str | None = None,
        registry_auth: dict[str, Any] | None = None,
    ) -> Transfer:
        scheme, rest = split_scheme(ref)
        name = self.store.resolve(rest, dialect)
        manifest, _ = await anyio.to_thread.run_sync(self.store.manifests.read, name)
        target = endpoint(
            name,
            scheme,
            dialect,
            insecure=insecure,
            insecure_registries=self.insecure_registries,
        )
        missing = [d for d in manifest.blobs() if not self.store.blobs.exists(d)]
        if missing:
            raise InvalidRequest(f"model {name} is incomplete: blob {missing[0]} is missing")
        client = self._client(target, bearer_token, registry_auth, "pull,push")
        # Reach the registry before streaming, and before writing anything: a push that cannot
        # start leaves the store as it was.
        await client.blob_size(manifest.config.digest)
        if dialect is Dialect.DMR and not manifest.is_docker_model:
            # DMR pushes DMR artifacts, whatever the model was stored as (Ollama's stays Ollama's).
            record = await anyio.to_thread.run_sync(self.store.load, name)
            manifest = await anyio.to_thread.run_sync(docker_artifact, self.store, record)
        return Transfer(name, "push", lambda t: self._push_events(t, client, target, manifest))

    async def _push_events(
        self,
        transfer: Transfer,
        client: RegistryClient,
        target: Endpoint,
        manifest: Manifest,
    ) -> AsyncIterator[TransferEvent]:
        stats = transfer.stats
        yield TransferEvent("retrieving manifest")
        blobs = _unique([*manifest.layers, manifest.config])
        progress = LayerProgress("pushing", blobs)
        gate = asyncio.Semaphore(PUSH_CONCURRENCY)

        async def one(blob: Descriptor) -> None:
            sent = [0]
            progress.track(blob.digest, lambda: sent[0])

            def report(n: int) -> None:
                sent[0] = n

            async with gate:
                outcome = await with_retries(
                    lambda: push_blob(
                        client,
                        blob,
                        self.store.blobs.path(blob.digest),
                        report,
                        self._mount_source(target, blob.digest),
                    ),
                    f"push blob {blob.digest}",
                    self.config.retries,
                    self.config.backoff,
                    self.config.max_backoff,
                )
            stats[outcome] = stats.get(outcome, 0) + 1

        tasks = [transfer.spawn(one(blob)) for blob in blobs]
        try:
            async for event in follow(tasks, progress, self.config.progress_interval):
                yield event
        finally:
            await _cancel(tasks)
        yield TransferEvent("pushing manifest")
        await push_manifest(client, manifest)
        self._remember(target, manifest)
        log.info("pushed %s (%s): blobs %s", target.name, manifest.digest, stats)
        yield TransferEvent("success", "success")

    # -- helpers -------------------------------------------------------------------------------

    def _client(
        self,
        target: Endpoint,
        bearer_token: str | None,
        registry_auth: dict[str, Any] | None,
        actions: str,
    ) -> RegistryClient:
        hosts = (target.netloc, target.name.host)
        if bearer_token:
            credentials: Credentials | None = Credentials(token=bearer_token)
        else:
            credentials = lookup_in(registry_auth or {}, *hosts) or self.credentials.lookup(*hosts)
        return RegistryClient(self.transport, target, credentials, self.config, actions)

    def _remember(self, target: Endpoint, manifest: Manifest) -> None:
        for digest in manifest.blobs():
            self._origins.setdefault(digest, set()).add((target.netloc, target.repository))

    def _mount_source(self, target: Endpoint, digest: str) -> str | None:
        for netloc, repository in sorted(self._origins.get(digest, ())):
            if netloc == target.netloc and repository != target.repository:
                return repository
        return None

    async def aclose(self) -> None:
        await self.transport.aclose()


def check_model_artifact(manifest: Manifest) -> None:
    """Refuse what is not a model (a container image, a Helm chart...) before downloading it."""
    known_config = manifest.config.media_type in (media.OLLAMA_CONFIG, *media.DOCKER_CONFIGS)
    model_layers = any(x.media_type.startswith(_MODEL_LAYER_PREFIXES) for x in manifest.layers)
    if not (known_config and model_layers):
        raise UnsupportedArtifact(
            f"unsupported artifact: config media type {manifest.config.media_type!r} "
            "with no model layers"
        )


def _unique(descriptors: list[Descriptor]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for descriptor in descriptors:
        seen.setdefault(descriptor.digest, descriptor)
    return list(seen.values())


def _completed_of(job: BlobDownload) -> Callable[[], int]:
    return lambda: job.completed


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
