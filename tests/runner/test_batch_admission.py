"""The batched engine's fast paths against real llama.cpp (tiny model): requests arriving together
start in one step, greedy sampling by argmax picks what llama.cpp's sampler picks, and the
engine runs llama.cpp on a thread pool of its own."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelrunner.engine import batch_native as nat
from modelrunner.engine import batch_sampling as samplers
from modelrunner.engine.base import LoadOptions, Sampling
from modelrunner.engine.batch_config import BatchTuning
from modelrunner.engine.batched import BatchedLlamaEngine, BatchedLlamaModel
from modelrunner.engine.threadpool import uses_openmp

PROMPTS = ["the quick brown fox", "hello world", "a b c d e f g", "1 2 3 4 5 6 7 8 9"]


@pytest.fixture
def model(tiny_gguf: Path) -> Iterator[BatchedLlamaModel]:
    options = LoadOptions(model_path=tiny_gguf, num_ctx=256, parallel=4)
    loaded = BatchedLlamaEngine(BatchTuning(flash_attn=False)).load(options)
    yield loaded
    loaded.close()


async def tokens_of(
    model: BatchedLlamaModel, prompt: str, sampling: Sampling, *, ignore_eos: bool = False
) -> list[int]:
    gen = model.generate(model.tokenize(prompt), sampling, ignore_eos=ignore_eos)
    return [out.token async for out in gen]


async def test_requests_arriving_together_start_in_one_step(model: BatchedLlamaModel) -> None:
    one = Sampling(temperature=0, num_predict=1)
    # Created first, iterated a moment later (as the HTTP routes do): the engine waits for all.
    gens = [model.generate(model.tokenize(p), one) for p in PROMPTS]
    before = model.steps

    async def consume(i: int) -> int:
        await asyncio.sleep(0.002 * i)
        return len([out async for out in gens[i]])

    assert await asyncio.gather(*(consume(i) for i in range(len(gens)))) == [1] * len(gens)
    assert model.steps - before == 1  # four prompts evaluated and sampled in one decode

    # Iterated as soon as created, one after another: still one step.
    before = model.steps
    await asyncio.gather(*(tokens_of(model, p, one) for p in PROMPTS))
    assert model.steps - before == 1


async def test_dropped_generations_do_not_hold_up_the_next_request(
    model: BatchedLlamaModel,
) -> None:
    greedy = Sampling(temperature=0, num_predict=4)
    never = model.generate(model.tokenize("never iterated"), greedy)
    cancelled = model.generate(model.tokenize("cancelled first"), greedy)
    cancelled.cancel()
    assert [out async for out in cancelled] == []
    del never
    gc.collect()
    assert model._coming == 0
    started = time.perf_counter()
    assert len(await tokens_of(model, PROMPTS[0], greedy)) == 4
    assert time.perf_counter() - started < 5


async def test_argmax_matches_llama_cpp_greedy(
    model: BatchedLlamaModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    greedy = Sampling(temperature=0, num_predict=16)
    fast = [await tokens_of(model, p, greedy) for p in PROMPTS]
    banned = [await tokens_of(model, p, greedy, ignore_eos=True) for p in PROMPTS]
    original = samplers.RequestSampler._sample

    def through_llama_cpp(
        self: samplers.RequestSampler, native: nat.NativeModel, index: int
    ) -> int:
        self._argmax = False
        return original(self, native, index)

    monkeypatch.setattr(samplers.RequestSampler, "_sample", through_llama_cpp)
    assert fast == [await tokens_of(model, p, greedy) for p in PROMPTS]
    assert banned == [await tokens_of(model, p, greedy, ignore_eos=True) for p in PROMPTS]
    assert len({tuple(t) for t in fast}) == len(
        PROMPTS
    )  # distinct answers: equality means something
    eog = set(model.native.eog_tokens())
    assert not eog & {t for tokens in banned for t in tokens}


def test_the_engine_attaches_its_own_thread_pool(model: BatchedLlamaModel) -> None:
    assert model.native.pool.attached
    assert isinstance(uses_openmp(), bool)
