"""A context that cannot fit is refused with a clear error before llama.cpp allocates it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.core import fit
from modelrunner.errors import InvalidRequest
from tests.conftest import upload_and_create


class Meta:
    def __init__(self, **values: Any) -> None:
        self.values = values

    def arch_value(self, key: str) -> Any:
        return self.values.get(key)


GEMMA_270M = Meta(**{"block_count": 18, "embedding_length": 640, "attention.head_count": 4,
                     "attention.head_count_kv": 1, "attention.key_length": 256,
                     "attention.value_length": 256})  # fmt: skip


def test_kv_cache_estimate_from_metadata() -> None:
    # 18 layers x 1 KV head x (256 + 256) x 2 bytes = 18 KiB a token, per slot
    assert fit.kv_cache_bytes(GEMMA_270M, 1024, 1) == 18 * 512 * 2 * 1024
    assert fit.kv_cache_bytes(GEMMA_270M, 1024, 4) == 4 * 18 * 512 * 2 * 1024
    assert fit.kv_cache_bytes(Meta(), 1024, 1) is None  # unknown metadata: not refused


def test_a_context_larger_than_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit, "available_memory", lambda: 1 << 30)
    fit.check_fits("m", GEMMA_270M, 32768, 1, 0, 0)  # 576 MiB: fits in 1 GiB
    with pytest.raises(InvalidRequest, match=r"needs about 2\.2 GiB of KV cache.*1\.0 GiB"):
        fit.check_fits("m", GEMMA_270M, 131072, 1, 0, 0)
    with pytest.raises(InvalidRequest, match="4 slots"):
        fit.check_fits("m", GEMMA_270M, 32768, 4, 0, 0)


def test_available_memory_is_read() -> None:
    free = fit.available_memory()
    assert free is not None and free > 0


def test_configure_and_modelfile_contexts_have_the_ceiling(
    http: httpx.Client, tiny_gguf: Path
) -> None:
    """DMR's _configure and a Modelfile's num_ctx went around the request ceiling; a context of
    2^31 tokens set that way got the runner OOM-killed."""
    upload_and_create(http, tiny_gguf, "tiny")
    huge = http.post("/engines/_configure", json={"model": "tiny", "context-size": 2**31})
    assert huge.status_code == 400 and "larger than this runner allows" in huge.text
    upload_and_create(http, tiny_gguf, "wide", parameters={"num_ctx": 2**31})
    refused = http.post("/api/generate", json={"model": "wide", "prompt": "hi", "stream": False})
    assert refused.status_code == 400
    assert "context size 2147483648 for wide:latest is larger" in refused.json()["error"]
    ok = http.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False,
                                          "options": {"num_predict": 2, "num_batch": 2**31}})  # fmt: skip
    assert ok.status_code == 200, ok.text  # the batch is capped at the context
