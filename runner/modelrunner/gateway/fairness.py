"""Fair queueing when every instance of a model is at the gateway's per-instance cap: each API key
has its own FIFO queue and the keys are served round-robin, so one busy key cannot starve the
others. A woken waiter re-checks capacity; one that loses the race goes back to the head of its
key's queue."""

from __future__ import annotations

import asyncio
from collections import deque


class FairQueue:
    def __init__(self) -> None:
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        self._turns: deque[str] = deque()  # keys with waiters, in round-robin order

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def enqueue(self, key: str, front: bool = False) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(key, deque())
        if not queue:
            self._turns.append(key)
        if front:
            queue.appendleft(future)
        else:
            queue.append(future)
        return future

    def wake_one(self) -> bool:
        """Wake the head waiter of the next key in turn; False when nobody waits."""
        while self._turns:
            key = self._turns.popleft()
            queue = self._queues.get(key)
            while queue:
                future = queue.popleft()
                if not future.done():
                    if queue:
                        self._turns.append(key)
                    else:
                        del self._queues[key]
                    future.set_result(None)
                    return True
            self._queues.pop(key, None)
        return False

    def forget(self, key: str, future: asyncio.Future[None]) -> None:
        """A waiter that gave up (timeout, disconnect) leaves its queue."""
        queue = self._queues.get(key)
        if queue is not None and future in queue:
            queue.remove(future)
            if not queue:
                del self._queues[key]
                self._turns.remove(key)
