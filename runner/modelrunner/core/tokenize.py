"""Tokenize and detokenize with a model's own vocabulary (llama-server's ``/tokenize`` and
``/detokenize``). The vocabulary lives in the loaded model, so these hold a model as a request
does: the runner already loaded for the model (whatever its mode and options) when there is one,
otherwise a new one in the mode the model serves (completion, or embedding for embedding models).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from modelrunner.core import offload
from modelrunner.core.inference import InferenceService, vocab_size
from modelrunner.engine.base import EngineModel, LoadOptions
from modelrunner.errors import InvalidRequest
from modelrunner.names import Dialect


@dataclass(frozen=True)
class Piece:
    id: int
    piece: bytes


@contextlib.asynccontextmanager
async def loaded(svc: InferenceService, ref: str, dialect: Dialect) -> AsyncIterator[EngineModel]:
    record = await svc.record(ref, dialect)
    options: LoadOptions | None = None
    for (digest, _), runner in list(svc.scheduler.runners.items()):
        if digest == record.digest:
            options = runner.options
            break
    if options is None:
        embedding = "completion" not in record.capabilities()
        options = svc.load_options(record, {}, embedding)
    details: dict[str, object] = {"record": record}
    async with svc.scheduler.use(record.digest, record.display(), options, None, details) as lease:
        yield lease.runner.model


def piece_bytes(model: EngineModel, token: int) -> bytes:
    """The exact bytes of one token, special tokens spelled out (llama-server's pieces)."""
    native: Any = getattr(model, "native", None)
    if native is not None:
        return bytes(native.piece(token, special=True))
    llm: Any = getattr(model, "llm", None)
    if llm is not None:
        return bytes(llm.detokenize([token], special=True))
    return model.token_text(token).encode()


def check_tokens(model: EngineModel, tokens: list[int]) -> None:
    size = vocab_size(model)
    for token in tokens:
        if token < 0 or (size is not None and token >= size):
            raise InvalidRequest(f"invalid token id {token} (the vocabulary has {size} tokens)")


async def tokenize(
    svc: InferenceService, ref: str, dialect: Dialect, text: str, add_special: bool
) -> tuple[list[int], list[Piece]]:
    async with loaded(svc, ref, dialect) as model:
        tokens = await offload.tokenize(model, text, add_bos=add_special)
        return tokens, [Piece(t, piece_bytes(model, t)) for t in tokens]


async def detokenize(svc: InferenceService, ref: str, dialect: Dialect, tokens: list[int]) -> str:
    """The pieces joined, special tokens included, as llama-server's ``tokens_to_str``."""
    async with loaded(svc, ref, dialect) as model:
        check_tokens(model, tokens)
        data = b"".join(piece_bytes(model, t) for t in tokens)
    return data.decode("utf-8", errors="replace")
