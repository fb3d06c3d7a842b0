"""The batched engine's per-step thread choice (pure bookkeeping, no llama.cpp)."""

from __future__ import annotations

from modelrunner.engine.batch_threads import ThreadTuner


def drive(tuner: ThreadTuner, cost: dict[int, float], steps: int, n_tokens: int = 1) -> list[int]:
    used = []
    for _ in range(steps):
        threads = tuner.choose(n_tokens)
        tuner.record(threads, n_tokens, cost[threads])
        used.append(threads)
    return used


def test_settles_on_the_faster_choice_and_keeps_checking() -> None:
    tuner = ThreadTuner([2, 1], warmup=3, explore_every=50)
    used = drive(tuner, {2: 0.02, 1: 0.03}, 200)
    assert used[:6] == [2, 2, 2, 1, 1, 1]  # each measured first
    assert used[6:].count(2) > 180 and 1 in used[6:]  # mostly the faster, re-tried now and then
    assert tuner.best(1) == 2


def test_follows_a_change_of_conditions() -> None:
    # Quiet machine: 2 threads win. Then a neighbour takes a core: 2 threads become 3x slower.
    tuner = ThreadTuner([2, 1], warmup=3, explore_every=20)
    drive(tuner, {2: 0.02, 1: 0.03}, 100)
    assert tuner.best(1) == 2
    used = drive(tuner, {2: 0.09, 1: 0.03}, 100)
    assert tuner.best(1) == 1
    assert used[-50:].count(1) >= 45


def test_buckets_by_batch_size() -> None:
    tuner = ThreadTuner([2, 1], warmup=2, explore_every=1000)
    drive(tuner, {2: 0.01, 1: 0.02}, 20, n_tokens=1)
    drive(tuner, {2: 0.30, 1: 0.20}, 20, n_tokens=512)
    assert tuner.best(1) == 2 and tuner.best(600) == 1  # 512-1023 tokens: one bucket
    assert tuner.summary() == {1: 2, 512: 1}


def test_a_single_choice_is_fixed() -> None:
    tuner = ThreadTuner([4, 4])
    assert drive(tuner, {4: 0.01}, 10) == [4] * 10
    assert ThreadTuner([2, 0]).choices == [2, 1]


def test_one_slow_step_does_not_flip_it() -> None:
    tuner = ThreadTuner([2, 1], warmup=3, explore_every=25)
    drive(tuner, {2: 0.02, 1: 0.03}, 30)
    tuner.record(2, 1, 0.5)  # a step that lost its core once
    assert tuner.best(1) == 2
    assert drive(tuner, {2: 0.02, 1: 0.03}, 20).count(2) >= 19
