"""Where the routing table comes from: static ``--backend`` URLs (their models polled from
``GET /api/tags``), a JSON file (re-read when it changes) and a ConfigMap (kube.py). ``Routes``
merges them and wakes held requests whenever the table (or an instance's health) changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from modelrunner.gateway.table import Instance, NameKey, Table, TableError, parse_table, table_key

log = logging.getLogger("modelrunner.gateway")
FILE_POLL = 1.0  # the contract's "~1 s"


class Routes:
    def __init__(self) -> None:
        self._parts: dict[str, Table] = {}
        self.table = Table()
        self._event = asyncio.Event()

    def update(self, source: str, table: Table) -> None:
        if self._parts.get(source) == table:
            return
        self._parts[source] = table
        merged = Table()
        for part in self._parts.values():
            merged = merged.merged(part)
        self.table = merged
        self.changed()

    def changed(self) -> None:
        """Wake everyone waiting for a change (a held request, a full queue)."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, patience: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), patience)


class StaticBackends:
    """``--backend`` URLs: each is an instance (and a runner) named by its URL. A backend that
    stops answering keeps its last model list but is ejected, so its models are held, not 404.
    Listings carry ``auth()``'s headers: a backend with API keys answers 401 without them."""

    def __init__(
        self,
        urls: list[str],
        client: httpx.AsyncClient,
        routes: Routes,
        eject: Callable[[str, str], None],
        readmit: Callable[[str], None],
        auth: Callable[[], dict[str, str]] = dict,
    ) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self._client, self._routes = client, routes
        self._eject, self._readmit, self._auth = eject, readmit, auth
        self._models: dict[str, frozenset[NameKey]] = {}
        self._names: dict[NameKey, str] = {}

    async def poll(self) -> None:
        await asyncio.gather(*(self._poll_one(url) for url in self.urls))
        instances = tuple(
            Instance(name=url, url=url, runner=url, models=self._models.get(url, frozenset()))
            for url in self.urls
        )
        self._routes.update("backends", Table((), instances, dict(self._names)))

    async def _poll_one(self, url: str) -> None:
        try:
            response = await self._client.get(f"{url}/api/tags", headers=self._auth(), timeout=5.0)
            response.raise_for_status()
            entries = response.json().get("models") or []
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            self._eject(url, f"GET /api/tags failed: {exc!r}")
            return
        keys = set()
        for entry in entries:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str):
                continue
            key = table_key(name)
            if key is not None:
                keys.add(key)
                self._names.setdefault(key, name)
        self._models[url] = frozenset(keys)
        self._readmit(url)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.poll()


class RoutesFile:
    """A JSON routing table on disk, re-read when its mtime or size changes; a table that does
    not parse is logged and the last good one stays."""

    def __init__(self, path: Path, routes: Routes) -> None:
        self.path, self._routes = path, routes
        self._stamp: tuple[int, int] | None = None

    def poll(self) -> None:
        try:
            stat = self.path.stat()
        except OSError as exc:
            if self._stamp is not None:
                log.warning("cannot read routing table %s: %s", self.path, exc.strerror)
            self._stamp = None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            table = parse_table(json.loads(self.path.read_text()))
        except (OSError, ValueError, TableError) as exc:
            log.warning("routing table %s not used: %s", self.path, exc)
            return
        self._routes.update("file", table)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FILE_POLL)
            self.poll()


async def forever(name: str, step: Callable[[], Awaitable[None]]) -> None:
    """Run a source's loop; a bug in one poll is logged, not fatal to the gateway."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("routing source %s failed; retrying", name)
            await asyncio.sleep(1.0)
