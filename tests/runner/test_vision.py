"""Image input over real HTTP: a tiny text model plus a tiny CLIP projector (random weights),
imported the Ollama way (both GGUFs in ``files``), asked with the official ``ollama`` and
``openai`` clients; bad images and text-only models get each dialect's error."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx
import numpy as np
import ollama
import openai
import pytest

from modelrunner.app import create_app
from modelrunner.core.vision import InvalidBase64, decode_base64, place_markers, tag_messages
from modelrunner.engine.vision import ImageSpan, Media
from modelrunner.errors import InvalidRequest
from modelrunner.settings import Settings
from tests.conftest import sha256_file, upload_and_create
from tests.support.server import LiveServer
from tests.support.tiny_model import N_EMBD as TEXT_EMBD
from tests.support.tiny_vision import IMAGE_TOKENS, png, write_tiny_projector

GREEDY = {"temperature": 0, "num_predict": 6, "seed": 1}
RED = png(32, 32, (255, 0, 0))
NOISE = png(48, 40, seed=7)


@pytest.fixture(scope="module", params=["batched", "simple"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> Iterator[LiveServer]:
    """A runner per engine: ``seer`` (text model + projector) and ``blind`` (text only)."""
    root = tmp_path_factory.mktemp("vision")
    projector = write_tiny_projector(root / "mmproj.gguf")
    settings = Settings(models=root / "models", listen=[], prune=False, engine=request.param)
    live = LiveServer(create_app(settings))
    live.start()
    try:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            upload_and_create(client, tiny_gguf, "blind")
            digest = sha256_file(projector)
            ok = client.post(f"/api/blobs/{digest}", content=projector.read_bytes())
            assert ok.status_code in (200, 201)
            upload_and_create(client, tiny_gguf, "seer", files={
                tiny_gguf.name: sha256_file(tiny_gguf), projector.name: digest})  # fmt: skip
        yield live
    finally:
        live.stop()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture
def ask(server: LiveServer) -> ollama.Client:
    return ollama.Client(host=server.url)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_projector_layer_makes_a_vision_model(ask: ollama.Client, http: httpx.Client) -> None:
    shown = ask.show("seer")
    assert "vision" in (shown.capabilities or [])
    info = http.post("/api/show", json={"model": "seer"}).json()["projector_info"]
    assert info["general.architecture"] == "clip" and info["clip.projector_type"] == "mlp"
    assert info["clip.vision.projection_dim"] == TEXT_EMBD
    assert "vision" not in (ask.show("blind").capabilities or [])
    # A model made from it keeps the projector layer.
    ask.create(model="seer-terse", from_="seer", system="Answer briefly.")
    assert "vision" in (ask.show("seer-terse").capabilities or [])


def test_an_image_adds_its_tokens_to_the_prompt(ask: ollama.Client) -> None:
    text = ask.generate(model="seer", prompt="hello world", options=GREEDY)
    seen = ask.generate(model="seer", prompt="hello world", images=[RED], options=GREEDY)
    two = ask.generate(model="seer", prompt="hello world", images=[RED, NOISE], options=GREEDY)
    base = text.prompt_eval_count or 0
    assert seen.prompt_eval_count == base + IMAGE_TOKENS
    assert two.prompt_eval_count == base + 2 * IMAGE_TOKENS
    # The returned context holds text tokens only: it can be sent back.
    assert seen.context and all(t >= 0 for t in seen.context)
    more = ask.generate(model="seer", prompt="again", context=seen.context, options=GREEDY)
    assert more.done


def test_the_output_depends_on_the_image(ask: ollama.Client) -> None:
    def answer(image: bytes) -> str:
        return str(ask.generate(model="seer", prompt="hi", images=[image], options=GREEDY).response)

    red, noise = answer(RED), answer(NOISE)
    # An image longer than the batch is decoded in parts (one per step on the batched engine).
    small = ask.generate(
        model="seer", prompt="hi", images=[RED], options={**GREEDY, "num_batch": 8}
    )
    assert small.response == red
    assert red == answer(RED)  # greedy: the same image gives the same answer (cache or not)
    assert red != noise
    assert answer(png(32, 32, (0, 0, 255))) != red


def test_chat_images_sit_in_their_messages(ask: ollama.Client) -> None:
    plain = ask.chat(model="seer", messages=[{"role": "user", "content": "hi"}], options=GREEDY)
    reply = ask.chat(
        model="seer",
        messages=[{"role": "user", "content": "hi", "images": [NOISE]}],
        options=GREEDY,
    )
    # The text around the image is tokenized in two parts (as llama-server does), which may
    # cost a token or two at each boundary.
    grown = (reply.prompt_eval_count or 0) - (plain.prompt_eval_count or 0)
    assert IMAGE_TOKENS <= grown <= IMAGE_TOKENS + 4
    assert reply.message.content != plain.message.content


def test_openai_image_url_data_urls(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")

    def ask(*parts: Any) -> Any:
        content = [{"type": "text", "text": "hi"}, *parts]
        return client.chat.completions.create(
            model="seer", messages=[{"role": "user", "content": content}],
            temperature=0, max_tokens=6, seed=1,
        )  # fmt: skip

    url = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(NOISE)}"}}
    text, seen, again = ask(), ask(url), ask(url)
    # The repeated image is reused from the prompt cache (its placeholder tokens match): the
    # whole prompt but the last token (batched engine) or all of it (simple engine).
    assert again.usage and again.usage.prompt_tokens_details
    cached = again.usage.prompt_tokens_details.cached_tokens or 0
    assert cached >= again.usage.prompt_tokens - 1
    assert again.choices[0].message.content == seen.choices[0].message.content
    assert seen.usage and text.usage
    grown = seen.usage.prompt_tokens - text.usage.prompt_tokens
    assert IMAGE_TOKENS <= grown <= IMAGE_TOKENS + 4
    assert seen.choices[0].message.content != text.choices[0].message.content


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not base64!", "illegal base64 data at input byte 3"),
        ("abcde", "illegal base64 data at input byte 4"),
        (b64(b"plain text, not an image"), "Failed to load image or audio file"),
        (b64(RED[:40]), "Failed to load image or audio file"),  # truncated PNG
    ],
)
def test_bad_images_are_ollama_400s(http: httpx.Client, data: str, message: str) -> None:
    for path, body in (
        ("/api/generate", {"prompt": "hi", "images": [data]}),
        ("/api/chat", {"messages": [{"role": "user", "content": "hi", "images": [data]}]}),
    ):
        response = http.post(path, json={"model": "seer", "stream": False, **body})
        assert response.status_code == 400, response.text
        assert response.json() == {"error": message}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not base64!", "invalid image input"),
        (b64(b"GIF89a but not really"), "Failed to load image or audio file"),
    ],
)
def test_bad_images_are_openai_400s(http: httpx.Client, data: str, message: str) -> None:
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}
    body = {"model": "seer", "messages": [{"role": "user", "content": [part]}]}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == message


def test_a_model_without_projector_refuses_images(http: httpx.Client) -> None:
    image = b64(RED)
    response = http.post(
        "/api/generate", json={"model": "blind", "prompt": "hi", "images": [image]}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "Multimodal data provided, but model does not support multimodal requests."
    }
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}
    body = {"model": "blind", "messages": [{"role": "user", "content": [part]}]}
    assert http.post("/v1/chat/completions", json=body).status_code == 400
    dmr = http.post("/engines/v1/chat/completions", json=body)
    assert dmr.status_code == 500  # llama-server's answer without --mmproj
    assert "you may need to provide the mmproj" in dmr.json()["error"]["message"]


def test_debug_render_shows_ollama_image_tags(http: httpx.Client) -> None:
    body = {"model": "seer", "prompt": "hi", "images": [b64(RED)], "_debug_render_only": True}
    rendered = http.post("/api/generate", json=body).json()
    assert "[img-0]hi" in rendered["_debug_info"]["rendered_template"]


# -- pure helpers ------------------------------------------------------------------------------


def test_base64_follows_go() -> None:
    assert decode_base64(b64(b"abc") + "\n") == b"abc"
    for text, offset in (("ab=c", 2), ("a b", 1), ("abc", 0), ("YWJj====", 4)):
        with pytest.raises(InvalidBase64) as caught:
            decode_base64(text)
        assert caught.value.offset == offset, text


def test_image_spans() -> None:
    media = Media([ImageSpan(2, np.zeros((4, 8), np.float32), non_causal=True)])
    assert media.text_end(0, 10) == 2 and media.text_end(6, 10) == 10
    assert media.span_at(2) is media.span_at(5) is media.spans[0] and media.span_at(6) is None
    assert media.text_end(3, 10) == 3  # inside the image: no text to take
    assert media.align(4) == 2 and media.align(6) == 6  # a cached prefix never cuts an image
    assert media.shifted(3).spans[0].start == 5
    media.check_batch(4)
    with pytest.raises(InvalidRequest):
        media.check_batch(3)  # non-causal attention needs the whole image in one micro-batch


def test_tags_and_markers() -> None:
    tagged = tag_messages([
        {"role": "user", "content": "a", "images": ["x", "y"]},
        {"role": "user", "content": "b [img] c", "images": ["z"]},
    ])  # fmt: skip
    assert [m["content"] for m in tagged] == ["[img-0][img-1]a", "b [img-2] c"]
    text, order = place_markers("[img-1] then [img-0] and [img-5]", [b"0", b"1"], "<M>")
    assert text == "<M> then <M> and [img-5]" and order == [b"1", b"0"]


def test_concurrent_image_requests_match_sequential_ones(ask: ollama.Client) -> None:
    """Several slots prefilling images and text in the same steps (batched engine) answer as
    one request at a time does."""
    images = [RED, NOISE, png(32, 32, (0, 255, 0)), png(20, 36, seed=2)]

    def answer(image: bytes) -> str:
        reply = ask.generate(model="seer", prompt="hey", images=[image], options=GREEDY)
        return str(reply.response)

    alone = [answer(image) for image in images]
    with ThreadPoolExecutor(len(images)) as pool:
        together = list(pool.map(answer, images))
    assert together == alone


def test_anthropic_image_blocks(server: LiveServer) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    block: Any = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": b64(NOISE)},
    }

    def ask(*blocks: Any) -> Any:
        content = [*blocks, {"type": "text", "text": "hi"}]
        return client.messages.create(
            model="seer", max_tokens=6, messages=[{"role": "user", "content": content}],
            extra_body={"temperature": 0},  # the SDK no longer has the parameter
        )  # fmt: skip

    def prompt_tokens(reply: Any) -> int:  # Anthropic counts cache reads apart
        return int(reply.usage.input_tokens + (reply.usage.cache_read_input_tokens or 0))

    text, seen = ask(), ask(block)
    assert IMAGE_TOKENS <= prompt_tokens(seen) - prompt_tokens(text) <= IMAGE_TOKENS + 4
    counted = client.messages.count_tokens(
        model="seer",
        messages=[{"role": "user", "content": [block, {"type": "text", "text": "hi"}]}],
    )
    assert counted.input_tokens == prompt_tokens(seen)
    assert seen.content != text.content
    bad = {**block, "source": {**block["source"], "data": b64(b"not an image")}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(bad)
    body: Any = caught.value.body
    assert body["type"] == "error"
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": "Failed to load image or audio file",
    }


def test_dmr_chat_completions_see_images(http: httpx.Client) -> None:
    def ask(*parts: Any) -> Any:
        content = [{"type": "text", "text": "hi"}, *parts]
        body = {"model": "seer", "messages": [{"role": "user", "content": content}],
                "temperature": 0, "max_tokens": 6, "seed": 1}  # fmt: skip
        response = http.post("/engines/llama.cpp/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    url = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(RED)}"}}
    grown = ask(url)["usage"]["prompt_tokens"] - ask()["usage"]["prompt_tokens"]
    assert IMAGE_TOKENS <= grown <= IMAGE_TOKENS + 4


def test_ps_counts_the_projector(ask: ollama.Client, tiny_gguf: Path) -> None:
    """``seer`` is ``blind``'s weights plus a projector: loaded alike (same context and slots,
    so the same KV cache), /api/ps sizes them apart by exactly the projector."""
    ask.generate(model="seer", prompt="hi", options={"num_predict": 1})
    ask.generate(model="blind", prompt="hi", options={"num_predict": 1})
    loaded = {m.model: m.size for m in ask.ps().models}
    projector = write_tiny_projector(tiny_gguf.parent / "ps-mmproj.gguf")
    assert loaded["seer:latest"] - loaded["blind:latest"] == projector.stat().st_size
    assert loaded["blind:latest"] > tiny_gguf.stat().st_size  # and the KV cache counts too


def test_a_dmr_artifact_with_an_mmproj_layer_sees(
    server: LiveServer, http: httpx.Client, tiny_gguf: Path
) -> None:
    """``docker model package --gguf m.gguf --mmproj p.gguf`` loaded through /models/load."""
    projector = write_tiny_projector(tiny_gguf.parent / "dmr-mmproj.gguf")
    blobs = {
        "application/vnd.docker.ai.gguf.v3": tiny_gguf.read_bytes(),
        "application/vnd.docker.ai.mmproj": projector.read_bytes(),
    }
    layers = [
        {"mediaType": kind, "digest": _sha256(data), "size": len(data)}
        for kind, data in blobs.items()
    ]
    config = json.dumps({
        "config": {"format": "gguf", "architecture": "llama"},
        "rootfs": {"type": "rootfs", "diff_ids": [layer["digest"] for layer in layers]},
    }).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.docker.ai.model.config.v0.1+json",
                   "digest": _sha256(config), "size": len(config)},
        "layers": layers,
    }).encode()  # fmt: skip
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in [
            *((f"blobs/sha256/{_sha256(d)[7:]}", d) for d in [*blobs.values(), config]),
            ("manifest.json", manifest),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    headers = {"Content-Type": "application/x-tar"}
    loaded = http.post("/models/load", content=archive.getvalue(), headers=headers)
    assert loaded.status_code == 200, loaded.text
    model_id = _sha256(manifest)
    tagged = http.post(f"/models/{model_id}/tag", params={"repo": "ai/seer", "tag": "v1"})
    assert tagged.status_code == 201, tagged.text
    url = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(NOISE)}"}}

    def prompt_tokens(*parts: Any) -> int:
        content = [{"type": "text", "text": "hi"}, *parts]
        body = {"model": "ai/seer:v1", "messages": [{"role": "user", "content": content}],
                "max_tokens": 2}  # fmt: skip
        reply = http.post("/engines/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        return int(reply.json()["usage"]["prompt_tokens"])

    assert IMAGE_TOKENS <= prompt_tokens(url) - prompt_tokens() <= IMAGE_TOKENS + 4


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
