"""Per-key limits (requests and tokens per minute, requests in flight) and per-key usage in
/metrics. Token counts come from the core's own token counters, tapped (``TokenTap``) for the
key of the request being served (a context variable the middleware sets)."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from modelrunner.security.keys import KeyRing, Quota
from modelrunner.settings import Settings

WINDOW = 60.0
current_key: ContextVar[str | None] = ContextVar("modelrunner_current_key", default=None)


class KeyLimits:
    def __init__(
        self, settings: Settings, registry: CollectorRegistry, keys: KeyRing | None = None
    ) -> None:
        self.rpm = settings.key_requests_per_minute
        self.tpm = settings.key_tokens_per_minute
        self.concurrency = settings.key_concurrency
        self.keys = keys  # per-key limits from the keys file override the settings above
        self._requests: dict[str, deque[float]] = defaultdict(deque)
        self._tokens: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._active: dict[str, int] = defaultdict(int)
        self.requests = Counter(
            "modelrunner_key_requests", "Requests by API key id and outcome (ok, rate_limited).",
            ["key", "outcome"], registry=registry,
        )  # fmt: skip
        self.tokens = Counter(
            "modelrunner_key_tokens", "Tokens by API key id and kind (prompt, generated).",
            ["key", "kind"], registry=registry,
        )  # fmt: skip
        self.active = Gauge(
            "modelrunner_key_active_requests", "Requests in flight by API key id.",
            ["key"], registry=registry,
        )  # fmt: skip

    def admit(self, key: str, now: float | None = None) -> tuple[str, int] | None:
        """None when ``key`` may start a request now (and it is counted), else the reason and
        the seconds to wait (Retry-After)."""
        now = time.monotonic() if now is None else now
        rpm, tpm, concurrency = self._limits(key)
        stamps, spent = self._requests[key], self._tokens[key]
        while stamps and stamps[0] <= now - WINDOW:
            stamps.popleft()
        while spent and spent[0][0] <= now - WINDOW:
            spent.popleft()
        refusal: tuple[str, int] | None = None
        if concurrency and self._active[key] >= concurrency:
            refusal = (f"too many concurrent requests (limit {concurrency})", 1)
        elif rpm and len(stamps) >= rpm:
            refusal = (f"rate limit of {rpm} requests per minute", _wait(stamps[0], now))
        elif tpm and sum(n for _, n in spent) >= tpm:
            refusal = (f"rate limit of {tpm} tokens per minute", _wait(spent[0][0], now))
        if refusal is not None:
            self.requests.labels(key, "rate_limited").inc()
            return refusal
        stamps.append(now)
        self._active[key] += 1
        self.active.labels(key).set(self._active[key])
        self.requests.labels(key, "ok").inc()
        return None

    def _limits(self, key: str) -> tuple[int, int, int]:
        quota = self.keys.quota(key) if self.keys is not None else None
        quota = quota or Quota()
        return (
            self.rpm if quota.requests_per_minute is None else quota.requests_per_minute,
            self.tpm if quota.tokens_per_minute is None else quota.tokens_per_minute,
            self.concurrency if quota.concurrency is None else quota.concurrency,
        )

    def release(self, key: str) -> None:
        self._active[key] -= 1
        self.active.labels(key).set(self._active[key])

    def add_tokens(self, kind: str, count: int) -> None:
        key = current_key.get()
        if key is not None:
            self.charge(key, kind, count)

    def charge(self, key: str, kind: str, count: int) -> None:
        """``count`` tokens of ``kind`` spent by ``key`` now (the gateway reads them from the
        runner's answers; the runner taps its own counters)."""
        if count <= 0:
            return
        self.tokens.labels(key, kind).inc(count)
        if self._limits(key)[1]:
            self._tokens[key].append((time.monotonic(), count))


def _wait(oldest: float, now: float) -> int:
    return max(1, math.ceil(oldest + WINDOW - now))


class TokenTap:
    """Stands in for a core token Counter: counts as before, and for the current key too."""

    def __init__(self, counter: Counter, limits: KeyLimits, kind: str) -> None:
        self._counter, self._limits, self._kind = counter, limits, kind

    def labels(self, *values: str) -> _TapChild:
        return _TapChild(self._counter.labels(*values), self._limits, self._kind)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._counter, name)


class _TapChild:
    def __init__(self, child: Counter, limits: KeyLimits, kind: str) -> None:
        self._child, self._limits, self._kind = child, limits, kind

    def inc(self, amount: float = 1) -> None:
        self._child.inc(amount)
        self._limits.add_tokens(self._kind, int(amount))
