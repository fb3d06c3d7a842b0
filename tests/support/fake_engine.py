"""A scripted engine for tests of the layers above the engine (tool calls, thinking, streams).

It implements the real engine interface, replies with a fixed text cut into small pieces, and
records the prompts it was given, so a test can check both what reached the engine and what the
API made of the reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from modelrunner.engine.base import Embeddings, GenerationStats, LoadOptions, Sampling, TokenOut


@dataclass
class FakeEngine:
    reply: str = "Hello there."
    piece: int = 3
    prompts: list[str] = field(default_factory=list)

    def load(self, options: LoadOptions) -> FakeModel:
        return FakeModel(self, options)


class FakeModel:
    def __init__(self, engine: FakeEngine, options: LoadOptions) -> None:
        self.engine = engine
        self.options = options

    @property
    def context_length(self) -> int:
        return self.options.num_ctx

    @property
    def size_bytes(self) -> int:
        return 1

    @property
    def slots(self) -> int:
        return max(1, self.options.parallel)

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        self.engine.prompts.append(text)
        return [ord(c) for c in text]

    def detokenize(self, tokens: list[int]) -> str:
        return "".join(chr(t) for t in tokens)

    def token_text(self, token: int) -> str:
        return chr(token)

    def generate(self, prompt: list[int], sampling: Sampling) -> FakeGeneration:
        return FakeGeneration(self.engine.reply, self.engine.piece, len(prompt), sampling)

    async def embed(self, texts: list[str], *, truncate: bool = True) -> Embeddings:
        return Embeddings([[float(len(t)), 1.0] for t in texts], sum(len(t) for t in texts))

    def close(self) -> None:
        return None


class FakeGeneration:
    def __init__(self, reply: str, piece: int, prompt_tokens: int, sampling: Sampling) -> None:
        self.reply, self.piece, self.sampling = reply, piece, sampling
        self.stats = GenerationStats(prompt_tokens=prompt_tokens)
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    async def __aiter__(self) -> AsyncIterator[TokenOut]:
        pieces = [self.reply[i : i + self.piece] for i in range(0, len(self.reply), self.piece)]
        limit = self.sampling.num_predict if self.sampling.num_predict >= 0 else len(pieces)
        for index, text in enumerate(pieces[:limit]):
            if self.cancelled:
                self.stats.done_reason = "cancel"
                return
            self.stats.eval_count += 1
            yield TokenOut(token=index, text=text)
        self.stats.done_reason = "length" if limit < len(pieces) else "stop"
