"""The HTTP connection pools the registry client shares: one verifying TLS, one not (insecure)."""

from __future__ import annotations

import asyncio

import httpx

from modelrunner.registry.config import TransferConfig


class Transport:
    """Lazily built ``httpx.AsyncClient`` pools, rebuilt if the event loop changes (tests)."""

    def __init__(self, config: TransferConfig) -> None:
        self.config = config
        self._clients: dict[bool, httpx.AsyncClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self, verify: bool = True) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._clients = {}
            self._loop = loop
        client = self._clients.get(verify)
        if client is None:
            timeout = httpx.Timeout(
                connect=self.config.connect_timeout,
                read=self.config.stall_timeout,
                write=self.config.stall_timeout,
                pool=None,
            )
            client = httpx.AsyncClient(
                verify=verify,
                timeout=timeout,
                follow_redirects=False,
                headers={"User-Agent": self.config.user_agent},
                limits=httpx.Limits(max_connections=128, max_keepalive_connections=32),
            )
            self._clients[verify] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
