"""Stored results of the OpenAI Responses API, so ``previous_response_id``, retrieve, input-item
listing and delete work.

The store lives in memory, per process: a restart or another replica does not see it (DMR keeps
its responses the same way, for an hour). It is bounded twice: at most ``capacity`` responses,
the oldest evicted first, and none older than ``ttl`` seconds. Items are plain JSON objects in
the Responses wire shape; the store never looks inside them except to find an item by ``id``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_CAPACITY = 1000
DEFAULT_TTL_SECONDS = 3600.0

Item = dict[str, Any]


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]
    context: list[Item]  # every input item the response saw: earlier turns, then its own input
    stored_at: float

    @property
    def conversation(self) -> list[Item]:
        """What a follow-up with ``previous_response_id`` continues from."""
        return [*self.context, *self.response.get("output", [])]


class ResponseStore:
    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def put(self, response: dict[str, Any], context: list[Item]) -> None:
        self._expire()
        key = str(response["id"])
        self._entries.pop(key, None)
        self._entries[key] = StoredResponse(response, list(context), self.clock())
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        self._expire()
        return self._entries.get(response_id)

    def delete(self, response_id: str) -> bool:
        self._expire()
        return self._entries.pop(response_id, None) is not None

    def item(self, item_id: str) -> Item | None:
        """An input or output item of any stored response (``item_reference`` inputs)."""
        self._expire()
        for entry in reversed(self._entries.values()):
            for item in entry.conversation:
                if item.get("id") == item_id:
                    return item
        return None

    def _expire(self) -> None:
        # Insertion order is storage order, so expired entries are all at the front.
        deadline = self.clock() - self.ttl
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.stored_at > deadline:
                break
            self._entries.popitem(last=False)
