"""The shared view of a runner instance over real HTTP (a real runner, no cluster): many Models
reconciled at once list the instance once; a Model that just wrote reads a listing taken after
its write; an instance that does not answer is reported, and not asked again at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from modeloperator.inventory import Inventory
from modeloperator.runnerclient import Unreachable
from tests.conftest import upload_and_create
from tests.support.server import LiveServer, free_port


def counting(inventory: Inventory, url: str) -> list[str]:
    seen: list[str] = []
    view = inventory.view(url, None)

    async def hook(request: httpx.Request) -> None:
        seen.append(f"{request.method} {request.url.path}")

    view.http.event_hooks["request"].append(hook)
    return seen


def test_concurrent_models_share_one_listing(runner: LiveServer, tiny_gguf: Path) -> None:
    with httpx.Client(base_url=runner.url, timeout=60) as http:
        upload_and_create(http, tiny_gguf, "base")

    async def main() -> None:
        inventory = Inventory(timeout=10, pull_timeout=60, concurrency=2)
        seen = counting(inventory, runner.url)
        view = inventory.view(runner.url, None)
        snaps = await asyncio.gather(*(view.models(max_age=5) for _ in range(50)))
        assert seen == ["GET /api/tags", "GET /runner/policies"]  # one listing for all 50
        assert all(s is snaps[0] for s in snaps)
        assert "registry.ollama.ai/library/base:latest" in snaps[0].models
        assert snaps[0].models["registry.ollama.ai/library/base:latest"][1] > 0  # size

        async def write(i: int) -> int:
            async with view.calls:
                await view.client.create(f"m{i}", {"from": "base", "system": f"n{i}"})
            done = time.monotonic()
            snap = await view.models(max_age=5, after=done)
            assert f"registry.ollama.ai/library/m{i}:latest" in snap.models
            return id(snap)

        seen.clear()
        listings = await asyncio.gather(*(write(i) for i in range(6)))
        creates = [s for s in seen if s == "POST /api/create"]
        tags = [s for s in seen if s == "GET /api/tags"]
        assert len(creates) == 6
        assert 1 <= len(tags) < 6 and len(set(listings)) == len(tags)  # writers share listings
        await inventory.close()

    asyncio.run(main())


def test_an_instance_that_does_not_answer() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def main() -> None:
        inventory = Inventory(timeout=2, pull_timeout=10, concurrency=2)
        seen = counting(inventory, url)
        view = inventory.view(url, None)
        with pytest.raises(Unreachable):
            await view.models(max_age=5)
        with pytest.raises(Unreachable):  # remembered for a moment: no second attempt
            await view.models(max_age=5)
        assert seen == ["GET /api/tags"]
        await inventory.close()

    asyncio.run(main())
