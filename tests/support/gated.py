"""The real llama.cpp engine with a gate: generations wait for it before their first token.

Tests that need a request *in flight* (a runner in use, a request queued) hold the gate closed,
look at the server over HTTP, then open it. Nothing is faked: models load and generate for real.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio

from modelrunner.engine.base import LoadOptions, Sampling, TokenOut
from modelrunner.engine.llama import LlamaEngine


class GatedGeneration:
    def __init__(self, inner: Any, gate: threading.Event) -> None:
        self.inner = inner
        self.gate = gate

    @property
    def stats(self) -> Any:
        return self.inner.stats

    def cancel(self) -> None:
        self.inner.cancel()

    async def __aiter__(self) -> AsyncIterator[TokenOut]:
        while not await anyio.to_thread.run_sync(self.gate.wait, 0.1):
            pass
        async for out in self.inner:
            yield out


class GatedModel:
    def __init__(self, inner: Any, gate: threading.Event) -> None:
        self._inner = inner
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def generate(self, prompt: list[int], sampling: Sampling) -> GatedGeneration:
        return GatedGeneration(self._inner.generate(prompt, sampling), self._gate)


class GatedEngine:
    """``gate`` starts open; ``hold()`` closes it, ``release()`` opens it."""

    def __init__(self) -> None:
        self.inner = LlamaEngine()
        self.gate = threading.Event()
        self.gate.set()

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def load(self, options: LoadOptions) -> Any:  # an EngineModel, by delegation
        return GatedModel(self.inner.load(options), self.gate)
