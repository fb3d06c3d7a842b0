"""The ``modelrunner gateway`` subcommand: flags over ``GatewaySettings`` (each flag is also an
environment variable MODELRUNNER_GATEWAY_<FLAG>)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# flag -> (settings field, argparse options)
_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--listen": ("listen", {"action": "append", "metavar": "HOST:PORT",
                            "help": "address to serve on; repeatable (default 127.0.0.1:11500)"}),
    "--backend": ("backend", {"action": "append", "metavar": "URL",
                              "help": "a runner to route to (models found by GET /api/tags); repeatable"}),
    "--routes-file": ("routes_file", {"type": Path, "metavar": "PATH",
                                      "help": "JSON routing table, re-read when it changes"}),
    "--routes-configmap": ("routes_configmap", {"metavar": "NAMESPACE/NAME",
                                                "help": "ConfigMap whose routes.json is the routing table (in-cluster)"}),
    "--backend-token-file": ("backend_token_file", {"type": Path, "metavar": "PATH",
                                                    "help": "bearer token sent to the runners"}),
    "--api-keys-file": ("api_keys_file", {"type": Path, "metavar": "PATH",
                                          "help": "API keys, the runner's format (KEY or ID:KEY a line)"}),
    "--management-token-file": ("management_token_file", {"type": Path, "metavar": "PATH",
                                                          "help": "token /gateway/v1/demand requires"}),
    "--hold-timeout": ("hold_timeout", {"type": float, "metavar": "SECONDS",
                                        "help": "how long a request waits for a ready instance (default 120)"}),
    "--policy": ("policy", {"choices": ["prefix", "least", "round-robin"],
                            "help": "instance choice (default prefix: bounded-load prefix affinity)"}),
    "--instance-concurrency": ("instance_concurrency", {"type": int, "metavar": "N",
                                                        "help": "requests in flight per instance before fair queueing (default 0: no cap)"}),
}  # fmt: skip


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "gateway", help="route every dialect's requests to the runners that hold each model"
    )
    for flag, (_, options) in _FLAGS.items():
        p.add_argument(flag, **options)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelrunner.gateway.server import run as serve
    from modelrunner.gateway.settings import GatewaySettings

    overrides = {
        field: getattr(args, flag.lstrip("-").replace("-", "_"))
        for flag, (field, _) in _FLAGS.items()
    }
    settings = GatewaySettings(**{k: v for k, v in overrides.items() if v is not None})
    return serve(settings)
