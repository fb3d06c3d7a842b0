"""Async client of a runner's public HTTP API (Ollama dialect, plus DMR's pull for Docker Hub).

It works against this project's runner and against a plain Ollama server.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

Progress = Callable[[dict[str, Any]], Awaitable[None]]


class RunnerError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Unreachable(RunnerError):
    """The instance did not answer (down, not ready yet, or the network is partitioned)."""


async def _ignore(_: dict[str, Any]) -> None:
    return None


class RunnerClient:
    def __init__(
        self, base_url: str, timeout: float = 30.0, pull_timeout: float = 3600.0,
        token: str | None = None, http: httpx.AsyncClient | None = None,
    ) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        # A shared client (inventory.py: one per instance, kept-alive connections); without one
        # each call opens its own.
        self.http = http
        self.timeout = timeout
        self.pull_timeout = pull_timeout
        # The runner's management token, sent on every call (the runner's management routes
        # need it; its other routes take it too).
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            if self.http is not None:
                response = await self.http.request(method, path, json=body)
            else:
                async with httpx.AsyncClient(
                    base_url=self.base_url, timeout=self.timeout, headers=self.headers
                ) as client:
                    response = await client.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise Unreachable(f"runner {self.base_url} unreachable: {exc!r}") from None
        if response.status_code >= 400:
            raise RunnerError(_error_text(response), response.status_code)
        return response

    async def tags(self) -> list[dict[str, Any]]:
        models = (await self._request("GET", "/api/tags")).json().get("models") or []
        return list(models)

    async def policies(self) -> dict[str, dict[str, Any]] | None:
        """The runner's runtime policies by model (None: a server without the route, e.g.
        Ollama)."""
        try:
            data = (await self._request("GET", "/runner/policies")).json()
        except RunnerError as exc:
            if exc.status in (404, 405):
                return None
            raise
        return dict(data.get("policies") or {})

    async def put_policy(self, name: str, policy: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = (
            await self._request("PUT", f"/runner/policies/{name}", policy)
        ).json()
        return data

    async def delete_policy(self, name: str) -> bool:
        """Remove ``name``'s policy; False if it had none."""
        try:
            await self._request("DELETE", f"/runner/policies/{name}")
        except RunnerError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def show(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = (await self._request("POST", "/api/show", {"model": name})).json()
        return data

    async def copy(self, source: str, destination: str) -> None:
        await self._request("POST", "/api/copy", {"source": source, "destination": destination})

    async def create(self, name: str, fields: dict[str, Any]) -> None:
        """``/api/create`` with a Modelfile's fields (``from``, ``system``, ``parameters``...)."""
        await self._request("POST", "/api/create", {**fields, "model": name, "stream": False})

    async def delete(self, name: str) -> bool:
        """Delete ``name``; False if it was not there."""
        try:
            await self._request("DELETE", "/api/delete", {"model": name})
        except RunnerError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def pull(
        self, source: str, insecure: bool, progress: Progress = _ignore, auth: str | None = None
    ) -> None:
        """Ollama's ``/api/pull`` with streamed progress; raises on an error line. ``auth``: an
        ``X-Registry-Config`` value (credentials for this pull only)."""
        await self._stream("/api/pull", {"model": source, "insecure": insecure, "stream": True},
                           progress, lambda line: line.get("error"), auth)  # fmt: skip

    async def pull_docker(
        self, source: str, progress: Progress = _ignore, auth: str | None = None
    ) -> None:
        """DMR's ``/models/create`` for Docker Hub model artifacts (``ai/...``)."""

        def error(line: dict[str, Any]) -> str | None:
            return str(line.get("message")) if line.get("type") == "error" else None

        await self._stream("/models/create", {"from": source}, progress, error, auth)

    async def _stream(
        self, path: str, body: dict[str, Any], progress: Progress,
        error_of: Callable[[dict[str, Any]], Any], auth: str | None = None,
    ) -> None:  # fmt: skip
        timeout = httpx.Timeout(self.timeout, read=self.pull_timeout)
        headers = {"X-Registry-Config": auth} if auth else None
        try:
            async with (
                httpx.AsyncClient(
                    base_url=self.base_url, timeout=timeout, headers=self.headers
                ) as client,
                client.stream("POST", path, json=body, headers=headers) as response,
            ):
                if response.status_code >= 400:
                    await response.aread()
                    raise RunnerError(_error_text(response), response.status_code)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    data = json.loads(line)
                    message = error_of(data)
                    if message:
                        raise RunnerError(str(message))
                    await progress(data)
        except httpx.TransportError as exc:
            raise Unreachable(f"runner {self.base_url} unreachable: {exc!r}") from None


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error or data)
