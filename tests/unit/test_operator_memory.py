"""The operator's memory keeper: a pass after the heap moved, none at rest."""

from __future__ import annotations

import asyncio
import platform

import pytest

from modeloperator.memory import SETTLE_CHECKS, MemoryKeeper, _malloc_trim, resident_bytes


def test_a_pass_is_due_only_after_the_heap_moved() -> None:
    keeper = MemoryKeeper()
    assert not keeper.due()
    burst = [[i] for i in range(500_000)]  # far more blocks than 5% of an interpreter's
    assert keeper.due()
    keeper.release()
    assert keeper.passes == 1
    assert not keeper.due()
    del burst
    assert keeper.due()  # shrinking counts too: that is when pages can go back


def test_one_last_pass_follows_once_quiet_then_none_at_rest() -> None:
    keeper = MemoryKeeper()
    assert not keeper.check()  # at rest: nothing
    burst = [[i] for i in range(500_000)]
    assert keeper.check() and keeper.passes == 1
    del burst  # what a burst's stragglers free after it
    assert keeper.check()  # the heap moved again: a pass, and the count starts over
    quiet = [keeper.check() for _ in range(SETTLE_CHECKS + 3)]
    assert quiet == [False] * (SETTLE_CHECKS - 1) + [True] + [False] * 3
    assert keeper.passes == 3


@pytest.mark.skipif(resident_bytes() is None, reason="resident size is read from /proc")
def test_a_pass_is_due_when_the_process_grew_outside_python_objects() -> None:
    keeper = MemoryKeeper()
    assert not keeper.due()
    buffer = b"x" * (256 << 20)  # one block, but 256 MB of touched pages
    assert keeper.due()
    keeper.release()
    assert not keeper.due()
    del buffer


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trim_is_found() -> None:
    trim = _malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)


def test_the_loop_runs_a_pass_when_due() -> None:
    async def scenario() -> int:
        keeper = MemoryKeeper(check_seconds=0.01)
        task = asyncio.create_task(keeper.run())
        burst = [[i] for i in range(500_000)]
        for _ in range(200):
            await asyncio.sleep(0.01)
            if keeper.passes:
                break
        task.cancel()
        del burst
        return keeper.passes

    assert asyncio.run(scenario()) >= 1
