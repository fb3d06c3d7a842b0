"""The HTTP connection pools the registry client shares: one verifying TLS, one not (insecure)."""

from __future__ import annotations

import asyncio

import httpcore
import httpx

from modelrunner.registry.config import TransferConfig

# httpcore reads a response 64 KiB at a time; 1 MiB reads make a blocking download about twice
# as fast on a fast link (fewer parser round trips). Blob bodies are the only large responses.
_READ_SIZE = 1 << 20
if getattr(httpcore.HTTP11Connection, "READ_NUM_BYTES", _READ_SIZE) < _READ_SIZE:
    httpcore.HTTP11Connection.READ_NUM_BYTES = _READ_SIZE


class Transport:
    """Lazily built ``httpx.AsyncClient`` pools, rebuilt if the event loop changes (tests)."""

    def __init__(self, config: TransferConfig) -> None:
        self.config = config
        self._clients: dict[bool, httpx.AsyncClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync: dict[bool, httpx.Client] = {}

    def client(self, verify: bool = True) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._clients = {}
            self._loop = loop
        client = self._clients.get(verify)
        if client is None:
            client = httpx.AsyncClient(
                verify=verify,
                timeout=self._timeout(),
                follow_redirects=False,
                headers={"User-Agent": self.config.user_agent},
                limits=httpx.Limits(max_connections=128, max_keepalive_connections=32),
            )
            self._clients[verify] = client
        return client

    def sync_client(self, verify: bool = True) -> httpx.Client:
        """Blocking pools for blob bodies, read in worker threads (thread-safe, loop-free)."""
        client = self._sync.get(verify)
        if client is None:
            client = httpx.Client(
                verify=verify,
                timeout=self._timeout(),
                follow_redirects=False,
                headers={"User-Agent": self.config.user_agent},
                limits=httpx.Limits(max_connections=128, max_keepalive_connections=32),
            )
            client = self._sync.setdefault(verify, client)
        return client

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.config.connect_timeout,
            read=self.config.stall_timeout,
            write=self.config.stall_timeout,
            pool=None,
        )

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
        for sync in self._sync.values():
            sync.close()
        self._sync = {}
