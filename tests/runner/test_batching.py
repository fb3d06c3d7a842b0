"""The batched engine against real llama.cpp: concurrent streams, cancellation, grammar, prompt
cache, embeddings.

Exact-output comparisons use the tiny F32 model: its kernels give the same logits whatever the
batch shape (to ~1e-7). Gemma's quantized kernels do not: the same prompt evaluated whole or token
by token already differs by about one logit, with or without batching, and so does a row's place
in a batch; greedy outputs may then part at a near tie. With Gemma we check that every stream
completes and continues its own sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import gguf
import pytest

from modelrunner.engine.base import LoadOptions, Sampling
from modelrunner.engine.batched import (
    BatchedGeneration,
    BatchedLlamaEngine,
    BatchedLlamaModel,
    BatchTuning,
)
from modelrunner.errors import InvalidRequest
from tests.support.tiny_model import write_tiny_gguf

GREEDY = Sampling(temperature=0, num_predict=24)
# For exact comparisons: llama.cpp's CPU flash attention rounds differently with the micro-batch
# size (a prompt evaluated as 355+15 tokens vs 370 differs by ~0.007 in the tiny model's logits,
# more than some top-2 gaps of its random weights); without it the tiny model is batch-invariant.
EXACT = BatchTuning(flash_attn=False)

PROMPTS = [
    "the quick brown fox",
    "hello world",
    "a b c d e f g",
    "Once upon a time there was",
    "1 2 3 4 5 6 7 8 9",
    "zzz",
]

# A small bounded JSON grammar: any model, even random weights, must finish it in a few dozen tokens.
JSON_GRAMMAR = r"""
root   ::= "{" ws "\"name\"" ws ":" ws string ws "," ws "\"age\"" ws ":" ws number ws "}"
string ::= "\"" [a-z]{1,12} "\""
number ::= [1-9] [0-9]{0,2}
ws     ::= " "?
"""


@pytest.fixture
def load(tiny_gguf: Path) -> Iterator[object]:
    models: list[BatchedLlamaModel] = []

    def loader(
        path: Path = tiny_gguf, tuning: BatchTuning | None = None, **kw: object
    ) -> BatchedLlamaModel:
        options = LoadOptions(model_path=path, **kw)  # type: ignore[arg-type]
        model = BatchedLlamaEngine(tuning).load(options)
        models.append(model)
        return model

    yield loader
    for model in models:
        model.close()


async def run(
    model: BatchedLlamaModel, prompt: str, sampling: Sampling = GREEDY
) -> tuple[list[int], str, BatchedGeneration]:
    gen = model.generate(model.tokenize(prompt), sampling)
    tokens: list[int] = []
    text = ""
    async for out in gen:
        tokens.append(out.token)
        text += out.text
    return tokens, text, gen


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(30_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


async def test_concurrent_streams_match_single_runs(load) -> None:  # type: ignore[no-untyped-def]
    model = load(num_ctx=256, parallel=4, tuning=EXACT)
    alone = [await run(model, p) for p in PROMPTS]
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, model.active_sequences)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    together = await asyncio.gather(*(run(model, p) for p in PROMPTS))  # 6 requests, 4 slots
    watcher.cancel()
    assert peak == 4
    for prompt, (tokens, text, _), (b_tokens, b_text, gen) in zip(
        PROMPTS, alone, together, strict=True
    ):
        assert b_tokens == tokens, prompt
        assert b_text == text
        assert gen.stats.done_reason in ("stop", "length")
        assert gen.stats.eval_count == len(tokens)
        assert gen.stats.prompt_tokens == len(model.tokenize(prompt))
        assert gen.stats.eval_ns > 0 and gen.stats.prompt_eval_ns > 0
    # Different prompts really give different answers (so equality above means something).
    assert len({tuple(t) for t, _, _ in alone}) == len(PROMPTS)
    assert model.active_sequences == 0 and model.waiting == 0


async def test_busy_slots_stay_together(load) -> None:  # type: ignore[no-untyped-def]
    # llama.cpp's attention spans every KV stream from the lowest busy sequence to the highest.
    model = load(num_ctx=256, parallel=8)
    spans: list[int] = []

    async def watch() -> None:
        while True:
            busy = model.busy_sequences()
            if len(busy) == 3:
                spans.append(max(busy) - min(busy))
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    for round in range(4):  # least-recently-used choice alone would move across all 8 slots
        await asyncio.gather(*(run(model, f"{round} {p}") for p in PROMPTS[:3]))
    watcher.cancel()
    assert spans and max(spans) == 2


async def test_cancel_mid_stream_frees_the_slot(load) -> None:  # type: ignore[no-untyped-def]
    model = load(num_ctx=4096, parallel=1)
    endless = Sampling(temperature=0.8, seed=1, num_predict=4000)
    first = model.generate(model.tokenize("the quick brown fox"), endless)
    queued: asyncio.Task[tuple[list[int], str, BatchedGeneration]] | None = None
    received = 0
    async with contextlib.aclosing(first.__aiter__()) as stream:
        async for _ in stream:
            received += 1
            if received == 3:
                queued = asyncio.create_task(run(model, "hello world"))
                await until(lambda: model.waiting > 0)
                assert model.waiting == 1  # the only slot is busy
                break  # abandon the stream: aclosing runs the iterator's finally -> cancel
    assert queued is not None
    tokens, _, gen = await asyncio.wait_for(queued, 30)
    assert first.stats.done_reason == "cancel"
    assert first.stats.eval_count < 1000  # stopped long before num_predict
    assert gen.stats.done_reason in ("stop", "length") and tokens
    assert model.active_sequences == 0

    # cancel() from outside, while the other request waits in the queue.
    second = model.generate(model.tokenize("a b c"), endless)
    waiting = model.generate(model.tokenize("zzz"), GREEDY)
    got: list[int] = []
    started = asyncio.Event()

    async def consume_second() -> None:
        async for out in second:
            got.append(out.token)
            started.set()
            if len(got) == 2:
                second.cancel()

    async def consume_waiting() -> list[int]:
        await started.wait()
        return [out.token async for out in waiting]

    _, waited = await asyncio.wait_for(asyncio.gather(consume_second(), consume_waiting()), 30)
    assert second.stats.done_reason == "cancel" and second.stats.eval_count < 1000
    assert waited == (await run(model, "zzz"))[0]


async def test_grammar_and_free_requests_share_a_batch(load) -> None:  # type: ignore[no-untyped-def]
    model = load(num_ctx=256, parallel=4, tuning=EXACT)
    constrained = Sampling(temperature=0.8, seed=7, num_predict=200, grammar=JSON_GRAMMAR)
    free_alone = [await run(model, p) for p in PROMPTS[:2]]
    results = await asyncio.gather(
        run(model, PROMPTS[0]),
        run(model, "json please", constrained),
        run(model, PROMPTS[1]),
        run(model, "another json", Sampling(temperature=0, num_predict=200, grammar=JSON_GRAMMAR)),
    )
    assert results[0][0] == free_alone[0][0]
    assert results[2][0] == free_alone[1][0]
    for _, text, gen in (results[1], results[3]):
        value = json.loads(text)
        assert set(value) == {"name", "age"} and isinstance(value["age"], int)
        assert gen.stats.done_reason == "stop"
    with pytest.raises(InvalidRequest):
        model.generate(model.tokenize("x"), Sampling(grammar="root ::= nonsense-rule"))


async def test_prompt_cache_reuses_a_shared_prefix(load, tiny_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    model = load(num_ctx=2048, parallel=2, tuning=EXACT)
    prefix = " ".join(f"word{i}" for i in range(200))  # ~1500 byte-level tokens
    _, _, cold = await run(model, prefix + " first question")
    await run(model, "something unrelated")  # takes the other (least recently used) slot
    warm_runs = [await run(model, prefix + f" question {i}") for i in range(2)]
    n_prefix = len(model.tokenize(prefix))
    assert cold.stats.cached_tokens <= 1
    for _, _, warm in warm_runs:
        assert warm.stats.cached_tokens >= n_prefix
        assert warm.stats.prompt_tokens - warm.stats.cached_tokens < 20
    assert min(w.stats.prompt_eval_ns for _, _, w in warm_runs) < cold.stats.prompt_eval_ns / 2
    # Reusing the KV gives the same answer as computing the prompt from scratch.
    fresh = load(tiny_gguf, num_ctx=2048, parallel=2, tuning=EXACT)
    assert (await run(fresh, prefix + " question 1"))[0] == warm_runs[1][0]
    assert model.prompt_tokens_cached >= 2 * n_prefix


def test_penalties_match_llama_cpp() -> None:
    """Penalties on the logits row give exactly llama.cpp's penalties sampler's logits."""
    import ctypes

    import llama_cpp
    import numpy as np

    from modelrunner.engine.batch_sampling import _TOKEN_DATA, Penalties

    rng = np.random.default_rng(0)
    n_vocab, last_n = 1000, 64
    ours = Penalties(last_n, repeat=1.3, frequency=0.2, presence=0.4)
    theirs = llama_cpp.llama_sampler_init_penalties(n_vocab, last_n, 1.3, 0.2, 0.4)
    try:
        for token in rng.integers(0, 80, size=150):  # repeats, and more than last_n of them
            ours.accept(int(token))
            llama_cpp.llama_sampler_accept(theirs, int(token))
        logits = rng.normal(0, 3, n_vocab).astype(np.float32)
        cand = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        cand["id"] = np.arange(n_vocab)
        cand["logit"] = logits
        arr = llama_cpp.llama_token_data_array(
            data=ctypes.cast(cand.ctypes.data, llama_cpp.llama_token_data_p),
            size=n_vocab, selected=-1, sorted=False,
        )  # fmt: skip
        llama_cpp.llama_sampler_apply(theirs, ctypes.byref(arr))
    finally:
        llama_cpp.llama_sampler_free(theirs)
    row = logits.copy()
    saved = ours.apply(row)
    assert not np.array_equal(row, logits)  # something was penalized
    assert np.array_equal(row, cand["logit"])
    Penalties.restore(row, saved)
    assert np.array_equal(row, logits)


async def test_logprobs(load) -> None:  # type: ignore[no-untyped-def]
    model = load(num_ctx=256, parallel=2)
    sampling = Sampling(temperature=0, num_predict=5, logprobs=True, top_logprobs=3)
    gen = model.generate(model.tokenize("hello"), sampling)
    outs = [out async for out in gen]
    assert outs
    for out in outs:
        assert out.logprob is not None and out.logprob <= 0
        assert out.top_logprobs is not None and len(out.top_logprobs) == 3
        values = [lp for _, lp in out.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert out.top_logprobs[0][1] == pytest.approx(out.logprob)  # greedy picks the best
        assert out.top_logprobs[0][0] == model.token_text(out.token)


async def test_embeddings_in_one_batch(
    tmp_path: Path, load, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # write_tiny_gguf(embedding=True) passes a bare int where this gguf version wants the enum.
    add_pooling_type = gguf.GGUFWriter.add_pooling_type
    monkeypatch.setattr(
        gguf.GGUFWriter,
        "add_pooling_type",
        lambda self, value: add_pooling_type(self, gguf.PoolingType(int(value))),
    )
    path = write_tiny_gguf(tmp_path / "embed.gguf", embedding=True)
    model = load(path, num_ctx=128, parallel=1, embedding=True)  # as the core loads it
    texts = ["hello world", "the", "a much longer sentence of the world", "x", "ing of ed"]
    result = await model.embed(texts)
    assert model.embed_decodes == 1  # the whole list in one llama_decode
    assert len(result.vectors) == len(texts)
    assert result.prompt_tokens == sum(len(model.tokenize(t)) for t in texts)
    for text, vector in zip(texts, result.vectors, strict=True):
        single = (await model.embed([text])).vectors[0]
        assert vector == pytest.approx(single, abs=2e-3)  # F16 KV: batch shape changes rounding
    norms = [sum(x * x for x in v) ** 0.5 for v in result.vectors]
    assert any(abs(n - 1) > 1e-3 for n in norms)  # raw vectors, not normalized
    long_text = "hello " * 200
    with pytest.raises(InvalidRequest, match="the input length exceeds the context length"):
        await model.embed([long_text], truncate=False)
    truncated = await model.embed([long_text])
    assert truncated.prompt_tokens == model.context_length


async def test_embeddings_from_a_generation_model(load) -> None:  # type: ignore[no-untyped-def]
    # No pooling head: the mean of the token embeddings, on idle slots, between decode steps.
    model = load(num_ctx=256, parallel=2, tuning=EXACT)
    running = asyncio.create_task(
        run(model, "hello world", Sampling(temperature=0, num_predict=50))
    )
    result = await model.embed(["hello world", "the"])
    assert [len(v) for v in result.vectors] == [64, 64]
    assert result.vectors[0] == pytest.approx(
        (await model.embed(["hello world"])).vectors[0], abs=1e-4
    )
    tokens, _, _ = await running
    assert tokens == (await run(model, "hello world", Sampling(temperature=0, num_predict=50)))[0]


async def test_bad_requests(load) -> None:  # type: ignore[no-untyped-def]
    model = load(num_ctx=64, parallel=1)
    with pytest.raises(InvalidRequest):
        model.generate(model.tokenize("x " * 400), GREEDY)
    gen = model.generate(model.tokenize("x"), Sampling(num_predict=0))
    assert [out async for out in gen] == []
    assert gen.stats.done_reason == "length"
    never = model.generate(model.tokenize("x"), GREEDY)
    never.cancel()
    assert [out async for out in never] == []
    assert never.stats.done_reason == "cancel"


@pytest.mark.slow
async def test_gemma_concurrent_streams(gemma_gguf: Path) -> None:
    """Four Gemma streams in one batch each continue their own sequence."""
    model = BatchedLlamaEngine().load(LoadOptions(model_path=gemma_gguf, num_ctx=512, parallel=4))
    try:
        sampling = Sampling(temperature=0, num_predict=8)
        cases = {
            "1, 2, 3, 4, 5,": "6",
            "Monday, Tuesday, Wednesday,": "Thursday",
            "A, B, C, D, E,": "F",
            "January, February, March,": "April",
        }
        results = await asyncio.gather(*(run(model, p, sampling) for p in cases))
        for (prompt, expected), (tokens, text, gen) in zip(cases.items(), results, strict=True):
            assert tokens and gen.stats.done_reason in ("stop", "length")
            assert expected in text, (prompt, text)
    finally:
        model.close()
