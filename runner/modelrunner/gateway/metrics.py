"""The gateway's counts: Prometheus series per model and instance, and the demand document the
operator's autoscaler reads (``GET /gateway/v1/demand``, the contract's shape)."""

from __future__ import annotations

import time
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelrunner_gateway_requests", "Requests forwarded, by outcome status code.",
            ["runner", "instance", "model", "code"], registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "modelrunner_gateway_requests_in_flight", "Requests forwarded and not finished.",
            ["runner", "instance", "model"], registry=r,
        )  # fmt: skip
        self.queued = Gauge(
            "modelrunner_gateway_requests_queued",
            "Requests held at the gateway (no ready instance, or every instance at its cap).",
            ["runner", "model"], registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "modelrunner_gateway_time_to_first_byte_seconds",
            "From the request's arrival to the first body byte of the instance's answer "
            "(time to first token for streams).",
            ["runner", "instance", "model"], buckets=_LATENCY, registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "modelrunner_gateway_errors",
            "Failures talking to an instance (connect, reset, 503 before the first byte).",
            ["runner", "instance", "model", "kind"], registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "modelrunner_gateway_retries", "Requests sent again to another instance.",
            ["runner", "model"], registry=r,
        )  # fmt: skip
        self.held = Histogram(
            "modelrunner_gateway_hold_seconds", "Time requests were held before forwarding.",
            ["runner", "model"], buckets=_LATENCY, registry=r,
        )  # fmt: skip
        self.timeouts = Counter(
            "modelrunner_gateway_hold_timeouts", "Held requests answered 503 at --hold-timeout.",
            ["runner", "model"], registry=r,
        )  # fmt: skip
        # Demand: plain counts beside the gauges (the gauges carry labels the document folds).
        self.runner_in_flight: Tally[str] = Tally()
        self.runner_queued: Tally[str] = Tally()
        self.instance_in_flight: Tally[str] = Tally()
        self.last_request: dict[str, float] = {}

    def arrived(self, runner: str) -> None:
        self.last_request[runner] = time.time()

    def queue(self, runner: str, model: str, delta: int) -> None:
        self.runner_queued[runner] += delta
        self.queued.labels(runner, model).inc(delta)

    def start(self, runner: str, instance: str, model: str) -> None:
        self.runner_in_flight[runner] += 1
        self.instance_in_flight[instance] += 1
        self.in_flight.labels(runner, instance, model).inc()

    def finish(self, runner: str, instance: str, model: str) -> None:
        self.runner_in_flight[runner] -= 1
        self.instance_in_flight[instance] -= 1
        self.in_flight.labels(runner, instance, model).dec()

    def demand(self, runners: list[str], instances: list[str]) -> dict[str, Any]:
        names = dict.fromkeys([*runners, *self.runner_in_flight, *self.runner_queued])
        return {
            "runners": {
                name: {
                    "inFlight": self.runner_in_flight[name],
                    "queued": self.runner_queued[name],
                    "lastRequestUnix": self.last_request.get(name),
                }
                for name in names
                if name
            },
            "instances": {
                name: {"inFlight": self.instance_in_flight[name]}
                for name in dict.fromkeys([*instances, *self.instance_in_flight])
            },
        }

    def render(self) -> bytes:
        return generate_latest(self.registry)
