"""Which models are loaded, for how long, and who may use them.

- A *runner* is a model loaded with given options (context size, embedding mode...). Requests
  that need other options wait until it is idle and reload it.
- ``keep_alive`` sets how long a runner stays after its last request (0: unload at once,
  negative: forever). A reaper task unloads expired idle runners.
- At most ``max_loaded_models`` runners exist, and their memory (weights and the KV cache their
  context and slots allocate) fits ``memory_budget`` bytes when one is set; the least recently
  used idle one is evicted to make room.
- A *pinned* model (a runtime policy) is never evicted and never expires: a request for another
  model that needs its room waits up to ``pinned_wait`` seconds (a pin may be lifted) and then gets
  ``Busy`` (503) naming the pinned models.
- Each runner admits as many requests as its model has slots (``parallel`` with the batched
  engine) and queues up to ``max_queue`` more; beyond that the caller gets ``Busy`` (Ollama's 503).
Loading runs off the event loop; concurrent requests for the same model share one load.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio

from modelrunner.durations import FOREVER
from modelrunner.engine.base import Engine, EngineModel, LoadOptions
from modelrunner.errors import Busy

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


@dataclass
class Runner:
    digest: str
    name: str
    options: LoadOptions
    model: EngineModel
    keep_alive: float
    slots: asyncio.Semaphore
    loaded_at: float
    load_seconds: float
    last_used: float
    expires_at: float = math.inf
    active: int = 0
    waiting: int = 0
    details: dict[str, object] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        return self.active == 0 and self.waiting == 0

    @property
    def mode(self) -> str:
        return "embedding" if self.options.embedding else "completion"

    @property
    def memory_bytes(self) -> int:
        """Weights plus the KV cache estimate: what the budget counts and /api/ps reports. The
        cache is for the slots the engine really made (the simple engine makes one whatever
        ``parallel`` says; the estimate before a load assumes ``parallel``)."""
        per_slot = self.options.cache_bytes // max(self.options.parallel, 1)
        return self.model.size_bytes + per_slot * max(self.model.slots, 1)


@dataclass
class Lease:
    runner: Runner
    load_seconds: float  # time this request spent loading the model (0 if it was loaded)


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        *,
        max_loaded: int = 3,
        max_queue: int = 512,
        default_keep_alive: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        memory_budget: int = 0,
        pinned_wait: float = 10.0,
        is_pinned: Callable[[str], bool] | None = None,
    ) -> None:
        self.engine = engine
        self.max_loaded = max_loaded
        self.memory_budget = memory_budget
        self.pinned_wait = pinned_wait
        self.is_pinned = is_pinned or (lambda _digest: False)
        self.queued = 0  # requests waiting for a load, for room or for a slot (all models)
        self._reserved: dict[tuple[str, bool], int] = {}  # loads under way: bytes they take
        self.max_queue = max_queue
        self.default_keep_alive = default_keep_alive
        self.clock = clock
        self.runners: dict[tuple[str, bool], Runner] = {}
        self._changed = asyncio.Condition()
        self._loading: dict[tuple[str, bool], asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for key in list(self.runners):
            await self._unload(key)

    # -- using a model -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(
        self,
        digest: str,
        name: str,
        options: LoadOptions,
        keep_alive: float | None,
        details: dict[str, object] | None = None,
    ) -> AsyncIterator[Lease]:
        """Load (or reuse) the model and hold one of its slots for the block."""
        key = (digest, options.embedding)
        load_seconds = 0.0
        runner = self.runners.get(key)
        if runner is not None and runner.waiting >= self.max_queue:
            raise Busy(BUSY_MESSAGE)
        self.queued += 1
        try:
            async with self._loading.setdefault(key, asyncio.Lock()):
                runner = self.runners.get(key)
                if runner is not None and runner.options != options:
                    await self._wait_idle(runner)
                    await self._unload(key)
                    runner = None
                if runner is None:
                    started = self.clock()
                    runner = await self._load(key, name, options, details or {})
                    load_seconds = self.clock() - started
                runner.waiting += 1
            try:
                await runner.slots.acquire()
            finally:
                runner.waiting -= 1
        finally:
            self.queued -= 1
        runner.active += 1
        runner.last_used = self.clock()
        runner.expires_at = math.inf
        try:
            yield Lease(runner, load_seconds)
        finally:
            runner.slots.release()
            runner.active -= 1
            runner.last_used = self.clock()
            if keep_alive is not None:
                runner.keep_alive = keep_alive
            await self._after_use(key, runner)

    async def _after_use(self, key: tuple[str, bool], runner: Runner) -> None:
        if not runner.idle:
            return
        if runner.keep_alive <= 0:
            await self._unload(key)  # asked for explicitly (keep_alive 0), pinned or not
        else:
            self._set_expiry(runner)
        await self.notify()

    def _set_expiry(self, runner: Runner) -> None:
        forever = runner.keep_alive == FOREVER or self.pinned(runner)
        runner.expires_at = math.inf if forever else self.clock() + runner.keep_alive

    def pinned(self, runner: Runner) -> bool:
        return self.is_pinned(runner.digest)

    async def notify(self) -> None:
        """Wake waiters: a model went idle or away, or a pin or budget changed."""
        async with self._changed:
            self._changed.notify_all()

    async def _load(
        self, key: tuple[str, bool], name: str, options: LoadOptions, details: dict[str, object]
    ) -> Runner:
        # Room is reserved from the check on (no await in between), so two loads of different
        # models at once cannot both take the last place.
        self._reserved[key] = await self._make_room(name, options)
        try:
            started = self.clock()
            model = await anyio.to_thread.run_sync(self.engine.load, options)
        finally:
            del self._reserved[key]
            await self.notify()
        now = self.clock()
        runner = Runner(
            digest=key[0],
            name=name,
            options=options,
            model=model,
            keep_alive=self.default_keep_alive,
            slots=asyncio.Semaphore(max(1, model.slots)),
            loaded_at=now,
            load_seconds=now - started,
            last_used=now,
            details=details,
        )
        self.runners[key] = runner
        return runner

    async def _make_room(self, name: str, options: LoadOptions) -> int:
        needed = footprint(options) if self.memory_budget else 0
        if self.memory_budget and needed > self.memory_budget:
            raise Busy(
                f"model '{name}' needs {needed} bytes, more than the memory budget "
                f"({self.memory_budget} bytes)"
            )
        deadline: float | None = None
        while not self._fits(needed):
            idle = [(r.last_used, k) for k, r in self.runners.items() if r.idle and not self.pinned(r)]  # fmt: skip
            if idle:
                await self._unload(min(idle)[1])
                continue
            if not self._pins_block(needed):
                async with self._changed:  # busy models: wait until one is idle
                    await self._changed.wait()
                continue
            # Only unloading a pinned model would make room: wait a bounded time for a pin to
            # be lifted (or a budget raised), never unload it.
            now = time.monotonic()
            deadline = now + self.pinned_wait if deadline is None else deadline
            if now >= deadline:
                raise Busy(self._pinned_message(name, needed))
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), deadline - now)
        return needed

    def _used_bytes(self, runners: list[Runner]) -> int:
        return sum(r.memory_bytes for r in runners)

    def _fits(self, needed: int) -> bool:
        if len(self.runners) + len(self._reserved) >= self.max_loaded:
            return False
        budget = self.memory_budget
        used = self._used_bytes(list(self.runners.values())) + sum(self._reserved.values())
        return not budget or used + needed <= budget

    def _pins_block(self, needed: int) -> bool:
        """Whether room cannot be made even by unloading every model that is not pinned."""
        pinned = [r for r in self.runners.values() if self.pinned(r)]
        if len(pinned) >= self.max_loaded:
            return True
        return bool(self.memory_budget) and self._used_bytes(pinned) + needed > self.memory_budget

    def _pinned_message(self, name: str, needed: int) -> str:
        pinned = sorted({r.name for r in self.runners.values() if self.pinned(r)})
        limits = f"max loaded models {self.max_loaded}"
        if self.memory_budget:
            limits += f", memory budget {self.memory_budget} bytes, model needs {needed}"
        return (
            f"cannot load model '{name}': pinned models hold the room ({', '.join(pinned)}; "
            f"{limits}); waited {self.pinned_wait:g}s"
        )

    async def _wait_idle(self, runner: Runner) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: runner.idle)

    async def _unload(self, key: tuple[str, bool]) -> None:
        runner = self.runners.pop(key, None)
        if runner is not None:
            await anyio.to_thread.run_sync(runner.model.close)
            await self.notify()

    # -- explicit control ----------------------------------------------------------------------

    async def unload(self, digest: str) -> int:
        """Unload every idle runner of a model; busy ones expire when their requests end."""
        count = 0
        for key, runner in list(self.runners.items()):
            if key[0] != digest:
                continue
            if runner.idle:
                await self._unload(key)
                count += 1
            else:
                runner.keep_alive = 0
        return count

    async def unload_idle(self, digests: set[str] | None = None) -> int:
        """Unload the idle runners of ``digests`` (all models when None); busy ones stay (DMR)."""
        count = 0
        for key, runner in list(self.runners.items()):
            if (digests is None or key[0] in digests) and runner.idle:
                await self._unload(key)
                count += 1
        return count

    def refresh_expiry(self) -> None:
        """After a pin is lifted: idle runners kept only by the pin expire by keep_alive again."""
        for runner in self.runners.values():
            if runner.idle and runner.expires_at == math.inf and not self.pinned(runner):
                self._set_expiry(runner)

    def set_keep_alive(self, digest: str, keep_alive: float) -> None:
        """A new default keep-alive for the loaded runners of ``digest`` (a policy change)."""
        for runner in self.runners.values():
            if runner.digest == digest:
                runner.keep_alive = keep_alive
                if runner.idle:
                    self._set_expiry(runner)

    async def reap(self) -> None:
        now = self.clock()
        for key, runner in list(self.runners.items()):
            if runner.idle and runner.expires_at <= now and not self.pinned(runner):
                await self._unload(key)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            await self.reap()

    def expires_at(self, runner: Runner) -> float:
        """When an idle runner goes (``math.inf``: never, e.g. pinned or keep_alive forever)."""
        return math.inf if self.pinned(runner) else runner.expires_at

    def loaded(self) -> list[Runner]:
        """Loaded runners, the one that stays longest first (as /api/ps orders them)."""
        return sorted(self.runners.values(), key=lambda r: -self.expires_at(r))


def footprint(options: LoadOptions) -> int:
    """What a load will take: the files it maps (a loaded model's ``size_bytes``) and the KV
    cache its context and slots allocate."""
    return weights_size(options) + options.cache_bytes


def weights_size(options: LoadOptions) -> int:
    """Bytes of the files a load maps (what a loaded model's ``size_bytes`` reports)."""
    total = 0
    for path in (options.model_path, options.projector):
        if path is not None:
            with contextlib.suppress(OSError):
                total += path.stat().st_size
    return total
