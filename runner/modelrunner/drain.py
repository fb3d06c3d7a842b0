"""Graceful shutdown for ``modelrunner serve``.

On SIGTERM uvicorn closes the listening sockets at once (new connections are refused) and waits
for in-flight requests. Those still generating when ``shutdown_timeout`` passes are cut at a token
boundary: their generation raises ``ShuttingDown``, which every dialect already renders as its own
final error line (Ollama ``{"error": ...}``, an OpenAI or Anthropic error event) or, before the
first byte, as a 503, so no client sees a truncated stream. Whatever else is still running a few
seconds later (a pull, say) is cancelled by uvicorn, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import weakref
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import uvicorn

from modelrunner.engine.base import Engine, EngineModel, LoadOptions, TokenOut
from modelrunner.errors import Busy

# After the deadline: time for cut streams to send their last line before uvicorn cancels the rest.
FLUSH_SECONDS = 5.0


class ShuttingDown(Busy):
    """A generation cut short because the server is shutting down (503)."""


class Drain:
    """The generations in progress, and whether the shutdown deadline has passed."""

    def __init__(self) -> None:
        self.expired = False
        self.live: weakref.WeakSet[DrainingGeneration] = weakref.WeakSet()

    def expire(self) -> None:
        self.expired = True
        for generation in list(self.live):
            generation.cancel()


class DrainingGeneration:
    """A generation that raises ``ShuttingDown`` when the drain deadline cut it short."""

    def __init__(self, inner: Any, drain: Drain) -> None:
        self.inner = inner
        self.drain = drain

    @property
    def stats(self) -> Any:
        return self.inner.stats

    def cancel(self) -> None:
        self.inner.cancel()

    def __aiter__(self) -> AsyncIterator[TokenOut]:
        return self._tokens()

    async def _tokens(self) -> AsyncIterator[TokenOut]:
        self.drain.live.add(self)
        try:
            if self.drain.expired:  # queued until after the deadline: never starts
                self.inner.cancel()
                raise ShuttingDown("the server is shutting down")
            async for out in self.inner:
                yield out
            if self.drain.expired and self.inner.stats.done_reason == "cancel":
                raise ShuttingDown("the server is shutting down; generation stopped")
        finally:
            self.drain.live.discard(self)


class DrainingEngine:
    """Wraps an engine so each loaded model's generations can be cut at the deadline. Only the
    model's ``generate`` is replaced, so the model keeps its class (and its capabilities)."""

    def __init__(self, inner: Engine, drain: Drain) -> None:
        self.inner = inner
        self.drain = drain

    def load(self, options: LoadOptions) -> EngineModel:
        model = self.inner.load(options)
        generate = model.generate
        drain = self.drain

        def draining(*args: Any, **kwargs: Any) -> DrainingGeneration:
            return DrainingGeneration(generate(*args, **kwargs), drain)

        setattr(model, "generate", draining)  # noqa: B010 (mypy: a method cannot be assigned)
        return model


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a deadline for generations once shutdown begins."""

    def __init__(self, config: uvicorn.Config, drain: Drain, timeout: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.timeout = timeout

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        deadline = asyncio.get_running_loop().call_later(self.timeout, self.drain.expire)
        try:
            await super().shutdown(sockets)
        finally:
            deadline.cancel()


def _exit_cleanly(signum: int, _: Any) -> NoReturn:
    raise SystemExit(0)


def exit_zero_on_sigterm() -> None:
    """uvicorn re-raises the signal that stopped it once it has shut down; with this handler in
    place that ends the process with status 0 (a clean stop) instead of death by SIGTERM."""
    signal.signal(signal.SIGTERM, _exit_cleanly)
