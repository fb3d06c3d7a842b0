"""The autoscaler's decision (pure): up at once, down after the delay, zero only when idle."""

from __future__ import annotations

import pytest

from modeloperator.autoscale import Demand, Policy, decide
from modeloperator.gateways import GatewayState, runner_demand

POLICY = Policy(min_replicas=0, max_replicas=4, target=2, delay=60)
T = 1_000_000.0


def test_policy_defaults_and_bounds() -> None:
    assert Policy.of({"maxReplicas": 3}) == Policy(1, 3, 4, 300.0)
    assert Policy.of({"minReplicas": 0, "maxReplicas": 2, "targetConcurrentRequests": 1,
                      "scaleDownDelaySeconds": 5}) == Policy(0, 2, 1, 5.0)  # fmt: skip
    assert Policy.of({"minReplicas": 3, "maxReplicas": 1}).max_replicas == 3


def test_a_held_request_wakes_a_runner_at_zero() -> None:
    decision = decide(POLICY, 0, Demand(queued=1, last_request=T), T, T - 500)
    assert (decision.replicas, decision.reason, decision.needed_at) == (1, "ScaleFromZero", T)


@pytest.mark.parametrize(("in_flight", "queued", "replicas"),
                         [(1, 0, 1), (2, 0, 1), (3, 0, 2), (4, 3, 4), (20, 20, 4)])  # fmt: skip
def test_scale_up_follows_demand_per_target_capped_at_max(
    in_flight: int, queued: int, replicas: int
) -> None:
    decision = decide(POLICY, 1, Demand(in_flight, queued, T), T, T)
    assert decision.replicas == replicas


def test_scale_down_waits_for_the_delay_then_goes_to_what_suffices() -> None:
    busy = Demand(in_flight=1, last_request=T)
    early = decide(POLICY, 3, busy, T + 30, T)
    assert (early.replicas, early.reason, early.needed_at) == (3, "ScaleDownDelay", T)
    late = decide(POLICY, 3, busy, T + 61, T)
    assert (late.replicas, late.reason) == (1, "ScaleDown")


def test_zero_only_when_no_request_arrived_for_the_delay() -> None:
    # Fewer replicas sufficed for long, but a request finished 10 s ago: stay up.
    recent = decide(POLICY, 1, Demand(last_request=T - 10), T, T - 600)
    assert (recent.replicas, recent.reason) == (1, "ScaleDownDelay")
    idle = decide(POLICY, 1, Demand(last_request=T - 61), T, T - 600)
    assert (idle.replicas, idle.reason) == (0, "ScaleToZero")
    never = decide(POLICY, 1, Demand(), T, T - 61)
    assert never.replicas == 0


def test_min_replicas_is_a_floor_and_max_a_ceiling() -> None:
    policy = Policy(min_replicas=2, max_replicas=3, target=1, delay=0)
    assert decide(policy, 2, Demand(), T, T - 999).replicas == 2
    assert decide(policy, 0, Demand(), T, T).replicas == 2
    over = decide(policy, 5, Demand(in_flight=9), T, T)
    assert (over.replicas, over.reason) == (3, "OverMax")


def test_unknown_demand_never_scales_down_nor_to_zero() -> None:
    assert decide(POLICY, 3, None, T, T - 999).replicas == 3
    kept = decide(POLICY, 0, None, T, T - 999)
    assert (kept.replicas, kept.reason) == (1, "DemandUnknown")


def test_demand_sums_over_gateways() -> None:
    total = Demand.parse({"inFlight": 2, "queued": 1, "lastRequestUnix": 5.0}) + Demand.parse(
        {"inFlight": 1, "queued": 0, "lastRequestUnix": None}
    )
    assert total == Demand(3, 1, 5.0) and total.load == 4


def test_runner_demand_sums_fresh_reports_of_the_gateways_that_front_it() -> None:
    state = GatewayState()
    state.fronts = {("ns", "a"): {"r"}, ("ns", "b"): {"r"}, ("ns", "c"): {"other"},
                    ("ns", "old"): {"r"}}  # fmt: skip
    state.demand = {
        ("ns", "a"): (100.0, {"r": Demand(1, 0, 5.0)}),
        ("ns", "b"): (100.0, {"r": Demand(0, 2, 7.0)}),
        ("ns", "c"): (100.0, {"r": Demand(9, 9, 9.0)}),  # does not front r (stale entry)
        ("ns", "old"): (10.0, {"r": Demand(50, 50, 1.0)}),  # too old to count
    }
    assert runner_demand(state, "ns", "r", fresh_after=50.0) == Demand(1, 2, 7.0)
    assert runner_demand(state, "elsewhere", "r", fresh_after=50.0) is None
    # Fronted but not mentioned by the gateway: known demand of zero, not unknown.
    assert runner_demand(state, "ns", "other", fresh_after=50.0) == Demand()
