"""Progress of a pull or push as dialect-neutral events; each dialect renders them its own way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from modelrunner.registry.errors import TransferCancelled
from modelrunner.store.manifests import Descriptor

EventKind = Literal["status", "layer", "success"]


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """``status`` is Ollama's text (``pulling manifest``, ``pulling 1a2b3c4d5e6f``, ``success``).
    Layer events carry the blob ``digest``, its ``total`` size and the bytes ``completed``;
    ``image_total`` is the size of every blob of the model (DMR reports it)."""

    status: str
    kind: EventKind = "status"
    digest: str | None = None
    total: int | None = None
    completed: int | None = None
    image_total: int = 0


def short(digest: str) -> str:
    """Ollama's layer label: the first 12 hex characters of the digest."""
    return digest.removeprefix("sha256:")[:12]


class LayerProgress:
    """Per-blob byte counts of one operation, reported as layer events when they change."""

    def __init__(self, verb: str, descriptors: Sequence[Descriptor]) -> None:
        self.verb = verb
        self.totals = {d.digest: d.size for d in descriptors}
        self.image_total = sum(self.totals.values())
        self.sources: dict[str, Callable[[], int]] = {}
        self._sent: dict[str, int] = {}

    def track(self, digest: str, completed: Callable[[], int]) -> None:
        self.sources[digest] = completed

    def complete(self, digest: str) -> None:
        total = self.totals[digest]
        self.sources[digest] = lambda: total

    def changed(self) -> list[TransferEvent]:
        events = []
        for digest, total in self.totals.items():
            source = self.sources.get(digest)
            done = min(source() if source else 0, total)
            if self._sent.get(digest) == done:
                continue
            self._sent[digest] = done
            events.append(
                TransferEvent(
                    f"{self.verb} {short(digest)}",
                    "layer",
                    digest,
                    total,
                    done,
                    self.image_total,
                )
            )
        return events


async def follow(
    tasks: Collection[asyncio.Future[Any]], progress: LayerProgress, interval: float
) -> AsyncIterator[TransferEvent]:
    """Layer events every ``interval`` until every task is done; the first failure is raised
    (the caller cancels what is left), :class:`TransferCancelled` if a task was cancelled."""
    pending = set(tasks)
    for event in progress.changed():
        yield event
    while pending:
        done, pending = await asyncio.wait(
            pending, timeout=interval, return_when=asyncio.FIRST_EXCEPTION
        )
        for event in progress.changed():
            yield event
        for task in done:
            if task.cancelled():
                raise TransferCancelled()
            error = task.exception()
            if error is not None:
                raise error
