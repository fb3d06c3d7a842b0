"""``modeloperator``: watch all namespaces (or ``--namespace NS``, repeatable) and reconcile."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys

import kopf

from modeloperator.handlers import register
from modeloperator.settings import OperatorSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modeloperator", description=__doc__)
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="namespace to watch (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--standalone", action="store_true", help="no peering (a single replica, or development)"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority: the live replica with the highest acts, the others stand by "
        "(default: random, since kopf pauses every replica when priorities tie)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve kopf's health endpoint, e.g. http://0.0.0.0:8080/healthz (for probes)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    settings = OperatorSettings()
    namespaces = args.namespace or settings.namespaces
    registry = kopf.OperatorRegistry()
    register(registry, settings)
    standalone = args.standalone or settings.standalone
    kopf.configure(verbose=args.verbose)
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=standalone,
            peering_name=None if standalone else settings.peering,
            priority=args.priority if args.priority is not None else random.randint(1, 1 << 30),
            liveness_endpoint=args.liveness,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
