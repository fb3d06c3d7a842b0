"""An instance SIGKILLed while it serves: every request that had not started streaming is retried
on the other instance and succeeds; the dead one is ejected, later requests avoid it, and once it
is back it is probed, readmitted and used again."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.gateway.procs import Proc, metric, start_gateway, start_runner, wait_until


@pytest.fixture
def twins(tmp_path: Path, ggufs: dict[str, Path]) -> Iterator[list[Proc]]:
    runners: list[Proc] = []
    try:
        for name in ("a", "b"):
            runners.append(start_runner(tmp_path, name, {"shared": ggufs["shared"]}))
        yield runners
    finally:
        for runner in runners:
            runner.stop()


def test_a_killed_instance_costs_no_request_that_had_not_started_streaming(
    tmp_path: Path, twins: list[Proc]
) -> None:
    a, b = twins
    gateway = start_gateway(tmp_path, "--backend", a.url, "--backend", b.url, "--policy", "least")
    try:
        body = {"model": "shared", "prompt": "the", "raw": True, "stream": False,
                "options": {"num_predict": 600, "temperature": 0}}  # fmt: skip

        def ask(_: int) -> tuple[int, str, dict[str, object]]:
            with httpx.Client(base_url=gateway.url, timeout=120) as client:
                response = client.post("/api/generate", json=body)
                return (
                    response.status_code,
                    response.headers.get("x-model-runner-instance", ""),
                    response.json(),
                )

        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(ask, i) for i in range(6)]
            # Two requests forwarded to A and not answered (a non-streamed answer is its first byte).
            wait_until(
                lambda: (
                    metric(gateway.url, "modelrunner_gateway_requests_in_flight", instance=a.url)
                    >= 2
                ),
                timeout=30,
            )
            a.kill()
            results = [f.result(timeout=120) for f in futures]
        assert [status for status, _, _ in results] == [200] * 6, results
        assert {where for _, where, _ in results} == {b.url}  # answered after the retry
        assert all(answer["done"] and answer["eval_count"] == 600 for _, _, answer in results)
        assert metric(gateway.url, "modelrunner_gateway_retries_total") >= 2
        assert metric(gateway.url, "modelrunner_gateway_errors_total", instance=a.url) >= 2
        # The dead instance is out of the rotation: the next requests go straight to B.
        with httpx.Client(base_url=gateway.url, timeout=60) as client:
            short = body | {"options": {"num_predict": 3}}
            for _ in range(3):
                response = client.post("/api/generate", json=short)
                assert response.status_code == 200
                assert response.headers["x-model-runner-instance"] == b.url
            tags = client.get("/api/tags").json()["models"]
            assert [m["name"] for m in tags] == ["shared:latest"]
            # Back on the same address (a restarted pod): probed, readmitted, used again.
            a.start()
            seen: set[str] = set()
            wait_until(lambda: seen.add(client.post("/api/generate", json=short).headers[
                "x-model-runner-instance"]) or a.url in seen, timeout=30, step=0.2)  # fmt: skip
    finally:
        gateway.stop()
