"""Ollama fidelity: requests as the real ``ollama`` CLI (Go client, 0.33) sends them, answers as
Ollama's server gives them (server/routes.go, server/images.go, server/prompt.go, template/).

The Go client has no ``omitempty`` on ``system``, ``template`` and ``suffix`` (api/types.go), so
every ``ollama show`` and ``ollama run`` sends them as ``""``: empty means "not given". Prompts are
checked with ``_debug_render_only``, which Ollama answers with the rendered prompt in
``_debug_info.rendered_template`` without running the model.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import ollama
import pytest

from modelrunner.store.modelfile import parse_modelfile
from tests.conftest import sha256_file, upload_and_create
from tests.support.tiny_vision import png, write_tiny_projector

if TYPE_CHECKING:
    from tests.support.registry import Registry

# A .Messages template that shows everything it is given.
TEMPLATE = "{{ .System }}|{{ range .Messages }}{{ .Role }}:{{ .Content }};{{ end }}"
SYSTEM = "Be terse."
GO_SHOW = {"system": "", "template": "", "verbose": False, "options": None}
GO_GENERATE = {"suffix": "", "system": "", "template": "", "options": None}
CHATML = "<|im_start|>{role}\n{content}<|im_end|>\n"
BOS = 1  # the tiny model's <s>


def persona(http: httpx.Client, tiny_gguf: Path, **extra: Any) -> None:
    upload_and_create(http, tiny_gguf, "persona", template=TEMPLATE, system=SYSTEM, **extra)


def render(http: httpx.Client, path: str, body: dict[str, Any]) -> str:
    response = http.post(path, json={"_debug_render_only": True, **body})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["done"] is False and "eval_count" not in data  # the model did not run
    rendered: str = data["_debug_info"]["rendered_template"]
    return rendered


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


# -- 1. empty system/template are "not given" -------------------------------------------------


def test_show_ignores_the_empty_fields_the_go_client_sends(
    http: httpx.Client, tiny_gguf: Path
) -> None:
    persona(http, tiny_gguf)
    info = http.post("/api/show", json={"model": "persona", **GO_SHOW}).json()
    assert info["system"] == SYSTEM
    assert info["template"] == TEMPLATE
    rebuilt = parse_modelfile(info["modelfile"])  # what `ollama show --modelfile` prints
    assert (rebuilt.template, rebuilt.system) == (TEMPLATE, SYSTEM)
    # A given system overlays the answer; the template field is deprecated and ignored.
    overlaid = http.post(
        "/api/show", json={"model": "persona", **GO_SHOW, "system": "Be kind.", "template": "X"}
    ).json()
    assert (overlaid["system"], overlaid["template"]) == ("Be kind.", TEMPLATE)


def test_generate_keeps_the_models_template_and_system(http: httpx.Client, tiny_gguf: Path) -> None:
    persona(http, tiny_gguf)
    body = {"model": "persona", "prompt": "hi", **GO_GENERATE}
    assert render(http, "/api/generate", body) == f"{SYSTEM}|system:{SYSTEM};user:hi;"
    given = render(http, "/api/generate", body | {"system": "Other."})
    assert given == "Other.|system:Other.;user:hi;"
    assert render(http, "/api/generate", body | {"template": "[{{ .Prompt }}]"}) == "[hi]"
    # And a real generation sees the same prompt: more prompt tokens than the bare text.
    bare = {"model": "persona", "prompt": "hi", "raw": True, "stream": False}
    raw = http.post("/api/generate", json=bare | {"options": {"num_predict": 1}}).json()
    full = http.post(
        "/api/generate", json=body | {"stream": False, "options": {"num_predict": 1}}
    ).json()
    assert full["prompt_eval_count"] > raw["prompt_eval_count"] + len(SYSTEM)


def test_create_treats_empty_fields_as_inherited(http: httpx.Client, tiny_gguf: Path) -> None:
    persona(http, tiny_gguf, messages=[{"role": "user", "content": "q1"}])
    body = {"model": "child", "from": "persona", "template": "", "system": "", "messages": [],
            "parameters": {}, "stream": False}  # fmt: skip
    assert http.post("/api/create", json=body).status_code == 200
    info = http.post("/api/show", json={"model": "child"}).json()
    assert (info["template"], info["system"]) == (TEMPLATE, SYSTEM)
    assert info["messages"] == [{"role": "user", "content": "q1"}]


# -- 2. MESSAGE history and context in /api/generate ------------------------------------------


def test_generate_prepends_the_modelfile_messages_unless_context_is_given(
    http: httpx.Client, tiny_gguf: Path
) -> None:
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    persona(http, tiny_gguf, messages=history)
    body = {"model": "persona", "prompt": "hi", **GO_GENERATE}
    expected = f"{SYSTEM}|system:{SYSTEM};user:q1;assistant:a1;user:hi;"
    assert render(http, "/api/generate", body) == expected
    continued = render(http, "/api/generate", body | {"context": [68]})
    assert "q1" not in continued and continued.endswith(f"{SYSTEM}|system:{SYSTEM};user:hi;")


def test_context_has_no_bos_and_continuations_add_none(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(http, tiny_gguf, "tiny")
    options = {"num_predict": 3, "temperature": 0, "seed": 1}
    first = http.post(
        "/api/generate",
        json={"model": "tiny", "prompt": "hello", "stream": False, "options": options},
    ).json()
    context = first["context"]
    assert context and context[0] != BOS
    # Ollama returns the tokens of prompt + response; the model gets one BOS in front.
    assert first["prompt_eval_count"] == len(context) - first["eval_count"] + 1
    second = http.post(
        "/api/generate",
        json={"model": "tiny", "prompt": " world", "context": context, "stream": False,
              "options": options},
    ).json()  # fmt: skip
    assert second["context"][: len(context)] == context
    assert second["context"][len(context)] != BOS
    assert second["prompt_eval_count"] == len(second["context"]) - second["eval_count"] + 1


# -- 3. models without a template; _debug_render_only; roles ----------------------------------


def test_model_without_template_renders_as_ollama_does(http: httpx.Client, tiny_gguf: Path) -> None:
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    upload_and_create(http, tiny_gguf, "plain", system="S", messages=history)
    info = http.post("/api/show", json={"model": "plain"}).json()
    assert info["template"] == "{{ .Prompt }}"
    # /api/generate: Ollama's default template, {{ .Prompt }}, one turn at a time; no system.
    body = {"model": "plain", "prompt": "hi", **GO_GENERATE}
    assert render(http, "/api/generate", body) == "q1a1hi"
    # /api/chat: no chat template in the GGUF, so llama-server's fallback, ChatML; every role,
    # unknown ones included, is kept.
    messages = [{"role": "narrator", "content": "n"}, {"role": "user", "content": "hi"}]
    chat = render(http, "/api/chat", {"model": "plain", "messages": messages})
    turns = [("system", "S"), ("user", "q1"), ("assistant", "a1"), ("narrator", "n"),
             ("user", "hi")]  # fmt: skip
    expected = "".join(CHATML.format(role=r, content=c) for r, c in turns)
    assert chat == expected + "<|im_start|>assistant\n"


def test_debug_render_only_answers_without_running_the_model(
    http: httpx.Client, tiny_gguf: Path
) -> None:
    persona(http, tiny_gguf)
    generated = http.post(
        "/api/generate", json={"model": "persona", "prompt": "hi", "_debug_render_only": True}
    )
    assert generated.headers["content-type"].startswith("application/json")
    data = generated.json()
    assert set(data) == {"model", "created_at", "response", "done", "_debug_info"}
    assert data["_debug_info"] == {"rendered_template": f"{SYSTEM}|system:{SYSTEM};user:hi;"}
    messages = [{"role": "Narrator", "content": "n"}, {"role": "user", "content": "hi"}]
    chat = http.post(
        "/api/chat",
        json={"model": "persona", "messages": messages, "_debug_render_only": True},
    ).json()
    assert chat["message"] == {"role": "", "content": ""} and chat["done"] is False
    rendered = chat["_debug_info"]["rendered_template"]
    assert rendered == f"{SYSTEM}|system:{SYSTEM};narrator:n;user:hi;"
    assert http.get("/api/ps").json()["models"], "the model is loaded, as Ollama loads it"


def test_debug_render_only_counts_images(http: httpx.Client, tiny_gguf: Path) -> None:
    projector = write_tiny_projector(tiny_gguf.parent / "fidelity-mmproj.gguf")
    digest = sha256_file(projector)
    assert http.post(f"/api/blobs/{digest}", content=projector.read_bytes()).status_code < 300
    upload_and_create(http, tiny_gguf, "seer", files={
        tiny_gguf.name: sha256_file(tiny_gguf), projector.name: digest})  # fmt: skip
    image = base64.b64encode(png(8, 8, (255, 0, 0))).decode()
    body = {"model": "seer", "prompt": "hi", "images": [image, image], "_debug_render_only": True}
    info = http.post("/api/generate", json=body).json()["_debug_info"]
    assert info == {"rendered_template": "[img-0][img-1]hi", "image_count": 2}


# -- 6. /api/tags details and /api/show tensors ------------------------------------------------


def test_tags_carry_capabilities_and_lengths(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(http, tiny_gguf, "tiny")
    (entry,) = http.get("/api/tags").json()["models"]
    assert entry["capabilities"] == ["completion"]
    assert entry["details"]["context_length"] == 512
    assert entry["details"]["embedding_length"] == 64
    listed = ollama.Client(host=str(http.base_url)).list().models[0]
    assert listed.details is not None and listed.details.family == "llama"


def test_show_always_lists_tensors(http: httpx.Client, tiny_gguf: Path) -> None:
    upload_and_create(http, tiny_gguf, "tiny")
    for verbose in (False, True):
        info = http.post("/api/show", json={"model": "tiny", "verbose": verbose}).json()
        tensors = info["tensors"]
        assert {"name": "output_norm.weight", "type": "F32", "shape": [64]} in tensors
        assert {"name": "token_embd.weight", "type": "F32", "shape": [64, 267]} in tensors
        assert all(set(t) == {"name", "type", "shape"} for t in tensors)


# -- 5. pull/push errors: 200 + error line when streaming, an error status otherwise -------------


def test_push_of_a_missing_model_reports_as_ollama_does(http: httpx.Client) -> None:
    streamed = http.post("/api/push", json={"model": "not-here"})
    assert streamed.status_code == 200
    lines = ndjson(streamed)
    assert lines == [{"status": "retrieving manifest"}, {"status": "couldn't retrieve manifest"},
                     {"error": 'model "not-here" not found'}]  # fmt: skip
    whole = http.post("/api/push", json={"model": "not-here", "stream": False})
    assert (whole.status_code, whole.json()) == (404, {"error": 'model "not-here" not found'})
    bad = http.post("/api/pull", json={"model": "a/b/c/d/e"})  # a bad request is answered at once
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid model name"})


@pytest.mark.registry
def test_pull_errors_stream_200_with_an_error_line(
    make_runner: Any, registry: Registry, tiny_gguf: Path
) -> None:
    server = make_runner(insecure_registries=[registry.host])
    name = f"{registry.host}/nothing/here:v1"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        streamed = http.post("/api/pull", json={"model": name})
        assert streamed.status_code == 200
        lines = ndjson(streamed)
        assert lines == [{"status": "pulling manifest"},
                         {"error": "pull model manifest: file does not exist"}]  # fmt: skip
        whole = http.post("/api/pull", json={"model": name, "stream": False})
        assert whole.status_code == 404
        assert whole.json() == {"error": "pull model manifest: file does not exist"}
        client = ollama.Client(host=server.url)
        with pytest.raises(ollama.ResponseError, match="file does not exist"):
            list(client.pull(name, stream=True))
        # DMR keeps its own semantics: a 404 with its plain-text message.
        dmr = http.post("/models/create", json={"from": name})
        assert (dmr.status_code, dmr.text) == (404, "Model not found\n")


# -- 4. /api/create pulls a FROM model that is not local ---------------------------------------


@pytest.mark.registry
def test_create_pulls_a_from_model_that_is_not_local(
    make_runner: Any, registry: Registry, tiny_gguf: Path
) -> None:
    server = make_runner(insecure_registries=[registry.host])
    remote = f"{registry.host}/fidelity/tiny:v1"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        upload_and_create(http, tiny_gguf, remote)
        assert http.post("/api/push", json={"model": remote, "stream": False}).status_code == 200
        assert http.request("DELETE", "/api/delete", json={"model": remote}).status_code == 200
        response = http.post(
            "/api/create", json={"model": "derived", "from": remote, "system": "x"}
        )
        assert response.status_code == 200
        steps = [line.get("status") for line in ndjson(response)]
        assert steps[0] == "pulling manifest" and steps[-1] == "success"
        assert any(s and s.startswith("pulling ") and s != "pulling manifest" for s in steps)
        names = {m["name"] for m in http.get("/api/tags").json()["models"]}
        assert {"derived:latest", remote} <= names
        assert http.post("/api/show", json={"model": "derived"}).json()["system"] == "x"
        absent = {"model": "other", "from": f"{registry.host}/fidelity/none:v1"}
        streamed = ndjson(http.post("/api/create", json=absent))
        error = "pull model manifest: file does not exist"
        assert streamed == [{"status": "pulling manifest"}, {"error": error}]
        whole = http.post("/api/create", json=absent | {"stream": False})
        assert (whole.status_code, whole.json()) == (404, {"error": error})
        assert "other:latest" not in {m["name"] for m in http.get("/api/tags").json()["models"]}


@pytest.mark.parametrize("context", [[1, 10**9], [1, -5], [2**40]])
def test_a_context_of_foreign_token_ids_is_a_clear_400(
    http: httpx.Client, tiny_gguf: Path, context: list[int]
) -> None:
    """Token ids outside the vocabulary never reach llama.cpp (they made a 500 before)."""
    upload_and_create(http, tiny_gguf, "tiny")
    body = {"model": "tiny", "prompt": "x", "context": context, "stream": False,
            "options": {"num_predict": 2}}  # fmt: skip
    response = http.post("/api/generate", json=body)
    assert response.status_code == 400, response.text
    assert "not a token id" in response.json()["error"]
