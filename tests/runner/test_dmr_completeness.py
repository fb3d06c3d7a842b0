"""DMR routes every ``docker model`` command needs, over real HTTP with the tiny GGUF:
llama-server's ``/tokenize`` and ``/detokenize`` as DMR proxies them, ``/models/load``,
``/models/{name}/export``, ``/models/purge``, short model IDs, ``/engines/requests``, ``/logs``
and ``/version``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import upload_and_create

TOKENIZE_PREFIXES = ("", "/engines", "/engines/llama.cpp", "/exp/vDD4.40/engines")


@pytest.fixture
def tiny(http: httpx.Client, tiny_gguf: Path) -> str:
    upload_and_create(http, tiny_gguf, "tiny")
    response = http.post("/models/tiny/tag", params={"repo": "ai/tiny", "tag": "latest"})
    assert response.status_code == 201
    return "ai/tiny"


# -- tokenize / detokenize ------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", TOKENIZE_PREFIXES)
def test_tokenize_round_trip(http: httpx.Client, tiny: str, prefix: str) -> None:
    plain = http.post(f"{prefix}/tokenize", json={"model": tiny, "content": "hello world"})
    assert plain.status_code == 200, plain.text
    tokens = plain.json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert 1 not in tokens  # no BOS unless add_special
    special = http.post(
        f"{prefix}/tokenize", json={"model": tiny, "content": "hello world", "add_special": True}
    ).json()["tokens"]
    assert special == [1, *tokens]
    back = http.post(f"{prefix}/detokenize", json={"model": tiny, "tokens": tokens})
    # SentencePiece escapes spaces as "▁"; the tiny vocabulary spells them as raw bytes
    assert back.json() == {"content": "▁hello▁world"}


def test_tokenize_with_pieces(http: httpx.Client, tiny: str) -> None:
    body = {"model": tiny, "content": "hé", "with_pieces": True, "add_special": True}
    tokens = http.post("/tokenize", json=body).json()["tokens"]
    # "▁" (the escaped space) and "é" are byte tokens: not UTF-8 alone, so sent as bytes
    assert [t["piece"] for t in tokens] == ["<s>", [0xE2], [0x96], [0x81], "h", [0xC3], [0xA9]]
    content = http.post("/detokenize", json={"model": tiny, "tokens": [t["id"] for t in tokens]})
    assert content.json()["content"] == "<s>▁hé"


def test_tokenize_errors(http: httpx.Client, tiny: str) -> None:
    missing = http.post("/tokenize", json={"content": "x"})
    assert (missing.status_code, missing.text) == (400, "model is required\n")
    unknown = http.post("/engines/tokenize", json={"model": "ai/nothing", "content": "x"})
    assert (unknown.status_code, unknown.text) == (404, "model not found\n")
    backend = http.post("/engines/vllm/tokenize", json={"model": tiny, "content": "x"})
    assert (backend.status_code, backend.text) == (404, "backend not found\n")
    bad = http.post("/detokenize", json={"model": tiny, "tokens": [10**9]})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert http.post("/tokenize", json={"model": tiny}).json() == {"tokens": []}
    assert http.post("/detokenize", json={"model": tiny}).json() == {"content": ""}
