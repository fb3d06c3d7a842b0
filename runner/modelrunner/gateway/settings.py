"""Gateway settings: one pydantic-settings class, every field documented, env prefix
MODELRUNNER_GATEWAY_ (the gateway contract's spelling); the per-key limits are the runner's
(KeyLimitSettings), under this prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from modelrunner.settings import KeyLimitSettings, split_commas

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class GatewaySettings(KeyLimitSettings):
    model_config = SettingsConfigDict(env_prefix="MODELRUNNER_GATEWAY_")

    listen: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1:11500"],
        description="HOST:PORT addresses to serve on; comma-separated as an environment variable.",
    )
    backend: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Static backend runner URLs; their models are discovered by polling "
        "GET /api/tags. Comma-separated as an environment variable.",
    )
    routes_file: Path | None = Field(
        default=None, description="JSON routing table, re-read when it changes (mtime poll)."
    )
    routes_configmap: str | None = Field(
        default=None,
        description="NAMESPACE/NAME of a ConfigMap whose key routes.json holds the routing "
        "table, watched through the Kubernetes API with the pod's service-account token.",
    )
    service_account_dir: Path = Field(
        default=SERVICE_ACCOUNT,
        description="Where the service-account token and ca.crt are mounted (in-cluster config).",
    )
    backend_token_file: Path | None = Field(
        default=None, description="Bearer token sent to backends (a runner's management token)."
    )
    api_keys_file: Path | None = Field(
        default=None, description="API keys (the runner's format: KEY or ID:KEY a line)."
    )
    management_token_file: Path | None = Field(
        default=None,
        description="Token that /gateway/v1/demand then requires (unset: demand is open).",
    )
    hold_timeout: float = Field(
        default=120.0,
        ge=0,
        description="Seconds a request for a declared model with no ready instance is held "
        "before a 503.",
    )
    instance_concurrency: int = Field(
        default=0,
        ge=0,
        description="Requests the gateway keeps in flight per instance; past it requests wait "
        "in per-key queues served round-robin (fair queueing). 0: no cap (the runner queues).",
    )
    policy: Literal["prefix", "least", "round-robin"] = Field(
        default="prefix",
        description="prefix: a conversation stays on the instance holding its prefix cache "
        "(bounded-load consistent hashing); least: fewest outstanding requests; round-robin: "
        "what a plain Service does (for comparison).",
    )
    load_factor: float = Field(
        default=1.25,
        ge=1.0,
        description="Bounded load: an instance takes a hashed request only while its load "
        "is under this factor times the average; otherwise the least-loaded one does.",
    )
    poll_interval: float = Field(
        default=2.0, gt=0, description="Seconds between polls of static backends and the file."
    )
    probe_interval: float = Field(
        default=1.0, gt=0, description="Seconds between probes of an ejected instance."
    )
    connect_timeout: float = Field(default=5.0, gt=0, description="Backend connect timeout.")
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error.")

    @field_validator("listen", "backend", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        return split_commas(value)
