"""What passes between the batched engine's decode thread and its callers: the request a
generation submits, the slot it occupies, and the outbox that hands each step's tokens to the
consumers' event loops (see ``batched.py`` for the loop itself)."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelrunner.engine import batch_native as nat
from modelrunner.engine import batch_sampling as samplers
from modelrunner.engine.base import GenerationStats, Sampling, TokenOut
from modelrunner.engine.vision import Media

END = object()  # the last item a request's queue receives
_MIN_REUSE = 16  # shortest shared prefix worth taking a slot's cache for


class RequestQueue(Protocol):
    """The model side a generation talks to (``BatchedLlamaModel``), from the event loop."""

    def _submit(self, request: Request) -> None: ...

    def _not_coming(self) -> None: ...

    def _poke(self) -> None: ...


class Outbox:
    """What one step hands to the event loops of its consumers: delivered with one wake-up per
    loop per step (``call_soon_threadsafe`` writes to the loop's self-pipe each time; per token,
    that was a syscall and a wake-up per stream per step on the decode thread)."""

    def __init__(self) -> None:
        self._items: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Any], Any]]] = {}

    def put(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], item: Any) -> bool:
        """Queue ``item``; False if its consumer's event loop is closed (nobody will read it)."""
        if loop.is_closed():
            return False
        self._items.setdefault(loop, []).append((queue, item))
        return True

    def flush(self) -> None:
        items, self._items = self._items, {}
        for loop, batch in items.items():
            with contextlib.suppress(RuntimeError):  # closed since: nobody is reading
                loop.call_soon_threadsafe(deliver, batch)


def deliver(batch: list[tuple[asyncio.Queue[Any], Any]]) -> None:
    for queue, item in batch:
        queue.put_nowait(item)


@dataclass(eq=False)
class Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV is at positions 0..n-1
    request: Request | None = None
    last_used: float = 0.0


@dataclass(eq=False)
class Request:
    generation: BatchedGeneration
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any]
    prompt: list[int]
    sampling: Sampling
    sampler: samplers.RequestSampler
    submitted: int
    media: Media | None = None  # images: spans of placeholder tokens decoded as embeddings
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    slot: Slot | None = None
    done: int = 0  # prompt tokens whose KV is in place
    pending: int = -1  # sampled token not yet decoded (-1: none)
    limit: int = 0
    admitted: int = 0
    first: int = 0
    index: int = -1  # batch index of this request's logits in the current step
    chunk: list[int] = field(default_factory=list)  # tokens this request put in the current step


@dataclass(eq=False)
class EmbedJob:
    tokens: list[list[int]]
    future: Future[list[list[float]]]


def choose_slot(free: list[Slot], busy: list[int], prompt: list[int], unified_kv: bool) -> Slot:
    """The idle slot sharing the longest useful prefix with ``prompt``; otherwise one next
    to the ``busy`` slots, the least recently used of those (empty slots first), so recent
    caches survive longest.

    A prefix counts when it is at least ``min(16, len(prompt))`` tokens: a BOS plus a few
    byte tokens in common is not worth evicting another request's history for. Busy slots
    are kept together because, with a KV stream per sequence, llama.cpp's attention spans
    every stream from the lowest busy sequence to the highest: four requests in slots
    0, 5, 6, 7 cost as much attention as eight (measured: 1.6x the step time of 1-4).
    """
    need = max(2, min(_MIN_REUSE, len(prompt)))
    best: Slot | None = None
    best_len = need - 1
    for s in sorted(free, key=lambda s: s.last_used):
        n = nat.common_prefix(s.cached, prompt)
        if n > best_len:
            best, best_len = s, n
    if best is not None:
        return best
    if not busy or unified_kv:
        return min(free, key=lambda s: s.last_used)
    lo, hi = min(busy), max(busy)
    return min(free, key=lambda s: (max(hi, s.seq) - min(lo, s.seq), s.last_used))


class BatchedGeneration:
    """A request to a batched model (``BatchedLlamaModel``): submitted when iteration starts."""

    def __init__(
        self,
        model: RequestQueue,
        prompt: list[int],
        sampling: Sampling,
        sampler: samplers.RequestSampler,
        media: Media | None = None,
    ) -> None:
        self.model = model
        self.media = media
        self.prompt = prompt
        self.sampling = sampling
        self.stats = GenerationStats(prompt_tokens=len(prompt))
        self.cancelled = False
        self._sampler = sampler
        self._started = False
        self._coming = True  # counted in the model's ``_coming`` until submitted or dropped

    def _arrived(self) -> bool:
        """Stop counting this generation as coming (once); True if it was counted."""
        coming, self._coming = self._coming, False
        return coming

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self._started:
                self.model._poke()
            elif self._arrived():
                self.model._not_coming()

    def __del__(self) -> None:  # never iterated: free the native samplers here
        with contextlib.suppress(Exception):
            if self._arrived():
                self.model._not_coming()
            self._sampler.free()

    async def __aiter__(self) -> AsyncIterator[TokenOut]:
        if self._started:
            raise RuntimeError("a generation can only be iterated once")
        self._started = True
        if self.cancelled:
            self.stats.done_reason = "cancel"
            self._sampler.free()
            return
        queue: asyncio.Queue[Any] = asyncio.Queue()
        request = Request(
            generation=self,
            loop=asyncio.get_running_loop(),
            queue=queue,
            prompt=self.prompt,
            sampling=self.sampling,
            sampler=self._sampler,
            submitted=time.perf_counter_ns(),
            media=self.media,
        )
        self.model._submit(request)
        try:
            while True:
                item = await queue.get()
                if item is END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel()
