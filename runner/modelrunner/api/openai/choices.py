"""Several choices in one OpenAI answer: ``n`` generations of a request, and one (or ``n``) per
prompt of a ``/v1/completions`` prompt list. Each choice is its own generation; they run one after
another, since a session holds a slot of the model until it ends and opening them all at once
could wait on itself. The first is opened before the response starts, so its errors get a status
code; later ones fail inside the stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from fastapi import Request

from modelrunner.api.common import collect
from modelrunner.api.openai.convert import chat_request, completion_request, prompts
from modelrunner.api.openai.schemas import ChatCompletionRequest, CompletionRequest, SamplingFields
from modelrunner.core.session import Session
from modelrunner.core.types import Chunk, InferenceRequest
from modelrunner.errors import InvalidName, InvalidRequest, ModelNotFound, NotFound
from modelrunner.names import Dialect

MAX_CHOICES = 128  # OpenAI's limit on ``n``
Opener = Callable[[InferenceRequest], Awaitable[Session]]


class Renderer(Protocol):
    def start(self) -> list[dict[str, Any]]: ...

    def feed(self, chunk: Chunk) -> list[dict[str, Any]]: ...


def choice_count(body: SamplingFields) -> int:
    n = 1 if body.n is None else body.n
    if not 1 <= n <= MAX_CHOICES:
        raise InvalidRequest(f"invalid n: {n} (must be between 1 and {MAX_CHOICES})")
    return n


def variants(req: InferenceRequest, n: int) -> list[InferenceRequest]:
    """``n`` independent generations of one request; a fixed seed moves by one per choice so
    that the choices differ yet the whole answer stays reproducible."""
    out = [req]
    for i in range(1, n):
        options = dict(req.options)
        if isinstance(options.get("seed"), int):
            options["seed"] += i
        out.append(dataclasses.replace(req, options=options))
    return out


def chat_requests(body: ChatCompletionRequest, dialect: Dialect) -> list[InferenceRequest]:
    """One request per choice (``n``)."""
    return variants(chat_request(body, dialect), choice_count(body))


def completion_requests(body: CompletionRequest, dialect: Dialect) -> list[InferenceRequest]:
    """``n`` requests per prompt, prompt by prompt: choice ``i * n + j`` is prompt i's j-th."""
    n = choice_count(body)
    return [req for p in prompts(body) for req in variants(completion_request(body, dialect, p), n)]


class Choices:
    def __init__(self, request: Request, reqs: list[InferenceRequest], opener: Opener) -> None:
        self.request = request
        self.reqs = reqs
        self.opener = opener

    async def open(self, i: int) -> Session:
        req = self.reqs[i]
        try:
            return await self.opener(req)
        except (ModelNotFound, InvalidName):
            raise NotFound(f'model "{req.model}" not found') from None

    async def collect(self, first: Session) -> list[Chunk]:
        finals = [await collect(self.request, first)]
        for i in range(1, len(self.reqs)):
            finals.append(await collect(self.request, await self.open(i)))
        return finals

    async def stream(
        self,
        first: Session,
        renderer: Callable[[int], Renderer],
        tail: Callable[[list[Chunk]], Any],
    ) -> AsyncIterator[dict[str, Any]]:
        """Each choice's chunks in turn; ``tail`` renders the merged usage (or nothing)."""
        finals: list[Chunk] = []
        session: Session | None = first
        for i in range(len(self.reqs)):
            session = session or await self.open(i)
            render = renderer(i)
            for item in render.start():
                yield item
            async for chunk in session.chunks():
                if chunk.done:
                    finals.append(chunk)
                for item in render.feed(chunk):
                    yield item
            session = None
        last = tail(finals)
        if last is not None:
            yield last
