"""Pure parts of the gateway: the routing table and name rules, instance choice, the
conversation key, fair queue order, and which path is what."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from modelrunner.gateway.balance import affinity_key, choose, ring_owner
from modelrunner.gateway.fairness import FairQueue
from modelrunner.gateway.paths import Kind, route_of
from modelrunner.gateway.table import TableError, parse_table
from modelrunner.names import Dialect

TABLE = {
    "version": 1,
    "runners": [{"name": "small", "namespace": "default", "models": ["gemma3:270m", "ai/smollm2"],
                 "replicas": 0, "tokenFile": "/var/run/modelrunner/runners/small/token"}],
    "instances": [{"name": "small-0", "runner": "small", "url": "http://10.245.0.12:11434/",
                   "models": ["gemma3:270m", "gemma3"]}],
}  # fmt: skip


def test_the_contract_table_parses_and_names_match_by_each_dialects_rules() -> None:
    table = parse_table(TABLE)
    (instance,) = table.instances
    assert instance.url == "http://10.245.0.12:11434" and instance.token_file is not None
    key = table.resolve("gemma3:270m", Dialect.OLLAMA)
    assert key is not None and table.holders(key) == [instance]
    assert table.resolve("GEMMA3:latest", Dialect.OLLAMA) == table.resolve("gemma3", Dialect.OLLAMA)
    assert table.resolve("registry.ollama.ai/library/gemma3:270m", Dialect.OLLAMA) == key
    assert table.resolve("gemma3:270m", Dialect.DMR) == key  # DMR falls back to Ollama's reading
    smol = table.resolve("ai/smollm2", Dialect.DMR)
    assert smol is not None and table.holders(smol) == [] and table.runner_of(smol) == "small"
    assert table.resolve("llama3", Dialect.OLLAMA) is None
    assert table.resolve("../../etc", Dialect.OLLAMA) is None


@pytest.mark.parametrize(
    "bad",
    [[], {"version": 2}, {"runners": [{"models": ["x"]}]}, {"instances": [{"url": "ftp://x"}]},
     {"instances": [{"url": "http://x", "models": ["a/../b"]}]}],
)  # fmt: skip
def test_a_malformed_table_is_refused(bad: object) -> None:
    with pytest.raises(TableError):
        parse_table(bad)


def test_bounded_load_keeps_the_owner_until_it_is_over_its_share() -> None:
    names = ["a", "b", "c", "d"]
    owner = ring_owner("conversation", names)
    assert choose(names, {}, "prefix", "conversation")[0] == owner
    # At or over ceil(1.25 * (total + 1) / n) the request spills to the least-loaded instance.
    busy = {n: (3 if n == owner else 0) for n in names}
    spill = choose(names, busy, "prefix", "conversation")
    assert spill[0] != owner and busy[spill[0]] == 0
    assert (
        choose(names, {owner: 1, **{n: 1 for n in names if n != owner}}, "prefix", "conversation")[
            0
        ]
        == owner
    )
    least = choose(names, {"a": 2, "b": 0, "c": 1, "d": 5}, "least")
    assert least == ["b", "c", "a", "d"]
    firsts = Counter(choose(names, {}, "round-robin")[0] for _ in range(8))
    assert set(firsts.values()) == {2}


def test_keys_spread_over_the_ring_and_survive_a_new_instance() -> None:
    keys = [f"conversation {i}" for i in range(400)]
    before = {k: ring_owner(k, ["a", "b", "c"]) for k in keys}
    assert min(Counter(before.values()).values()) > 60
    after = {k: ring_owner(k, ["a", "b", "c", "d"]) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "d" for k in moved) and len(moved) < 200  # only to the newcomer


def test_every_turn_of_a_chat_has_the_same_key() -> None:
    turn1 = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}]}
    turn2 = {"messages": [*turn1["messages"], {"role": "assistant", "content": "A1"},
                          {"role": "user", "content": "Q2"}]}  # fmt: skip
    other = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q9"}]}
    assert affinity_key("m", turn1) == affinity_key("m", turn2) != affinity_key("m", other)
    assert affinity_key("m", turn1) != affinity_key("n", turn1)
    anthropic = {
        "system": "S",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Q"}]}],
    }
    assert affinity_key("m", anthropic) is not None
    long_prompt = "x" * 600
    assert affinity_key("m", {"prompt": long_prompt}) == affinity_key(
        "m", {"prompt": long_prompt + "more"}
    )
    assert affinity_key("m", {"options": {}}) is None


async def test_fair_queue_serves_keys_round_robin_and_forgets_quitters() -> None:
    queue = FairQueue()
    hog = [queue.enqueue("hog") for _ in range(3)]
    other = queue.enqueue("other")
    quitter = queue.enqueue("third")
    queue.forget("third", quitter)
    order = []
    while queue.wake_one():
        await asyncio.sleep(0)
        order.append(next(i for i, f in enumerate([*hog, other]) if f.done() and i not in order))
    assert order == [0, 3, 1, 2] and len(queue) == 0


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [("POST", "/api/chat", Kind.INFERENCE), ("POST", "/engines/llama.cpp/v1/chat/completions", Kind.INFERENCE),
     ("POST", "/anthropic/v1/messages", Kind.INFERENCE), ("POST", "/v1/rerank", Kind.INFERENCE),
     ("POST", "/engines/v1/responses", Kind.INFERENCE), ("GET", "/v1/responses/resp_1", Kind.RESPONSE),
     ("GET", "/api/tags", Kind.LIST), ("GET", "/engines/llama.cpp/v1/models", Kind.LIST),
     ("GET", "/models/ai/smollm2", Kind.MODEL), ("GET", "/models/ai/smollm2/export", Kind.REFUSED),
     ("POST", "/api/pull", Kind.REFUSED), ("DELETE", "/models/x", Kind.REFUSED),
     ("POST", "/models/x/tag", Kind.REFUSED), ("POST", "/api/blobs/sha256:00", Kind.REFUSED),
     ("GET", "/engines/requests", Kind.REFUSED), ("GET", "/gateway/v1/demand", Kind.DEMAND),
     ("PUT", "/api/chat", Kind.UNKNOWN)],
)  # fmt: skip
def test_what_each_path_is(method: str, path: str, kind: Kind) -> None:
    assert route_of(method, path).kind is kind


def test_a_long_shared_system_prompt_does_not_hide_the_first_user_turn() -> None:
    system = {"role": "system", "content": "tools and rules " * 1000}
    one = {"messages": [system, {"role": "user", "content": "first chat"}]}
    two = {"messages": [system, {"role": "user", "content": "second chat"}]}
    assert affinity_key("m", one) != affinity_key("m", two)


def test_least_loaded_ties_do_not_all_go_to_the_first_instance() -> None:
    firsts = Counter(choose(["a", "b", "c"], {}, "least")[0] for _ in range(200))
    assert len(firsts) == 3
