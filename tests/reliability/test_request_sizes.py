"""Header and URL size limits: 431 and 414 in the caller's dialect from a real `modelrunner serve`
process (uvicorn's own h11 limit would answer a bare 400 first without the raised setting)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.runner.test_auth import assert_dialect_error
from tests.support.runner_process import RunnerProcess


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    work = tmp_path_factory.mktemp("sizes")
    runner = RunnerProcess(work / "models", work / "runner.log",
                           env={"MODEL_RUNNER_MAX_URL_LENGTH": "4096",
                                "MODEL_RUNNER_MAX_HEADER_SIZE": "8192"}).start()  # fmt: skip
    yield runner
    runner.stop()


PATHS = [("/api/tags", "GET", "ollama"), ("/v1/models", "GET", "openai"),
         ("/v1/messages", "POST", "anthropic"), ("/models", "GET", "dmr")]  # fmt: skip


@pytest.mark.parametrize(("path", "method", "dialect"), PATHS)
def test_headers_too_large_are_431(served: RunnerProcess, path: str, method: str,
                                   dialect: str) -> None:  # fmt: skip
    # Larger than our 8 KiB and than h11's default 16 KiB: our limit answers, in the dialect.
    headers = {f"x-pad-{i}": "p" * 1000 for i in range(20)}
    response = httpx.request(method, served.url + path, headers=headers, timeout=10)
    assert "headers are larger than 8192" in assert_dialect_error(response, dialect, 431)


@pytest.mark.parametrize(("path", "method", "dialect"), PATHS)
def test_urls_too_long_are_414(served: RunnerProcess, path: str, method: str,
                               dialect: str) -> None:  # fmt: skip
    response = httpx.request(method, f"{served.url}{path}?q={'x' * 5000}", timeout=10)
    assert "URL is longer than 4096" in assert_dialect_error(response, dialect, 414)


def test_within_limits_still_answers(served: RunnerProcess) -> None:
    headers = {f"x-pad-{i}": "p" * 1000 for i in range(6)}
    response = httpx.get(f"{served.url}/api/tags?q={'x' * 3000}", headers=headers, timeout=10)
    assert response.status_code == 200
