"""Ejection and probing: an instance that fails a connection leaves the rotation at once and is
probed (``GET /api/version``) until it answers, then comes back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import httpx

log = logging.getLogger("modelrunner.gateway")


class Health:
    def __init__(self, client: httpx.AsyncClient, interval: float, on_change: Callable[[], None]):
        self._client, self._interval, self._on_change = client, interval, on_change
        self._ejected: dict[str, asyncio.Task[None]] = {}

    def ok(self, url: str) -> bool:
        return url not in self._ejected

    def eject(self, url: str, reason: str) -> None:
        if url in self._ejected:
            return
        log.warning("ejected %s: %s", url, reason)
        self._ejected[url] = asyncio.create_task(self._probe(url))
        self._on_change()

    def readmit(self, url: str) -> None:
        """A successful poll of a static backend brings it back before the probe does."""
        task = self._ejected.pop(url, None)
        if task is not None:
            task.cancel()
            log.info("readmitted %s", url)
            self._on_change()

    async def _probe(self, url: str) -> None:
        while True:
            await asyncio.sleep(self._interval)
            with contextlib.suppress(httpx.HTTPError):
                response = await self._client.get(f"{url}/api/version", timeout=2.0)
                if response.status_code < 500:
                    break
        self._ejected.pop(url, None)
        log.info("readmitted %s", url)
        self._on_change()

    async def close(self) -> None:
        tasks = list(self._ejected.values())
        self._ejected.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
