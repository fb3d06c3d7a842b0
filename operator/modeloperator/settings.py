"""Operator settings: one pydantic-settings class, env prefix MODELOPERATOR_."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELOPERATOR_")

    namespaces: Annotated[list[str], NoDecode] = Field(
        default=[], description="Namespaces to watch (comma-separated); empty watches all."
    )
    runner_image: str = Field(
        default="ghcr.io/modelrunner/runner:0.1.0",
        description="Runner image for ModelRunners that do not name one.",
    )
    reconcile_interval: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between drift checks: each runner instance is listed once per "
        "interval and only the Models that drifted are reconciled (changes to objects are "
        "handled at once, from the watch).",
    )
    observe_ttl: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a runner instance's model listing (and a runner's resolved "
        "instances) are shared by the Models reconciled meanwhile.",
    )
    runner_concurrency: int = Field(
        default=4, ge=1, description="Calls in flight to one runner instance at most."
    )
    autoscale_interval: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between a ModelGateway's demand polls (and autoscaling decisions).",
    )
    pull_timeout: float = Field(
        default=3600.0, gt=0, description="Seconds a single pull may take before it is retried."
    )
    request_timeout: float = Field(
        default=30.0, gt=0, description="Seconds for runner API calls other than pulls."
    )
    progress_interval: float = Field(
        default=2.0, gt=0, description="Seconds between status updates of a running pull."
    )
    peering: str = Field(
        default="modelrunner",
        description="kopf peering name: replicas with the same name never act at the same time.",
    )
    standalone: bool = Field(
        default=False, description="Run without peering (one replica only, or for development)."
    )
    instance_urls: dict[str, str] = Field(
        default={},
        description="Override runner instance addresses: '<namespace>/<pod>' -> URL. Used when "
        "the operator cannot reach pod IPs (tests, development outside the cluster).",
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
