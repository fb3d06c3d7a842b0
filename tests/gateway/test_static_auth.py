"""A static ``--backend`` whose runner requires an API key: the gateway lists its models with
``--backend-token-file`` too, not only the requests it forwards (it used to poll ``/api/tags``
bare, got 401, and ejected the backend over and over: every model answered 404)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import upload_and_create
from tests.gateway.procs import start_gateway, start_runner


def test_a_keyed_backend_is_listed_and_served_with_the_token_file(
    tmp_path: Path, ggufs: dict[str, Path]
) -> None:
    key = "sk-backend"
    runner = start_runner(tmp_path, "keyed", {}, MODEL_RUNNER_API_KEYS=f"gw:{key}")
    token = tmp_path / "backend-token"
    token.write_text(key + "\n")
    gateway = None
    try:
        with httpx.Client(base_url=runner.url, timeout=60) as direct:
            assert direct.get("/api/tags").status_code == 401  # the backend does want a key
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=runner.url, timeout=60, headers=auth) as client:
            upload_and_create(client, ggufs["alpha"], "alpha", parameters={"num_ctx": 2048})
        gateway = start_gateway(
            tmp_path, "--backend", runner.url, "--backend-token-file", str(token)
        )
        with httpx.Client(base_url=gateway.url, timeout=60) as client:
            names = [m["name"] for m in client.get("/api/tags").json()["models"]]
            assert names == ["alpha:latest"]
            answer = client.post(
                "/api/generate",
                json={"model": "alpha", "prompt": "hi", "stream": False,
                      "options": {"num_predict": 2}},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-model-runner-instance"] == runner.url
    finally:
        if gateway is not None:
            gateway.stop()
        runner.stop()
