"""Tokenizing long texts off the event loop. llama.cpp's SentencePiece tokenizer is superlinear on
long runs without spaces (1 MB took 110 s with the tiny model, 100 kB 1.7 s); on the loop that
stalled every other request and probe of the runner. Short texts stay inline: they take
microseconds, and a thread hop would add to every first token."""

from __future__ import annotations

import anyio

from modelrunner.engine.base import EngineModel

INLINE_CHARS = 8192


async def tokenize(model: EngineModel, text: str, *, add_bos: bool) -> list[int]:
    if len(text) <= INLINE_CHARS:
        return model.tokenize(text, add_bos=add_bos)
    return await anyio.to_thread.run_sync(lambda: model.tokenize(text, add_bos=add_bos))
