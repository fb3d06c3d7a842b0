"""The real Gemma 3 270M GGUF imported the standard Ollama way shows up in every dialect."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import upload_and_create


def test_gemma_imported_through_blobs_and_create(http: httpx.Client, gemma_gguf: Path) -> None:
    upload_and_create(
        http,
        gemma_gguf,
        "gemma3:270m",
        template="{{ .Prompt }}",
        parameters={"stop": ["<end_of_turn>"], "temperature": 1},
    )
    (tag,) = http.get("/api/tags").json()["models"]
    assert tag["name"] == "gemma3:270m"
    assert tag["details"]["family"] == "gemma3"
    assert tag["details"]["quantization_level"] == "Q4_K_M"
    assert tag["details"]["parameter_size"] == "268.10M"

    (dmr,) = http.get("/models").json()
    assert dmr["config"]["architecture"] == "gemma3"
    assert dmr["config"]["quantization"] == "Q4_K_M"
    assert dmr["config"]["context_size"] == 32768

    show = http.post("/api/show", json={"model": "gemma3:270m"}).json()
    assert show["template"] == "{{ .Prompt }}"
    assert show["parameters"].splitlines()[0] == 'stop                           "<end_of_turn>"'
    assert show["details"]["family"] == "gemma3"
    assert show["model_info"]["gemma3.context_length"] == 32768
    assert show["model_info"]["general.parameter_count"] == 268098176
    assert "FROM " in show["modelfile"]
