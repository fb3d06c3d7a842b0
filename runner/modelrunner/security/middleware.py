"""The security middleware: host guard, credentials, per-key limits, bounded bodies, and a 4xx in
the caller's dialect for input the routers did not expect (never a bare 500 page)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

from fastapi import FastAPI
from prometheus_client import Counter

from modelrunner.metrics import Metrics
from modelrunner.security.bounds import Refusal, check_json
from modelrunner.security.dialect import error_for
from modelrunner.security.hosts import host_allowed, is_loopback
from modelrunner.security.keys import Identity, KeyRing
from modelrunner.security.limits import KeyLimits, TokenTap, current_key
from modelrunner.security.routes import Access, classify
from modelrunner.settings import Settings, parse_listen

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("modelrunner.security")
_UPLOADS = re.compile(r"^/(api/blobs/.+|models/load)$")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Exceptions that, escaping a route before it answered, mean input it did not expect (a schema
# llama.cpp cannot convert, a value of the wrong type deep inside): the caller's fault, a 400.
_INPUT_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    AssertionError,
    RecursionError,
    OverflowError,
)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _credential(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, keys: KeyRing, limits: KeyLimits) -> None:
        self.app, self.settings, self.keys, self.limits = app, settings, keys, limits
        # Ollama guards a listener bound to loopback; one on 0.0.0.0 reached through 127.0.0.1
        # is not guarded either (it is meant to be reached by any name).
        self.wildcard = any(_unspecified(address) for address in settings.listen)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        identity: Identity | None = None
        try:
            self._check_sizes(scope)
            identity = self._authorize(scope, headers)
            body = await self._read_body(scope, headers, receive)
        except Refusal as refusal:
            if identity is not None and not identity.management:
                self.limits.release(identity.id)
            await self._refuse(scope, receive, send, refusal)
            return
        limited = identity is not None and not identity.management
        token = current_key.set(identity.id if identity is not None and limited else None)
        try:
            await self._serve(scope, _replay(body, receive) if body is not None else receive, send)
        finally:
            current_key.reset(token)
            if identity is not None and limited:
                self.limits.release(identity.id)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
        extra = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else {}
        if refusal.status == 401:
            extra["WWW-Authenticate"] = "Bearer"
        await error_for(scope["path"], refusal.status, refusal.message, extra)(scope, receive, send)

    def _check_sizes(self, scope: Scope) -> None:
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
        if target > self.settings.max_url_length:
            raise Refusal(414, f"request URL is longer than {self.settings.max_url_length} bytes")
        size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if size > self.settings.max_header_size:
            raise Refusal(
                431, f"request headers are larger than {self.settings.max_header_size} bytes"
            )

    def _authorize(self, scope: Scope, headers: dict[str, str]) -> Identity | None:
        server = scope.get("server")
        guarded = not self.wildcard and server is not None and is_loopback(str(server[0]))
        if guarded and not host_allowed(headers.get("host", ""), self.settings.allowed_hosts):
            raise Refusal(403, "forbidden: this Host is not allowed")
        access = classify(scope["method"], scope["path"])
        if access is Access.PUBLIC:
            return None
        identity = self.keys.identify(_credential(headers))
        if access is Access.MANAGEMENT and self.keys.token_required:
            if identity is None:
                raise Refusal(401, "unauthorized: this route needs the management token")
            if not identity.management:
                raise Refusal(403, "forbidden: this route needs the management token")
        elif self.keys.keys_required and identity is None:
            raise Refusal(401, "unauthorized: missing or invalid API key")
        if identity is not None and not identity.management:
            refusal = self.limits.admit(identity.id)
            if refusal is not None:
                raise Refusal(429, refusal[0], retry_after=refusal[1])
        return identity

    async def _read_body(
        self, scope: Scope, headers: dict[str, str], receive: Receive
    ) -> bytes | None:
        """The whole body of a JSON request, checked; None for uploads (streamed through)."""
        if scope["method"] not in _BODY_METHODS:
            return None
        length = headers.get("content-length", "")
        declared = int(length) if length.isdigit() else None
        if _UPLOADS.match(scope["path"]):
            cap = self.settings.max_upload_size
            if cap and declared is not None and declared > cap:
                raise Refusal(413, f"upload of {declared} bytes is larger than {cap} bytes")
            return None
        cap = self.settings.max_body_size
        too_large = Refusal(413, f"request body is larger than {cap} bytes")
        if declared is not None and declared > cap:
            raise too_large
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.settings.body_timeout)
            except TimeoutError:
                raise Refusal(408, "timed out reading the request body") from None
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            check_json(body, self.settings)
        except Refusal:
            raise
        except Exception:  # a gap in these checks must not cost the caller a 500
            log.exception("%s %s: input checks failed", scope["method"], scope["path"])
        return body

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise
            path = scope["path"]
            if isinstance(exc, _INPUT_ERRORS):
                log.warning("%s %s: unexpected input", scope["method"], path, exc_info=exc)
                message = f"invalid request: {exc}" if str(exc) else "invalid request"
                await error_for(path, 400, message)(scope, receive, send)
            else:
                log.exception("%s %s failed", scope["method"], path)
                await error_for(path, 500, "internal error")(scope, receive, send)


def _unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(parse_listen(address)[0]).is_unspecified
    except ValueError:
        return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read ahead, once; then the client's own messages (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def install_security(app: FastAPI, settings: Settings, metrics: Metrics) -> KeyRing:
    """Add the middleware (call before CORS, so preflights stay unauthenticated) and tap the
    core's token counters for per-key usage."""
    keys = KeyRing(settings)
    limits = KeyLimits(settings, metrics.registry, keys)
    metrics.prompt_tokens = cast(Counter, TokenTap(metrics.prompt_tokens, limits, "prompt"))
    metrics.generated_tokens = cast(
        Counter, TokenTap(metrics.generated_tokens, limits, "generated")
    )
    app.add_middleware(SecurityMiddleware, settings=settings, keys=keys, limits=limits)
    _warn_if_open(settings, keys)
    return keys


def _warn_if_open(settings: Settings, keys: KeyRing) -> None:
    if keys.keys_required or keys.token_required:
        return
    for address in settings.listen:
        try:
            host = parse_listen(address)[0]
        except ValueError:
            continue
        if not is_loopback(host):
            log.warning(
                "listening on %s with no management token and no API keys: anyone who can "
                "reach it can run, pull, push and delete models (set MODEL_RUNNER_MANAGEMENT_TOKEN "
                "and MODEL_RUNNER_API_KEYS or MODEL_RUNNER_API_KEYS_FILE)",
                address,
            )
