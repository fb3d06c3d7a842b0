"""Keys, limits and fair queueing at the gateway, and requests held for a declared model with no
ready instance: a 503 in the caller's dialect at the hold timeout, or released when the routing
file gains an instance."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.procs import Proc, metric, start_gateway, wait_until

HI = [{"role": "user", "content": "hi"}]


def write_routes(path: Path, table: dict[str, Any]) -> None:
    """Atomically, as a ConfigMap volume or the operator's writer would."""
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps(table))
    staged.replace(path)


def sleepy(instances: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": 1,
        "runners": [{"name": "sleepy", "namespace": "default", "models": ["alpha"], "replicas": 0}],
        "instances": instances,
    }


def test_keys_are_enforced_in_each_dialect(tmp_path: Path, pair: list[Proc]) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# id:key\nalice:key-alice\nbob:key-bob\n")
    gateway = start_gateway(
        tmp_path, "--backend", pair[0].url, "--api-keys-file", str(keys),
        env={"MODELRUNNER_GATEWAY_KEY_REQUESTS_PER_MINUTE": "3"},
    )  # fmt: skip
    try:
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            assert http.get("/api/version").status_code == 200  # public, as on the runner
            body = {
                "model": "alpha",
                "messages": HI,
                "stream": False,
                "options": {"num_predict": 2},
            }
            response = http.post("/api/chat", json=body)
            assert response.status_code == 401
            assert response.json() == {"error": "unauthorized: missing or invalid API key"}
            assert response.headers["www-authenticate"] == "Bearer"
            openai = {"model": "alpha", "messages": HI, "max_tokens": 2}
            response = http.post(
                "/v1/chat/completions", json=openai, headers={"Authorization": "Bearer wrong"}
            )
            assert (
                response.status_code == 401
                and response.json()["error"]["code"] == "invalid_api_key"
            )
            anthropic = {"model": "alpha", "messages": HI, "max_tokens": 2}
            response = http.post("/v1/messages", json=anthropic)
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "authentication_error"

            alice = {"Authorization": "Bearer key-alice"}
            for _ in range(2):
                assert http.post("/api/chat", json=body, headers=alice).status_code == 200
            assert http.get("/api/tags", headers=alice).status_code == 200
            response = http.post("/api/chat", json=body, headers=alice)
            assert response.status_code == 429 and "limit" in response.json()["error"]
            assert int(response.headers["retry-after"]) >= 1
            response = http.post("/v1/chat/completions", json=openai, headers=alice)
            assert response.status_code == 429
            assert response.json()["error"]["code"] == "rate_limit_exceeded"
            # Another key has its own budget (Anthropic clients send x-api-key).
            response = http.post("/v1/messages", json=anthropic, headers={"x-api-key": "key-bob"})
            assert response.status_code == 200, response.text
        assert (
            metric(
                gateway.url, "modelrunner_key_requests_total", key="alice", outcome="rate_limited"
            )
            == 2
        )
    finally:
        gateway.stop()


def test_saturated_instances_serve_keys_round_robin(tmp_path: Path, pair: list[Proc]) -> None:
    """One instance slot at the gateway: a key that queued four requests does not make a second
    key wait behind all of them."""
    keys = tmp_path / "keys"
    keys.write_text("hog:key-hog\nother:key-other\n")
    gateway = start_gateway(tmp_path, "--backend", pair[0].url, "--api-keys-file", str(keys),
                            "--instance-concurrency", "1")  # fmt: skip
    done: list[str] = []
    body = {"model": "alpha", "prompt": "the", "raw": True, "stream": False,
            "options": {"num_predict": 400, "temperature": 0}}  # fmt: skip

    def ask(who: str) -> int:
        with httpx.Client(base_url=gateway.url, timeout=120) as http:
            status = http.post(
                "/api/generate", json=body, headers={"Authorization": f"Bearer key-{who}"}
            ).status_code
        done.append(who)
        return status

    try:
        with ThreadPoolExecutor(5) as pool:
            hogs = [pool.submit(ask, "hog") for _ in range(4)]
            # At least two hog requests wait behind the one running (on a loaded machine the
            # first ones may finish before the last is queued: counted in ``before``).
            wait_until(lambda: metric(gateway.url, "modelrunner_gateway_requests_queued") >= 2)
            before = len(done)
            other = pool.submit(ask, "other")
            assert [f.result(timeout=120) for f in [*hogs, other]] == [200] * 5
        # Served by turns: right after the hog running when it arrived (one more at most), not
        # after every queued hog request, as first come, first served would have it.
        assert done.index("other") <= before + 2, (before, done)
        assert metric(gateway.url, "modelrunner_gateway_requests_queued") == 0
    finally:
        gateway.stop()


def test_a_held_request_gets_a_503_in_its_dialect_at_the_hold_timeout(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    write_routes(routes, sleepy([]))
    gateway = start_gateway(tmp_path, "--routes-file", str(routes), "--hold-timeout", "2")
    try:

        def ask(path: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            with httpx.Client(base_url=gateway.url, timeout=30) as http:
                return http.post(path, json=body), time.monotonic() - started

        with ThreadPoolExecutor(2) as pool:
            ollama = pool.submit(ask, "/api/chat", {"model": "alpha", "messages": HI})
            openai = pool.submit(ask, "/v1/chat/completions", {"model": "alpha", "messages": HI})
            wait_until(lambda: httpx.get(f"{gateway.url}/gateway/v1/demand").json()["runners"]
                       .get("sleepy", {}).get("queued") == 2)  # fmt: skip
            demand = httpx.get(f"{gateway.url}/gateway/v1/demand").json()
            assert demand["runners"]["sleepy"]["inFlight"] == 0
            assert metric(gateway.url, "modelrunner_gateway_requests_queued", runner="sleepy") == 2
            (first, waited), (second, _) = ollama.result(), openai.result()
        assert 1.9 <= waited < 10
        assert first.status_code == 503 and "alpha" in first.json()["error"]
        assert second.status_code == 503 and second.json()["error"]["type"] == "api_error"
        assert first.headers["retry-after"]
        # Not declared anywhere: no hold, each dialect's 404 at once.
        response = httpx.post(f"{gateway.url}/api/chat", json={"model": "beta", "messages": HI})
        assert response.status_code == 404
        assert metric(gateway.url, "modelrunner_gateway_hold_timeouts_total") == 2
    finally:
        gateway.stop()


def test_a_held_request_is_released_when_the_routing_table_gains_an_instance(
    tmp_path: Path, pair: list[Proc]
) -> None:
    routes = tmp_path / "routes.json"
    write_routes(routes, sleepy([]))
    gateway = start_gateway(tmp_path, "--routes-file", str(routes), "--hold-timeout", "60")
    try:
        body = {"model": "alpha", "messages": HI, "stream": False, "options": {"num_predict": 2}}
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(httpx.post, f"{gateway.url}/api/chat", json=body, timeout=60)
            wait_until(lambda: metric(gateway.url, "modelrunner_gateway_requests_queued") == 1)
            assert not held.done()
            write_routes(routes, sleepy([{"name": "sleepy-0", "runner": "sleepy",
                                          "url": pair[0].url, "models": ["alpha:latest"]}]))  # fmt: skip
            released = time.monotonic()
            response = held.result(timeout=30)
        assert time.monotonic() - released < 10
        assert response.status_code == 200, response.text
        assert response.headers["x-model-runner-instance"] == "sleepy-0"
        assert metric(gateway.url, "modelrunner_gateway_requests_queued") == 0
        assert metric(gateway.url, "modelrunner_gateway_hold_seconds_count", runner="sleepy") == 1
        demand = httpx.get(f"{gateway.url}/gateway/v1/demand").json()
        assert demand["instances"]["sleepy-0"] == {"inFlight": 0}
        assert demand["runners"]["sleepy"]["lastRequestUnix"] is not None
    finally:
        gateway.stop()
