"""The operator's autoscaler over real HTTP: a runner process behind a management token and API
keys, a gateway process in front of it, and a client that calls the runner directly. A direct
request is demand the gateway never sees; a forwarded request waiting at the runner counts once;
an instance that does not answer makes the demand partial (nothing scales down)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from modeloperator.autoscale import Demand, InstanceLoad, Policy, combine, decide
from modeloperator.gateways import DEMAND_PATH
from modeloperator.instances import Instance
from modeloperator.kube import Kube
from modeloperator.load import Arrivals, gateway_demand, instance_loads, read_load
from modeloperator.reconcile import Context
from modeloperator.settings import OperatorSettings
from tests.conftest import upload_and_create
from tests.gateway.procs import Proc, start_gateway
from tests.support.runner_process import RunnerProcess
from tests.support.server import free_port

TOKEN = "operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# One slot: a second request waits at the runner. Greedy decoding of the tiny model never ends
# on its own, so the first request runs until its client closes the stream.
LONG = {"num_ctx": 4096, "num_predict": 20000, "temperature": 0}
POLICY = Policy(min_replicas=0, max_replicas=4, target=1, delay=60)


@pytest.fixture
def runner(tmp_path: Path, ggufs: dict[str, Path]) -> Iterator[RunnerProcess]:
    env = {"MODEL_RUNNER_MANAGEMENT_TOKEN": TOKEN, "MODEL_RUNNER_API_KEYS": "client:key-1",
           "MODEL_RUNNER_NUM_PARALLEL": "1"}  # fmt: skip
    proc = RunnerProcess(tmp_path / "models", tmp_path / "runner.log", env).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=60, headers=AUTH) as client:
            upload_and_create(client, ggufs["alpha"], "alpha")
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def front(tmp_path: Path, runner: RunnerProcess) -> Iterator[Proc]:
    """A gateway fronting the runner as in the cluster: a routing table naming the runner, its
    one instance and the file holding its management token."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    table = {"version": 1,
             "runners": [{"name": "solo", "namespace": "default", "models": ["alpha:latest"],
                          "replicas": 1, "tokenFile": str(token)}],
             "instances": [{"name": "solo-0", "runner": "solo", "url": runner.url,
                            "models": ["alpha:latest"]}]}  # fmt: skip
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(table))
    proc = start_gateway(tmp_path, "--routes-file", str(routes))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def ctx() -> AsyncIterator[Context]:
    """The operator's context with its shared views of instances (no cluster is involved)."""
    context = Context(cast(Kube, None), OperatorSettings())
    try:
        yield context
    finally:
        await context.inventory.close()


async def eventually(check: Callable[[], Awaitable[Any]]) -> Any:
    """What ``check`` returns once it is true (within about 30 s)."""
    for _ in range(300):
        if found := await check():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {check}")


async def test_direct_traffic_is_demand_and_forwarded_traffic_counts_once(
    runner: RunnerProcess, front: Proc, ctx: Context
) -> None:
    arrivals = Arrivals()
    instance = Instance("solo", "solo-0", runner.url, token=TOKEN)
    demand_url = f"{front.url}{DEMAND_PATH}"

    async def demand() -> Demand | None:
        gateways = await gateway_demand([demand_url])
        fronts = None if gateways is None else gateways.get("solo", Demand())
        return combine(fronts, await instance_loads(ctx, arrivals, [instance]))

    # The route needs a credential once keys are set: the operator sends the runner's token.
    async with httpx.AsyncClient(base_url=runner.url) as anonymous:
        assert (await anonymous.get("/runner/load")).status_code == 401
        assert await read_load(anonymous) is None
    assert await demand() == Demand()

    stop, streaming = threading.Event(), threading.Event()

    def direct() -> int:  # straight to the runner's own address, as to its Service
        body = {"model": "alpha", "prompt": "the", "raw": True, "options": LONG}
        headers = {"Authorization": "Bearer key-1"}
        with httpx.Client(base_url=runner.url, timeout=120, headers=headers) as client:
            with client.stream("POST", "/api/generate", json=body) as response:
                for _ in response.iter_lines():
                    streaming.set()
                    if stop.is_set():
                        break  # closing the connection ends the generation
            return response.status_code

    def forwarded() -> httpx.Response:
        body = {"model": "alpha", "prompt": "hi", "stream": False,
                "options": {**LONG, "num_predict": 1}}  # fmt: skip
        return httpx.post(f"{front.url}/api/generate", json=body, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        held: Future[int] = pool.submit(direct)
        try:
            await eventually(lambda: asyncio.to_thread(streaming.wait, 1.0))
            alone = await eventually(demand)
            assert (alone.in_flight, alone.queued, alone.partial) == (1, 0, False), alone
            assert alone.last_request is not None and abs(alone.last_request - time.time()) < 30
            # The gateway saw none of it, yet the runner stays up, and a second client...
            assert decide(POLICY, 1, alone, time.time(), time.time() - 600).replicas == 1
            through = pool.submit(forwarded)

            async def both() -> Demand | None:
                found = await demand()
                return found if found is not None and found.queued == 1 else None

            # ...through the gateway waits at the runner for its one slot: in flight at the
            # gateway and waiting at the runner, counted once (2 requests, not 3).
            mixed = await eventually(both)
            assert (mixed.in_flight, mixed.queued, mixed.load) == (1, 1, 2), mixed
            assert decide(POLICY, 1, mixed, time.time(), time.time()).reason == "ScaleUp"
            # An instance that does not answer: partial demand, which never scales down.
            gone = Instance("solo", "solo-1", f"http://127.0.0.1:{free_port()}", token=TOKEN)
            loads = await instance_loads(ctx, arrivals, [instance, gone])
            assert loads[1] is None and isinstance(loads[0], InstanceLoad)
            partial = combine(Demand(), loads)
            assert partial is not None and partial.partial
            assert decide(POLICY, 3, partial, time.time(), time.time() - 600).replicas == 3
        finally:
            stop.set()
        assert held.result(timeout=60) == 200
        assert through.result(timeout=60).status_code == 200

    async def idle() -> Demand | None:
        found = await demand()
        return found if found is not None and found.load == 0 else None

    quiet = await eventually(idle)
    # Idle now, but a request arrived moments ago: no scale to zero before the delay.
    assert quiet.last_request is not None
    held_back = decide(POLICY, 1, quiet, time.time(), time.time() - 600)
    assert (held_back.replicas, held_back.reason) == (1, "ScaleDownDelay")
    later = decide(POLICY, 1, quiet, quiet.last_request + 61, quiet.last_request - 600)
    assert later.reason == "ScaleToZero"
