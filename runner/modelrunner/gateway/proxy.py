"""One attempt at one instance: send the request, wait for the first body byte, and only then commit
to it (a connect failure, a reset or a 503 before that byte is ``Retryable``); then pass the bytes
through as they arrive. ``send`` is the ASGI send, so a slow client slows the upstream read
(backpressure), and cancelling the task closes the upstream connection at once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from modelrunner.gateway.shapes import dialect_of
from modelrunner.gateway.table import Instance

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
INSTANCE_HEADER = "x-model-runner-instance"
_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
}  # fmt: skip
_DROP_BACK = {"connection", "keep-alive", "transfer-encoding", "date", "server"}
_RESET = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_CONNECT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass
class Incoming:
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    json: dict[str, Any] | None = None
    arrived: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Retryable(Exception):
    """Nothing reached the client yet: another instance may serve this request."""

    def __init__(self, kind: str, eject: bool, busy: tuple[int, list[Any], bytes] | None = None):
        super().__init__(kind)
        self.kind, self.eject, self.busy = kind, eject, busy


@dataclass
class Opened:
    response: httpx.Response
    first: bytes
    rest: AsyncIterator[bytes]


def _read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return None
    return lines[0] if lines else None


class Upstream:
    def __init__(self, client: httpx.AsyncClient, token_file: Path | None, strip_auth: bool):
        self.client, self.token_file, self.strip_auth = client, token_file, strip_auth

    def auth_headers(self, instance: Instance | None = None) -> dict[str, str]:
        """What the gateway sends an instance to authenticate (its own token file, else
        ``--backend-token-file``)."""
        token = _read_token((instance.token_file if instance else None) or self.token_file)
        return {"authorization": f"Bearer {token}"} if token else {}

    def _headers(self, incoming: Incoming, instance: Instance) -> list[tuple[str, str]]:
        token = _read_token(instance.token_file or self.token_file)
        out: list[tuple[str, str]] = []
        for raw_name, raw_value in incoming.headers:
            name = raw_name.decode("latin-1").lower()
            if name in _HOP or name.startswith("proxy-"):
                continue
            if name in ("authorization", "x-api-key") and (token or self.strip_auth):
                continue
            out.append((name, raw_value.decode("latin-1")))
        if token:
            out.append(("authorization", f"Bearer {token}"))
        if not any(name == "accept-encoding" for name, _ in out):
            out.append(("accept-encoding", "identity"))  # else httpx asks for gzip
        return out

    async def open(self, instance: Instance, incoming: Incoming, retry_busy: bool) -> Opened:
        url = instance.url + incoming.path
        if incoming.query:
            url += "?" + incoming.query.decode("latin-1")
        request = self.client.build_request(
            incoming.method, url, headers=self._headers(incoming, instance), content=incoming.body
        )
        try:
            response = await self.client.send(request, stream=True)
        except _CONNECT as exc:
            raise Retryable(f"connect: {exc!r}", eject=True) from None
        except _RESET as exc:
            raise Retryable(f"reset: {exc!r}", eject=True) from None
        try:
            if response.status_code == 503 and retry_busy:
                body = await response.aread()
                raise Retryable("busy", eject=False, busy=(503, _back(response), body))
            rest = response.aiter_raw()
            try:
                first = await anext(rest)
            except StopAsyncIteration:
                first = b""
        except _RESET as exc:
            await response.aclose()
            raise Retryable(f"reset before the first byte: {exc!r}", eject=True) from None
        except BaseException:
            await response.aclose()
            raise
        return Opened(response, first, rest)


def _back(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    return [
        (k.lower(), v)
        for k, v in response.headers.raw
        if k.decode("latin-1").lower() not in _DROP_BACK
    ]


def start_message(status: int, headers: list[tuple[bytes, bytes]], instance: str) -> Message:
    headers = [*headers, (INSTANCE_HEADER.encode(), instance.encode("latin-1", "replace"))]
    return {"type": "http.response.start", "status": status, "headers": headers}


class Tap(Protocol):
    """Sees the body on its way through (token counting)."""

    def feed(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...


async def relay(
    opened: Opened, instance: Instance, path: str, send: Send, tap: Tap | None = None
) -> bool:
    """Pass the answer through; True when it ended cleanly. A failure after the first byte cannot
    be retried: the stream ends with an error event in the caller's dialect. ``tap`` is fed each
    piece after it was sent on, and told of the end before the client can see it (the last piece
    of a body with a length, the end of a stream), as the runner counts tokens before it ends."""
    response = opened.response
    length = response.headers.get("content-length", "")
    left = int(length) if length.isdigit() else None

    async def piece(chunk: bytes) -> None:
        nonlocal left
        if left is not None and tap is not None:
            left -= len(chunk)
            if left <= 0:
                tap.feed(chunk)
                tap.end()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                return
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if tap is not None:
            tap.feed(chunk)

    try:
        await send(start_message(response.status_code, _back(response), instance.name))
        if opened.first:
            await piece(opened.first)
        try:
            async for chunk in opened.rest:
                await piece(chunk)
        except (*_RESET, httpx.TimeoutException):
            tail = stream_error(path, response.headers.get("content-type", ""), instance.name)
            if tap is not None:
                tap.end()
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            return False
        if tap is not None:
            tap.end()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True
    finally:
        await response.aclose()


def stream_error(path: str, content_type: str, instance: str) -> bytes:
    message = f"instance {instance} failed while answering"
    if "text/event-stream" not in content_type:
        if "ndjson" in content_type:
            return json.dumps({"error": message}).encode() + b"\n"
        return b""
    if dialect_of(path) == "anthropic":
        data = {"type": "error", "error": {"type": "api_error", "message": message}}
        return b"event: error\ndata: " + json.dumps(data).encode() + b"\n\n"
    data2 = {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
    return b"data: " + json.dumps(data2).encode() + b"\n\n"
