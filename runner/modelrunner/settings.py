"""Runner settings: one pydantic-settings class, every field documented, env prefix MODEL_RUNNER_."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modelrunner.bytesize import parse_bytes
from modelrunner.durations import parse_keep_alive
from modelrunner.errors import ModelRunnerError


def _default_models_dir() -> Path:
    return Path.home() / ".modelrunner" / "models"


def split_commas(value: object) -> object:
    """A list setting given as one string (an environment variable): its comma-separated items."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class KeyLimitSettings(BaseSettings):
    """Per-API-key limits, enforced alike by the runner and the gateway (security/limits.py);
    each program's env prefix names them (MODEL_RUNNER_KEY_..., MODELRUNNER_GATEWAY_KEY_...)."""

    key_requests_per_minute: int = Field(
        default=0, ge=0, description="Requests per minute per API key; 0: unlimited."
    )
    key_tokens_per_minute: int = Field(
        default=0,
        ge=0,
        description="Prompt plus generated tokens per minute per API key (the gateway reads them "
        "from the usage the runners' answers report); 0: unlimited.",
    )
    key_concurrency: int = Field(
        default=0, ge=0, description="Requests in flight per API key; 0: unlimited."
    )


class Settings(KeyLimitSettings):
    model_config = SettingsConfigDict(env_prefix="MODEL_RUNNER_", env_nested_delimiter="__")

    models: Path = Field(
        default_factory=_default_models_dir,
        description="Root of the model store (manifests/ and blobs/, Ollama's layout).",
    )
    listen: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1:11434", "127.0.0.1:12434"],
        description="HOST:PORT addresses to serve on; Ollama's port and DMR's port by default. "
        "As an environment variable: a comma-separated list.",
    )
    keep_alive: str = Field(
        default="5m",
        description="How long a model stays loaded after its last request (Go duration or "
        "seconds; negative keeps it loaded forever, 0 unloads at once).",
    )
    max_loaded_models: int = Field(
        default=3,
        ge=1,
        description="Models kept in memory at once; the least recently used "
        "idle one is unloaded to make room.",
    )
    memory_budget: str = Field(
        default="0",
        description="Bytes the loaded models may take together, weights and the KV cache their "
        "context and slots allocate (e.g. 8GiB, 8GB or a number of bytes); the least recently "
        "used idle model is unloaded to make room; 0: no budget.",
    )
    pinned_wait: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a request for a model waits for room that pinned models hold "
        "(a runtime policy) before it gets 503; pinned models are never unloaded for it.",
    )
    max_queue: int = Field(
        default=512, ge=1, description="Requests waiting per model before new ones get 503."
    )
    engine: Literal["batched", "simple"] = Field(
        default="batched",
        description="'batched': concurrent requests to a model share one decode loop "
        "(continuous batching); 'simple': llama-cpp-python's high-level API, one request at a "
        "time per model.",
    )
    num_parallel: int = Field(
        default=4,
        ge=1,
        description="Requests one loaded model serves at the same time (slots; each has its own "
        "num_ctx of KV cache). The simple engine always serves one.",
    )
    flash_attention: bool | None = Field(
        default=None,
        description="Use flash attention (true/false); unset lets llama.cpp decide per model "
        "and device.",
    )
    context_size: int = Field(
        default=4096,
        ge=0,
        description="Default context length (num_ctx) when neither the "
        "request nor the Modelfile sets one; 0 uses the model's trained length.",
    )
    num_gpu: int = Field(
        default=-1,
        description="Layers to offload to the GPU; -1 offloads all when a GPU "
        "is available, 0 keeps everything on the CPU.",
    )
    num_thread: int = Field(
        default=0,
        ge=0,
        description="CPU threads for inference; 0: one per physical core, at most the "
        "container's CPU quota.",
    )
    origins: Annotated[list[str], NoDecode] = Field(
        default=[], description="Extra CORS origins allowed besides localhost."
    )
    prune: bool = Field(
        default=True, description="Remove unreferenced blobs older than an hour at startup."
    )
    insecure_registries: Annotated[list[str], NoDecode] = Field(
        default=[], description="Registry hosts that may be reached over plain http."
    )
    docker_config: Path | None = Field(
        default=None,
        description="Docker config.json with registry credentials "
        "(default: $DOCKER_CONFIG/config.json or ~/.docker/config.json).",
    )
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error.")
    shutdown_timeout: float = Field(
        default=30.0,
        ge=0,
        description="Seconds `serve` lets in-flight requests finish after SIGTERM (new connections "
        "are refused at once); generations still running then end with an error line.",
    )

    # Access control (README "Access control"); secrets are SecretStr so they never print.
    management_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the routes that change state or reach out need (pull, push, "
        "create, copy, delete, blob upload, configure, unload); it works on every route.",
    )
    management_token_file: Path | None = Field(
        default=None,
        description="File holding the management token (re-read when it changes).",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default=[],
        description="Inference API keys, `KEY` or `ID:KEY`; as an environment variable a "
        "comma-separated list. Once any key is configured, inference needs one.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="File of API keys, one `KEY` or `ID:KEY` a line (# comments); re-read when "
        "its mtime changes or on SIGHUP.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Host header names a loopback-bound runner accepts besides loopback "
        "names and addresses (DNS-rebinding guard).",
    )
    # Bounded input (README "Bounded input"): refused with a 4xx before anything runs.
    max_body_size: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest JSON request body in bytes."
    )
    max_upload_size: int = Field(
        default=0,
        ge=0,
        description="Largest streamed upload (blobs, model archives) in bytes; 0: unlimited.",
    )
    body_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a client may pause while sending a JSON body before it gets 408 "
        "(slow clients hold no slot for long).",
    )
    max_url_length: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Longest request target (path and query) in bytes; 414 beyond.",
    )
    max_header_size: int = Field(
        default=64 * 1024,
        ge=4096,
        description="Largest total size of a request's headers in bytes; 431 beyond.",
    )
    max_json_depth: int = Field(
        default=64, ge=4, description="Deepest nesting of arrays and objects in a JSON body."
    )
    max_messages: int = Field(default=4096, ge=1, description="Messages (or inputs) a request.")
    max_images: int = Field(default=64, ge=0, description="Images a request.")
    max_tools: int = Field(default=512, ge=0, description="Tools a request.")
    max_num_ctx: int = Field(
        default=131072, ge=256, description="Largest context length (num_ctx) a request may ask."
    )
    max_num_predict: int = Field(
        default=131072,
        ge=1,
        description="Largest number of tokens to generate (num_predict, max_tokens) a request "
        "may ask.",
    )

    @field_validator("keep_alive")
    @classmethod
    def _check_keep_alive(cls, value: str) -> str:
        try:  # like OLLAMA_KEEP_ALIVE: a Go duration, or a bare number of seconds
            parse_keep_alive(value, lenient=True)
        except ModelRunnerError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _check_memory_budget(cls, value: object) -> str:
        try:
            return str(parse_bytes(value))  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None

    @property
    def memory_budget_bytes(self) -> int:
        return int(self.memory_budget)

    @field_validator(
        "listen", "origins", "insecure_registries", "api_keys", "allowed_hosts", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        return split_commas(value)


def parse_listen(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be HOST:PORT, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)
