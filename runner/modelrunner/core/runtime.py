"""Runtime policies per model: stored in the model store, applied by the scheduler and the core.

Policies are keyed by the model's full stored name (``registry.ollama.ai/library/tiny:latest``);
a name a caller types is resolved as the store resolves it. A policy applies to the model its name
points at, so every other name of the same model (a copy, the source reference of a pulled Model)
loads with the same settings instead of reloading it.

Setting a policy takes effect without a re-import: a model loaded with other settings is reloaded
(when idle), a new keep-alive applies to the loaded model, ``preload`` loads it, and a pin takes
hold at once; ``_configure``'s in-memory overrides of the model are dropped so the declared
policy is what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import anyio

from modelrunner.core.inference import InferenceService
from modelrunner.core.policy import RuntimePolicy, parse_policy, policy_from_stored
from modelrunner.errors import InvalidName, ModelRunnerError, NotFound
from modelrunner.names import Dialect, candidates, is_hex_id, parse
from modelrunner.store.models import ModelStore
from modelrunner.store.policies import PolicyFile
from modelrunner.store.records import ModelRecord

log = logging.getLogger(__name__)
INDEX_TTL = 1.0  # seconds a name -> digest index is trusted (a pull may move a name)


class PolicyService:
    def __init__(self, store: ModelStore, inference: InferenceService, max_context: int) -> None:
        self.store = store
        self.inference = inference
        self.max_context = max_context
        self.file = PolicyFile(store.root)
        self.table: dict[str, RuntimePolicy] = {}
        for key, data in self.file.read().items():
            try:
                self.table[str(parse(key))] = policy_from_stored(data, max_context)
            except ModelRunnerError as exc:
                log.error("ignoring the stored runtime policy of %s: %s", key, exc.message)
        self._lock = asyncio.Lock()
        self._index: dict[str, RuntimePolicy] = {}
        self._index_at = -INDEX_TTL
        self._tasks: set[asyncio.Task[None]] = set()
        inference.policy_for = self.policy_for
        inference.scheduler.is_pinned = self.is_pinned

    # -- lookups the scheduler and the core make ------------------------------------------------

    def policy_for(self, record: ModelRecord) -> RuntimePolicy | None:
        direct = self.table.get(str(record.name))
        return direct if direct is not None else self._by_digest().get(record.digest)

    def is_pinned(self, digest: str) -> bool:
        policy = self._by_digest().get(digest)
        return policy is not None and policy.pinned

    def _by_digest(self) -> dict[str, RuntimePolicy]:
        if not self.table:
            return {}
        now = time.monotonic()
        if now - self._index_at >= INDEX_TTL:
            index: dict[str, RuntimePolicy] = {}
            for key, policy in sorted(self.table.items()):
                with contextlib.suppress(OSError, ValueError, ModelRunnerError):
                    digest = self.store.manifest_digest(parse(key)).removeprefix("sha256:")
                    index.setdefault(digest, policy)
            self._index, self._index_at = index, now
        return self._index

    def _invalidate(self) -> None:
        self._index_at = -INDEX_TTL

    # -- the API --------------------------------------------------------------------------------

    def listing(self) -> dict[str, dict[str, Any]]:
        return {key: policy.to_json() for key, policy in sorted(self.table.items())}

    def find_key(self, ref: str) -> str:
        """The stored key a typed name means: a key it parses to, else the store's reading."""
        for name in candidates(ref, Dialect.OLLAMA):
            for key in self.table:
                if parse(key).key == name.key:
                    return key
        found = self.store.find(ref, Dialect.OLLAMA)
        if found is not None and str(found) in self.table:
            return str(found)
        raise NotFound(f"no runtime policy for model '{ref}'")

    async def put(self, ref: str, body: Any) -> tuple[str, RuntimePolicy]:
        policy = parse_policy(body, self.max_context)  # 400 before anything changes
        if not candidates(ref, Dialect.OLLAMA) and not is_hex_id(ref):
            raise InvalidName(f"invalid model name {ref!r}")
        record = await self.inference.record(ref, Dialect.OLLAMA)  # 404 for an unknown model
        key = str(record.name)
        async with self._lock:
            table = {k: p.to_json() for k, p in self.table.items()}
            table[key] = policy.to_json()
            await anyio.to_thread.run_sync(self.file.write, table)
            self.table[key] = policy
            self._invalidate()
        self.inference.context_overrides.pop(record.digest, None)
        self.inference.parallel_overrides.pop(record.digest, None)
        self._apply(record, policy)
        self.inference.scheduler.refresh_expiry()
        await self.inference.scheduler.notify()
        return key, policy

    async def delete(self, ref: str) -> str:
        async with self._lock:
            key = self.find_key(ref)
            table = {k: p.to_json() for k, p in self.table.items() if k != key}
            await anyio.to_thread.run_sync(self.file.write, table)
            del self.table[key]
            self._invalidate()
        self.inference.scheduler.refresh_expiry()
        await self.inference.scheduler.notify()  # a lifted pin may let a waiting load go on
        return key

    # -- applying -------------------------------------------------------------------------------

    def _apply(self, record: ModelRecord, policy: RuntimePolicy) -> None:
        scheduler = self.inference.scheduler
        seconds = policy.keep_alive_seconds
        if seconds is not None:
            scheduler.set_keep_alive(record.digest, seconds)
        loaded = [r for r in scheduler.runners.values() if r.digest == record.digest]
        key = str(record.name)
        for runner in loaded:
            embedding = runner.options.embedding
            with contextlib.suppress(ModelRunnerError):
                if self.inference.load_options(record, {}, embedding) != runner.options:
                    # Loading through a lease reloads it with the new settings once idle.
                    self._spawn(self._load(key, embedding, reload_of=record.digest))
        if policy.preload and not loaded:
            self._spawn(self._load(key, "completion" not in record.capabilities()))

    def start(self) -> None:
        """Preload the models whose policy says so (at startup, in the background)."""
        keys = [key for key, policy in sorted(self.table.items()) if policy.preload]
        if keys:
            self._spawn(self._preload_all(keys))

    async def _preload_all(self, keys: list[str]) -> None:
        for key in keys:
            try:
                record = await self.inference.record(key, Dialect.OLLAMA)
            except ModelRunnerError as exc:
                log.warning("cannot preload %s: %s", key, exc.message)
                continue
            await self._load(key, "completion" not in record.capabilities())

    async def _load(self, key: str, embedding: bool, reload_of: str | None = None) -> None:
        runners = self.inference.scheduler.runners
        if reload_of is not None and (reload_of, embedding) not in runners:
            return  # unloaded meanwhile: the next request loads it with the policy
        try:
            await self.inference.preload(key, Dialect.OLLAMA, None, embedding=embedding)
            log.info("loaded %s as its runtime policy says", key)
        except ModelRunnerError as exc:
            log.warning("cannot load %s for its runtime policy: %s", key, exc.message)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
