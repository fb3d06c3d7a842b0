"""The runner and the gateway share their per-key limit fields and list parsing; each program
still reads them under its own environment prefix (README)."""

from __future__ import annotations

import pytest

from modelrunner.gateway.settings import GatewaySettings
from modelrunner.settings import Settings

LIMITS = ("KEY_REQUESTS_PER_MINUTE", "KEY_TOKENS_PER_MINUTE", "KEY_CONCURRENCY")


def test_each_program_reads_the_key_limits_under_its_own_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i, name in enumerate(LIMITS):
        monkeypatch.setenv(f"MODEL_RUNNER_{name}", str(10 + i))
        monkeypatch.setenv(f"MODELRUNNER_GATEWAY_{name}", str(20 + i))
    monkeypatch.setenv("MODEL_RUNNER_LISTEN", "127.0.0.1:1, 127.0.0.1:2")
    monkeypatch.setenv("MODELRUNNER_GATEWAY_BACKEND", "http://a:1,,http://b:2")
    runner, gateway = Settings(), GatewaySettings()
    limits = ("key_requests_per_minute", "key_tokens_per_minute", "key_concurrency")
    assert [getattr(runner, f) for f in limits] == [10, 11, 12]
    assert [getattr(gateway, f) for f in limits] == [20, 21, 22]
    assert runner.listen == ["127.0.0.1:1", "127.0.0.1:2"]
    assert gateway.backend == ["http://a:1", "http://b:2"]
    assert gateway.listen == ["127.0.0.1:11500"]


def test_a_negative_limit_is_refused_by_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_RUNNER_KEY_CONCURRENCY", "-1")
    monkeypatch.setenv("MODELRUNNER_GATEWAY_KEY_CONCURRENCY", "-1")
    for build in (Settings, GatewaySettings):
        with pytest.raises(ValueError, match="key_concurrency"):
            build()
