"""Choose llama.cpp's CPU thread count per decode step from measured step times.

llama.cpp's CPU threads meet at a spinning barrier after every graph node. On cores of their own
more threads are faster (on 2 cores, 2 threads decode Gemma 3 270M ~1.6x faster than 1), but when
anything else wants a core (another process, the server's own event loop) a descheduled thread
stalls the others at every barrier, and the same 2 threads become 2-4x *slower* than 1. Which
case applies changes while the server runs, so the decode loop measures instead of guessing: for
each batch-size bucket it keeps the recent step times at each candidate thread count, uses the
one with the lowest median (one slow step does not flip it, a lasting change does within a few
steps), and now and then re-tries the others.
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Sequence


class ThreadTuner:
    """Pure bookkeeping (no llama.cpp calls): ``choose`` before a step, ``record`` after it."""

    def __init__(
        self,
        choices: Sequence[int],
        *,
        warmup: int = 3,
        explore_every: int = 25,
        window: int = 7,
    ) -> None:
        self.choices = sorted({max(1, c) for c in choices}, reverse=True)
        self.warmup = warmup
        self.explore_every = explore_every
        self.window = window
        self._times: dict[tuple[int, int], collections.deque[float]] = {}
        self._steps: dict[int, int] = {}

    @staticmethod
    def bucket(n_tokens: int) -> int:
        """1, 2-3, 4-7, 8-15, ... tokens: steps of similar cost."""
        return max(1, min(n_tokens, 4096)).bit_length()

    def choose(self, n_tokens: int) -> int:
        if len(self.choices) == 1:
            return self.choices[0]
        b = self.bucket(n_tokens)
        step = self._steps.get(b, 0) + 1
        self._steps[b] = step
        for c in self.choices:
            if len(self._times.get((c, b), ())) < self.warmup:
                return c
        best = self.best(n_tokens)
        if step % self.explore_every == 0:
            others = [c for c in self.choices if c != best]
            return others[(step // self.explore_every) % len(others)]
        return best

    def record(self, threads: int, n_tokens: int, seconds: float) -> None:
        key = (threads, self.bucket(n_tokens))
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = collections.deque(maxlen=self.window)
        times.append(seconds)

    def best(self, n_tokens: int) -> int:
        b = self.bucket(n_tokens)
        measured = [c for c in self.choices if self._times.get((c, b))]
        if not measured:
            return self.choices[0]
        return min(measured, key=lambda c: statistics.median(self._times[(c, b)]))

    def summary(self) -> dict[int, int]:
        """The thread count currently preferred per bucket (its smallest token count)."""
        buckets = sorted({b for _, b in self._times})
        return {1 << (b - 1): self.best(1 << (b - 1)) for b in buckets}
