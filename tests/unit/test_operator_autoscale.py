"""The autoscaler's decision (pure): up at once, down after the delay, zero only when idle; and
the demand it decides on, from the gateways and from the runner's own instances."""

from __future__ import annotations

import pytest

from modeloperator.autoscale import Demand, InstanceLoad, Policy, combine, decide
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


# -- direct traffic: what the runner's instances report themselves ---------------------------


def test_direct_traffic_alone_keeps_a_runner_up_and_scales_it_up() -> None:
    # The gateway fronts the runner but saw nothing; clients call the runner's Service directly.
    direct = combine(Demand(), [InstanceLoad(running=2, waiting=3, last_request=T)])
    assert direct == Demand(in_flight=2, queued=3, last_request=T)
    up = decide(POLICY, 1, direct, T, T - 999)
    assert (up.replicas, up.reason) == (3, "ScaleUp")
    # Busy for long past the delay: no scale-down while direct clients need the replica.
    busy = combine(Demand(), [InstanceLoad(running=2, last_request=T - 500)])
    assert decide(POLICY, 1, busy, T, T - 999).replicas == 1


def test_a_direct_request_seen_recently_blocks_scale_to_zero() -> None:
    seen = combine(Demand(), [InstanceLoad(last_request=T - 10), InstanceLoad()])
    recent = decide(POLICY, 1, seen, T, T - 600)
    assert (recent.replicas, recent.reason) == (1, "ScaleDownDelay")
    # The gateways' last request was long ago; the latest of both counts.
    both = combine(Demand(last_request=T - 900), [InstanceLoad(last_request=T - 61)])
    assert both is not None and both.last_request == T - 61
    assert decide(POLICY, 1, both, T, T - 600).reason == "ScaleToZero"


def test_gateway_and_direct_traffic_are_not_counted_twice() -> None:
    # Three forwarded requests: two running at the instance, one waiting there for a slot.
    forwarded = combine(Demand(in_flight=3, last_request=T), [InstanceLoad(2, 1, T)])
    assert forwarded == Demand(in_flight=2, queued=1, last_request=T) and forwarded.load == 3
    # Plus two direct clients (one running, one waiting) and one request held at the gateway.
    mixed = combine(Demand(in_flight=3, queued=1), [InstanceLoad(2, 1), InstanceLoad(1, 1)])
    assert mixed is not None and (mixed.in_flight, mixed.queued, mixed.load) == (3, 3, 6)
    # Forwarded but not arrived yet: the gateway's count stands.
    assert combine(Demand(in_flight=4), [InstanceLoad(running=1)]) == Demand(in_flight=4)
    assert decide(POLICY, 1, mixed, T, T).replicas == 3


def test_an_instance_that_cannot_be_read_is_unknown_demand() -> None:
    partial = combine(Demand(), [InstanceLoad(), None])
    assert partial is not None and partial.partial
    kept = decide(POLICY, 3, partial, T, T - 999)
    assert (kept.replicas, kept.reason) == (3, "DemandUnknown")
    # Never to zero either, but what is known still adds replicas.
    assert decide(POLICY, 1, partial, T, T - 999).replicas == 1
    busy = combine(Demand(in_flight=1), [InstanceLoad(running=6), None])
    assert decide(POLICY, 1, busy, T, T).replicas == 3
    # No gateway answered: the instances' load is known, the gateways' queue is not.
    no_gateway = combine(None, [InstanceLoad(running=1)])
    assert no_gateway is not None and no_gateway.partial
    assert decide(POLICY, 2, no_gateway, T, T - 999).replicas == 2
    # Nothing answered at all (or nothing to ask): unknown, as before.
    assert combine(None, []) is None and combine(None, [None]) is None
    assert combine(Demand(1, 2, 3.0), []) == Demand(1, 2, 3.0)
