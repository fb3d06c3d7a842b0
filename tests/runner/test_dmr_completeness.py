"""DMR routes every ``docker model`` command needs, over real HTTP with the tiny GGUF:
llama-server's ``/tokenize`` and ``/detokenize`` as DMR proxies them, ``/models/load``,
``/models/{name}/export``, ``/models/purge``, short model IDs, ``/engines/requests``, ``/logs``
and ``/version``."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
import threading
import time
from pathlib import Path

import httpx
import llama_cpp
import pytest

import modelrunner
from tests.conftest import upload_and_create
from tests.support.registry import Registry
from tests.support.server import LiveServer
from tests.support.tiny_reranker import RERANK_TEMPLATE, write_tiny_reranker

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


# -- load / export / purge / short IDs ----------------------------------------------------------


def dmr_archive(gguf: Path) -> tuple[bytes, str]:
    """What ``docker model package --gguf`` streams to /models/load, built by hand."""
    data = gguf.read_bytes()
    layer = {
        "mediaType": "application/vnd.docker.ai.gguf.v3",
        "digest": sha256(data),
        "size": len(data),
        "annotations": {"org.cncf.model.filepath": gguf.name},
    }
    config = json.dumps(
        {
            "config": {"format": "gguf", "architecture": "llama", "context_size": 256},
            "descriptor": {"created": "2026-01-02T03:04:05Z"},
            "rootfs": {"type": "rootfs", "diff_ids": [layer["digest"]]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.docker.ai.model.config.v0.1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [layer],
        }
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, blob in (
            (f"blobs/sha256/{sha256(data)[7:]}", data),
            (f"blobs/sha256/{sha256(config)[7:]}", config),
            ("ignore-me/readme.txt", b"not a blob"),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return out.getvalue(), sha256(manifest)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_package_flow_load_then_tag_by_id(http: httpx.Client, tiny_gguf: Path) -> None:
    archive, model_id = dmr_archive(tiny_gguf)
    headers = {"Content-Type": "application/x-tar"}
    response = http.post("/models/load", content=archive, headers=headers)
    assert response.status_code == 200, response.text
    line = json.loads(response.text)
    assert line["type"] == "success" and line["message"] == "Model loaded successfully"
    # untagged: listed by DMR without tags, hidden from Ollama's list, reachable by ID
    (model,) = http.get("/models").json()
    assert model["id"] == model_id and "tags" not in model
    assert model["created"] == 1767323045
    assert http.get("/api/tags").json()["models"] == []
    assert http.get(f"/models/{model_id}").json()["id"] == model_id
    # what the CLI does next: tag the ID
    tagged = http.post(f"/models/{model_id}/tag", params={"repo": "ai/packaged", "tag": "v1"})
    assert tagged.status_code == 201, tagged.text
    (model,) = http.get("/models").json()
    assert model["tags"] == ["docker.io/ai/packaged:v1"]
    assert [m["name"] for m in http.get("/api/tags").json()["models"]] == [
        "docker.io/ai/packaged:v1"
    ]
    chat = {"model": "ai/packaged:v1", "messages": [{"role": "user", "content": "hi"}]}
    reply = http.post("/engines/v1/chat/completions", json=chat | {"max_tokens": 2})
    assert reply.status_code == 200, reply.text


def test_load_refuses_bad_archives_and_keeps_nothing(
    http: httpx.Client, tiny_gguf: Path, store_dir: Path
) -> None:
    archive, _ = dmr_archive(tiny_gguf)
    truncated = http.post("/models/load", content=archive[: len(archive) // 2])
    assert truncated.status_code == 400  # DMR: 500; a broken archive is the caller's fault
    assert truncated.text.startswith("error while loading model: ")
    not_tar = http.post("/models/load", content=b"hello" * 300)
    assert not_tar.status_code == 400
    assert http.get("/models").json() == []
    assert list((store_dir / "blobs").glob("sha256-*")) == []


def test_export_round_trip_purge_and_short_ids(http: httpx.Client, tiny: str) -> None:
    (model,) = http.get("/models").json()
    short = model["id"][7:19]  # what `docker model ls -q` prints
    for ref in (short, f"sha256:{short}", model["id"]):
        assert http.get(f"/models/{ref}").json()["id"] == model["id"]
    chat = {"model": short, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert http.post("/engines/v1/chat/completions", json=chat).status_code == 200
    exported = http.get(f"/models/{short}/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/x-tar"
    assert exported.headers["content-disposition"] == f'attachment; filename="{short}.tar"'
    with tarfile.open(fileobj=io.BytesIO(exported.content)) as tar:
        names = tar.getnames()
        manifest = tar.extractfile("manifest.json").read()  # type: ignore[union-attr]
    assert names[:2] == ["blobs", "blobs/sha256"] and names[-1] == "manifest.json"
    assert sha256(manifest) == model["id"]
    assert http.get("/models/ai/nothing/export").status_code == 404

    assert http.delete("/models/purge").status_code == 200
    assert http.get("/models").json() == [] and http.get("/api/tags").json()["models"] == []
    assert http.get("/engines/ps").json() == []

    loaded = http.post("/models/load", content=exported.content)
    assert loaded.status_code == 200, loaded.text
    (again,) = http.get("/models").json()
    assert again["id"] == model["id"]  # same bytes, same ID
    short_tag = http.post(f"/models/{short}/tag", params={"repo": "ai/back", "tag": "latest"})
    assert short_tag.status_code == 201
    removed = http.delete(f"/models/{short}").json()
    assert removed == [{"Untagged": "docker.io/ai/back:latest"}, {"Deleted": model["id"]}]


# -- version / logs / requests ------------------------------------------------------------------


def test_version(http: httpx.Client) -> None:
    response = http.get("/version")
    assert response.status_code == 200
    assert response.json() == {"version": modelrunner.__version__}


def test_logs_plain_no_engines_and_follow(
    http: httpx.Client, runner: LiveServer, tiny_gguf: Path
) -> None:
    archive, model_id = dmr_archive(tiny_gguf)
    assert http.post("/models/load", content=archive).status_code == 200
    logging.getLogger("modelrunner.engine.test").warning("engine line for the test")
    text = http.get("/logs").text
    assert re.search(
        rf"^\[\d{{4}}-\d\d-\d\dT[\d:.]+Z\] INFO .*: loaded model {model_id}$", text, re.M
    )
    assert "engine line for the test" in text
    assert "engine line for the test" not in http.get("/logs?no-engines=true").text
    assert http.get("/logs?follow=maybe").status_code == 400

    def late() -> None:
        time.sleep(0.5)
        logging.getLogger("modelrunner.test").warning("a line written later")

    threading.Thread(target=late).start()
    seen = ""
    with httpx.stream("GET", f"{runner.url}/logs?follow=1", timeout=10) as stream:
        for chunk in stream.iter_text():
            seen += chunk
            if "a line written later" in seen:
                break
    assert "loaded model" in seen and "a line written later" in seen


def test_requests_are_recorded(http: httpx.Client, runner: LiveServer, tiny: str) -> None:
    assert http.get("/engines/requests").json() == []
    chat = {"model": tiny, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    headers = {"User-Agent": "docker-model-cli/test", "X-Request-Origin": "ollama/completion"}
    assert http.post("/engines/v1/chat/completions", json=chat, headers=headers).status_code == 200
    streamed = http.post("/v1/chat/completions", json=chat | {"stream": True})
    assert streamed.status_code == 200
    assert (
        http.post("/engines/v1/chat/completions", json=chat | {"model": "ai/none"}).status_code
        == 404
    )
    (entry,) = [e for e in http.get("/engines/requests").json() if e["model"].startswith("sha256:")]
    model_id = http.get(f"/models/{tiny}").json()["id"]
    assert entry["model"] == model_id and entry["count"] == 2 and entry["config"] == {}
    first, second = entry["records"]
    assert first["id"].startswith(model_id + "_") and first["model"] == tiny
    assert first["method"] == "POST" and first["url"] == "/engines/v1/chat/completions"
    assert json.loads(first["request"]) == chat
    assert first["status_code"] == 200 and isinstance(first["timestamp"], int)
    assert first["user_agent"] == "docker-model-cli/test"
    assert first["origin"] == "ollama/completion"
    assert json.loads(first["response"])["object"] == "chat.completion"
    merged = json.loads(second["response"])  # the stream, merged into one completion
    assert merged["object"] == "chat.completion"
    assert merged["choices"][0]["message"]["role"] == "assistant"
    assert "error" not in second
    # a request for a model that does not exist is kept under the name it used
    (missing,) = http.get("/engines/requests", params={"model": "ai/none"}).json()
    assert missing["records"][0]["status_code"] == 404 and "error" in missing["records"][0]
    by_name = http.get("/engines/requests", params={"model": tiny}).json()
    assert by_name == [entry]

    events: list[str] = []
    url = f"{runner.url}/engines/requests?include_existing=true&model={tiny}"
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=10) as s:
        lines = s.iter_lines()
        for line in lines:
            events.append(line)
            if line.startswith("event: connected"):
                break
        http.post("/engines/v1/chat/completions", json=chat)
        for line in lines:
            events.append(line)
            if line.startswith("data: [") and "new_request" in events[-2]:
                break
    assert events.count("event: existing_request") == 2
    (new,) = json.loads(events[-1].removeprefix("data: "))
    assert new["count"] == 1 and new["model"] == tiny and new["records"][0]["status_code"] == 200


# -- push as a DMR artifact ------------------------------------------------------------------------


@pytest.mark.registry
def test_push_through_dmr_is_a_dmr_artifact(
    http: httpx.Client, tiny_gguf: Path, registry: Registry
) -> None:
    upload_and_create(http, tiny_gguf, "tiny", parameters={"num_ctx": 256}, license="MIT text")
    dmr_ref, ollama_ref = f"{registry.host}/ai/pushed:v1", f"{registry.host}/library/kept:v1"
    for ref in (dmr_ref, ollama_ref):
        repo, tag = ref.rsplit(":", 1)
        assert http.post("/models/tiny/tag", params={"repo": repo, "tag": tag}).status_code == 201
    pushed = http.post(f"/models/{dmr_ref}/push")
    assert pushed.status_code == 200
    assert json.loads(pushed.text.splitlines()[-1])["type"] == "success", pushed.text

    manifest = registry.manifest("ai/pushed", "v1").json()
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.ai.model.config.v0.1+json"
    kinds = [layer["mediaType"] for layer in manifest["layers"]]
    assert kinds == ["application/vnd.docker.ai.gguf.v3", "application/vnd.docker.ai.license"]
    gguf = manifest["layers"][0]
    assert gguf["digest"] == sha256(tiny_gguf.read_bytes())
    assert gguf["annotations"]["org.cncf.model.filepath"] == "model.gguf"
    metadata = json.loads(gguf["annotations"]["org.cncf.model.file.metadata+json"])
    assert metadata["size"] == tiny_gguf.stat().st_size
    with registry.client() as client:
        config = client.get(f"/v2/ai/pushed/blobs/{manifest['config']['digest']}").json()
    assert config["config"]["format"] == "gguf" and config["config"]["context_size"] == 256
    assert config["config"]["architecture"] == "llama"
    assert config["rootfs"] == {
        "type": "rootfs",
        "diff_ids": [x["digest"] for x in manifest["layers"]],
    }

    # `docker model inspect -r` reads it from the registry
    remote = http.get(f"/models/{dmr_ref}", params={"remote": "true"}).json()
    assert remote["id"] == sha256(registry.manifest("ai/pushed", "v1").content)
    assert "tags" not in remote and remote["config"]["context_size"] == 256
    assert remote["created"] > 1_600_000_000
    missing = http.get(f"/models/{registry.host}/ai/absent:v1", params={"remote": "true"})
    assert (missing.status_code, missing.text) == (404, "Model not found\n")

    # Ollama's push keeps Ollama's format
    kept = http.post("/api/push", json={"model": ollama_ref, "insecure": True, "stream": False})
    assert kept.status_code == 200, kept.text
    ollama_manifest = registry.manifest("library/kept", "v1").json()
    assert (
        ollama_manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    )
    assert "application/vnd.ollama.image.model" in [
        x["mediaType"] for x in ollama_manifest["layers"]
    ]

    # and the DMR artifact pulls back through DMR, as a model that runs
    assert http.delete(f"/models/{dmr_ref}").status_code == 200
    pulled = http.post("/models/create", json={"from": dmr_ref})
    assert json.loads(pulled.text.splitlines()[-1])["type"] == "success", pulled.text
    model = http.get(f"/models/{dmr_ref}").json()
    assert model["id"] == sha256(registry.manifest("ai/pushed", "v1").content)
    assert model["config"]["context_size"] == 256
    chat = {"model": dmr_ref, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert http.post("/engines/v1/chat/completions", json=chat).status_code == 200


# -- rerank / score ----------------------------------------------------------------------------------

RANK_PREFIXES = (
    "",
    "/v1",
    "/engines",
    "/engines/v1",
    "/engines/llama.cpp",
    "/engines/llama.cpp/v1",
)


@pytest.fixture
def reranker(http: httpx.Client, tmp_path: Path) -> str:
    path = write_tiny_reranker(tmp_path / "tiny-reranker.gguf")
    upload_and_create(http, path, "reranker")
    return "reranker"


def direct_scores(path: Path, texts: list[str]) -> list[float]:
    """The rank head's first output for each text, computed with llama-cpp-python directly."""
    llm = llama_cpp.Llama(model_path=str(path), embedding=True, n_ctx=512, verbose=False)
    try:
        return [float(llm.embed(t, normalize=False)[0]) for t in texts]
    finally:
        llm.close()


@pytest.mark.parametrize("prefix", RANK_PREFIXES)
def test_rerank_scores_with_the_rank_head(
    http: httpx.Client, reranker: str, tmp_path: Path, prefix: str
) -> None:
    docs = ["hello world", "the of a", "x"]
    body = {"model": reranker, "query": "hello", "documents": docs, "top_n": 2}
    response = http.post(f"{prefix}/rerank", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["model"] == reranker and data["object"] == "list"
    assert data["usage"]["prompt_tokens"] > 0
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"]
    expected = direct_scores(
        write_tiny_reranker(tmp_path / "same.gguf"), [f"hello{d}" for d in docs]
    )
    order = sorted(range(3), key=lambda i: -expected[i])[:2]
    assert [r["index"] for r in data["results"]] == order
    for result in data["results"]:
        assert 0 < result["relevance_score"] < 1  # softmax over the yes/no labels
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-4)


def test_rerank_tei_shape_template_and_errors(http: httpx.Client, tmp_path: Path) -> None:
    path = write_tiny_reranker(tmp_path / "t.gguf", template=RERANK_TEMPLATE)
    upload_and_create(http, path, "templated")
    body = {"model": "templated", "query": "hello", "texts": ["a", "b"], "return_text": True}
    items = http.post("/rerank", json=body).json()
    assert sorted(i["index"] for i in items) == [0, 1]
    assert all(set(i) == {"index", "score", "text"} for i in items)
    assert items[0]["score"] >= items[1]["score"]
    filled = [RERANK_TEMPLATE.format(query="hello", document=d).removeprefix("<s>") for d in "ab"]
    expected = direct_scores(path, filled)
    for item in items:
        assert item["score"] == pytest.approx(expected[item["index"]], abs=1e-4)
    # bad bodies
    upload_and_create(http, write_tiny_reranker(tmp_path / "n.gguf"), "also")
    assert http.post("/rerank", json={"model": "also", "query": "q"}).status_code == 400
    missing_query = http.post("/rerank", json={"model": "also", "documents": ["d"]})
    assert missing_query.json()["error"]["message"] == '"query" must be provided'
    assert (
        http.post("/rerank", json={"query": "q", "documents": ["d"]}).text == "model is required\n"
    )


def test_rerank_needs_a_reranker(http: httpx.Client, tiny: str) -> None:
    response = http.post("/rerank", json={"model": tiny, "query": "q", "documents": ["d"]})
    assert response.status_code == 501
    assert response.json()["error"]["type"] == "not_supported_error"


def test_score_vllm_shape(http: httpx.Client, reranker: str) -> None:
    body = {"model": reranker, "text_1": "hello", "text_2": ["hello world", "x"]}
    data = http.post("/engines/score", json=body).json()
    assert data["object"] == "list" and data["id"].startswith("score-")
    assert [(d["index"], d["object"]) for d in data["data"]] == [(0, "score"), (1, "score")]
    ranked = http.post(
        "/rerank", json={"model": reranker, "query": "hello", "documents": ["hello world", "x"]}
    ).json()["results"]
    by_index = {r["index"]: r["relevance_score"] for r in ranked}
    assert [d["score"] for d in data["data"]] == pytest.approx([by_index[0], by_index[1]])
    pairwise = {"model": reranker, "text_1": ["hello", "x"], "text_2": ["hello world", "x"]}
    assert len(http.post("/score", json=pairwise).json()["data"]) == 2
    bad = http.post("/score", json={"model": reranker, "text_1": ["a", "b"], "text_2": ["c"]})
    assert bad.status_code == 400


def test_repackage_with_a_context_size(http: httpx.Client, tiny_gguf: Path) -> None:
    archive, model_id = dmr_archive(tiny_gguf)
    assert http.post("/models/load", content=archive).status_code == 200
    body = {"target": "ai/small-ctx:v1", "context_size": 300}
    response = http.post(f"/models/{model_id[7:19]}/repackage", json=body)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "message": 'Model repackaged successfully as "ai/small-ctx:v1"',
        "source": model_id[7:19],
        "target": "ai/small-ctx:v1",
    }
    new = http.get("/models/ai/small-ctx:v1").json()
    assert new["id"] != model_id and new["config"]["context_size"] == 300
    assert http.get(f"/models/{model_id}").json()["config"]["context_size"] == 256  # unchanged
    chat = {"model": "ai/small-ctx:v1", "messages": [{"role": "user", "content": "hi"}]}
    assert (
        http.post("/engines/v1/chat/completions", json=chat | {"max_tokens": 1}).status_code == 200
    )
    assert http.get("/engines/ps").json()[0]["model_name"] == "docker.io/ai/small-ctx:v1"
    # an Ollama model is repackaged as a DMR one
    upload_and_create(http, tiny_gguf, "ollama-made")
    made = http.post(
        "/models/ollama-made/repackage", json={"target": "ai/conv", "context_size": 128}
    )
    assert made.status_code == 201
    assert http.get("/models/ai/conv").json()["config"]["context_size"] == 128
    assert http.post("/models/ai/none/repackage", json={"target": "x"}).status_code == 404
    assert http.post("/models/ollama-made/repackage", json={}).text == "target is required\n"


def test_install_and_uninstall_backend(http: httpx.Client) -> None:
    assert http.post("/engines/install-backend", json={"backend": "llama.cpp"}).status_code == 200
    vllm = http.post("/engines/install-backend", json={"backend": "vllm", "version": "latest"})
    assert (vllm.status_code, vllm.text) == (404, "backend not found\n")
    empty = http.post("/engines/uninstall-backend", json={})
    assert (empty.status_code, empty.text) == (400, "invalid request: backend is required\n")
    built_in = http.post("/engines/uninstall-backend", json={"backend": "llama.cpp"})
    assert built_in.status_code == 409 and "built into this runner" in built_in.text
