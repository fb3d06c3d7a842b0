"""What a model server reports for load-aware routing (the Gateway API Inference Extension's
model server protocol): requests queued, requests running, and KV-cache utilisation."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelrunner.scheduler import Runner, Scheduler


@dataclass
class ServingLoad:
    waiting: int = 0  # requests waiting for a load, for room or for a slot
    running: int = 0  # requests holding a slot
    kv_cache_usage: float = 0.0  # 0..1 over every loaded model's KV cache
    kv_by_model: dict[str, float] = field(default_factory=dict)


def kv_usage(runner: Runner) -> float:
    """The engine's own measure when it has one, else the share of busy slots."""
    value = getattr(runner.model, "kv_cache_usage", None)
    if isinstance(value, int | float):
        return float(value)
    return min(1.0, runner.active / max(1, runner.model.slots))


def serving_load(scheduler: Scheduler) -> ServingLoad:
    load = ServingLoad(waiting=scheduler.queued)
    used = capacity = 0.0
    for runner in scheduler.runners.values():
        load.running += runner.active
        if runner.options.embedding:
            continue  # embedding runs hold no KV cache between steps
        usage = kv_usage(runner)
        size = float(runner.model.context_length * max(1, runner.model.slots))
        load.kv_by_model[runner.name] = usage
        used, capacity = used + usage * size, capacity + size
    load.kv_cache_usage = used / capacity if capacity else 0.0
    return load
