"""Prometheus metrics of one runner process (a registry per app: no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelrunner_requests", "Inference requests by model, API dialect and route kind.",
            ["model", "api", "kind"], registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "modelrunner_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r
        )
        self.cached_tokens = Counter(
            "modelrunner_prompt_cached_tokens", "Prompt tokens served from the KV cache.",
            ["model"], registry=r,
        )  # fmt: skip
        self.generated_tokens = Counter(
            "modelrunner_generated_tokens", "Tokens generated.", ["model"], registry=r
        )
        self.ttft = Histogram(
            "modelrunner_time_to_first_token_seconds", "Time from request to first token.",
            ["model"], buckets=_TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.token_latency = Histogram(
            "modelrunner_time_per_output_token_seconds", "Average time per generated token.",
            ["model"], buckets=_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.loaded_models = Gauge(
            "modelrunner_loaded_models", "Models loaded in memory.", registry=r
        )
        self.queue_depth = Gauge(
            "modelrunner_queue_depth", "Requests waiting for a slot.", ["model"], registry=r
        )
        self.active = Gauge(
            "modelrunner_active_requests", "Requests holding a slot (sequences being decoded).",
            ["model"], registry=r,
        )  # fmt: skip
        self.slots = Gauge(
            "modelrunner_slots", "Requests a loaded model serves at once.", ["model"], registry=r
        )

        # The Gateway API Inference Extension's model server protocol (README "Inference
        # gateways"): per-pod totals under our names and under vLLM's, which its endpoint
        # picker reads by default.
        self.requests_waiting = Gauge(
            "modelrunner_requests_waiting", "Requests queued: waiting for a model load, for "
            "room or for a slot (all models).", registry=r,
        )  # fmt: skip
        self.requests_running = Gauge(
            "modelrunner_requests_running", "Requests holding a slot (all models).", registry=r
        )
        self.kv_cache_usage = Gauge(
            "modelrunner_kv_cache_usage_perc", "KV-cache utilisation of the loaded models, "
            "0 to 1 (1 = full).", registry=r,
        )  # fmt: skip
        self.kv_cache_usage_model = Gauge(
            "modelrunner_model_kv_cache_usage_perc", "KV-cache utilisation per loaded model, "
            "0 to 1.", ["model"], registry=r,
        )  # fmt: skip
        self.vllm_waiting = Gauge(
            "vllm:num_requests_waiting", "Same as modelrunner_requests_waiting.", registry=r
        )
        self.vllm_running = Gauge(
            "vllm:num_requests_running", "Same as modelrunner_requests_running.", registry=r
        )
        self.vllm_kv = Gauge(
            "vllm:kv_cache_usage_perc", "Same as modelrunner_kv_cache_usage_perc.", registry=r
        )
        self.vllm_gpu_kv = Gauge(
            "vllm:gpu_cache_usage_perc", "Same as modelrunner_kv_cache_usage_perc (vLLM's "
            "older name).", registry=r,
        )  # fmt: skip

    def requests_received(self) -> int:
        """Inference requests since the process started, over every model, dialect and kind."""
        return int(sum(sample.value for family in self.requests.collect()
                       for sample in family.samples if sample.name.endswith("_total")))  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)
