"""The engine interface the scheduler and the core use; llama.cpp implements it.

A loaded model (``EngineModel``) turns prompt tokens into a stream of generated tokens. The
interface is async on the consumer side so that an engine may serve one request at a time (a worker
thread per generation) or many at once (a batched decode loop), without the core knowing which.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class LoadOptions:
    """What a model is loaded with; a request that needs different values triggers a reload."""

    model_path: Path
    num_ctx: int = 4096
    num_batch: int = 512
    num_gpu: int = -1
    num_thread: int = 0
    use_mmap: bool = True
    embedding: bool = False
    parallel: int = 1  # sequences decoded together (slots)
    projector: Path | None = None
    # The KV cache these settings make llama.cpp allocate, estimated from the GGUF's metadata
    # (0: unknown); counted in the memory budget and /api/ps. Derived, so not compared.
    cache_bytes: int = field(default=0, compare=False)


@dataclass
class Sampling:
    """Per-request sampling settings (Ollama option names, already merged and typed)."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1  # -1: random
    num_predict: int = -1  # -1: until end of generation or context full
    grammar: str | None = None  # GBNF text
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass
class TokenOut:
    """One generated token. ``text`` is what it adds to the output (may be empty while a UTF-8
    sequence is incomplete); log-probabilities are only filled when requested."""

    token: int
    text: str
    logprob: float | None = None
    top_logprobs: list[tuple[str, float]] | None = None


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV was reused from a previous request
    prompt_eval_ns: int = 0
    eval_count: int = 0
    eval_ns: int = 0
    done_reason: str = "stop"  # stop | length | cancel


class Generation(Protocol):
    """A running generation: iterate it for tokens; ``cancel`` stops it within a token or two."""

    stats: GenerationStats

    def __aiter__(self) -> AsyncIterator[TokenOut]: ...

    def cancel(self) -> None: ...


@dataclass
class Embeddings:
    vectors: list[list[float]] = field(default_factory=list)
    prompt_tokens: int = 0


class EngineModel(Protocol):
    """A loaded model. ``tokenize`` and ``detokenize`` are cheap and thread-safe enough to call
    from the event loop; ``generate`` and ``embed`` do the heavy work off the loop."""

    options: LoadOptions

    @property
    def context_length(self) -> int: ...

    @property
    def size_bytes(self) -> int: ...

    @property
    def slots(self) -> int:
        """Requests the model serves at once (the scheduler admits no more)."""
        ...

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]: ...

    def detokenize(self, tokens: list[int]) -> str: ...

    def token_text(self, token: int) -> str: ...

    def generate(self, prompt: list[int], sampling: Sampling) -> Generation: ...

    async def embed(self, texts: list[str], *, truncate: bool = True) -> Embeddings: ...

    def close(self) -> None: ...


class Engine(Protocol):
    """Loads models. The scheduler calls ``load`` off the event loop (it can take seconds)."""

    def load(self, options: LoadOptions) -> EngineModel: ...
