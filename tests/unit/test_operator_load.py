"""Reading a runner instance's own load for the autoscaler (pure parts): the Prometheus fallback
for runners without ``/runner/load``, and when a request last arrived from a count that moved."""

from __future__ import annotations

from modeloperator.load import Arrivals, Reading, parse_metrics

METRICS = """\
# HELP modelrunner_requests_total Inference requests by model, API dialect and route kind.
# TYPE modelrunner_requests_total counter
modelrunner_requests_total{api="ollama",kind="generate",model="tiny:latest"} 3.0
modelrunner_requests_created{api="ollama",kind="generate",model="tiny:latest"} 1.7e+09
modelrunner_requests_total{api="openai",kind="chat",model="a b{c}"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting 4.0
vllm:num_requests_running 1.0 1700000000000
"""


def test_metrics_give_running_waiting_and_the_received_count() -> None:
    assert parse_metrics(METRICS) == Reading(running=1, waiting=4, received=5.0)


def test_metrics_without_the_gauges_are_unreadable() -> None:
    assert parse_metrics("modelrunner_requests_total 3.0\n") is None
    assert parse_metrics("vllm:num_requests_running 1.0\nvllm:num_requests_waiting oops\n") is None


def test_an_arrival_is_a_count_that_moved() -> None:
    arrivals = Arrivals()
    assert arrivals.update("a", 0, 100.0) is None  # a fresh instance that served nothing
    assert arrivals.update("a", 0, 102.0) is None
    assert arrivals.update("a", 2, 104.0) == 104.0
    assert arrivals.update("a", 2, 106.0) == 104.0  # nothing new since
    assert arrivals.update("a", 1, 108.0) == 108.0  # restarted, and served one since
    assert arrivals.update("a", 0, 110.0) == 108.0  # restarted again, idle
    # First read of an instance that already served requests: counted as now.
    assert arrivals.update("b", 7, 110.0) == 110.0


def test_instances_not_read_for_an_hour_are_forgotten() -> None:
    arrivals = Arrivals()
    arrivals.update("gone", 5, 0.0)
    arrivals.update("kept", 1, 3000.0)
    arrivals.update("kept", 1, 3700.0)
    assert set(arrivals.seen) == {"kept"}
