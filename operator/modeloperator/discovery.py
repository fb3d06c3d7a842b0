"""Wait at startup until API discovery lists the operator's resources.

kopf resolves the resources it serves once, right after the startup handlers. An operator that
started while the API server was coming back (an etcd or API server restart moments before: found
by the chaos test in tests/support/chaos.py) saw no modelrunner.io resources, logged "Unresolved
resources cannot be served" and then served nothing until it was restarted again. Waiting here
makes that first resolution see them; if they never appear the operator exits, so its pod restarts.
"""

from __future__ import annotations

import asyncio
import logging

from kubernetes_asyncio import client

from modeloperator import GROUP, VERSION

RESOURCES = frozenset({"models", "modelrunners", "modelgateways"})
log = logging.getLogger(__name__)


async def missing_resources(api: client.ApiClient) -> set[str]:
    """The operator's resources that discovery does not list yet (all of them on an error)."""
    try:
        groups = await client.ApisApi(api).get_api_versions()
        if not any(g.name == GROUP for g in groups.groups or []):
            return set(RESOURCES)
        found = await client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)
    except Exception as exc:  # the API server restarting: connection errors, 5xx
        log.info("API discovery not answering yet: %s", exc)
        return set(RESOURCES)
    return set(RESOURCES) - {r.name for r in found.resources or []}


async def wait_for_resources(api: client.ApiClient, patience: float = 120.0) -> None:
    """Poll discovery until it lists every resource; RuntimeError after ``patience`` seconds."""
    try:
        async with asyncio.timeout(patience):
            while missing := await missing_resources(api):
                log.warning("waiting for API discovery to list %s", sorted(missing))
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise RuntimeError(
            f"API discovery does not list {sorted(RESOURCES)} in {GROUP}/{VERSION} after "
            f"{patience:.0f} s: are the CRDs installed?"
        ) from None
