"""Token counting at the gateway (pure): the answers a runner gave in each dialect, recorded in
recorded_answers.json (embedding vectors shortened), fed to the meter whole and in pieces split
anywhere, and the fallbacks for streams that report no usage or are cut off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from modelrunner.gateway.access import Access, Refusal
from modelrunner.gateway.settings import GatewaySettings
from modelrunner.gateway.usage import Meter, Usage, dialect_of, meter_for

RECORDED: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "recorded_answers.json").read_text()
)


def metered(path: str, content_type: str, pieces: list[bytes]) -> Usage:
    meter = meter_for(path, 200, {"content-type": content_type})
    assert meter is not None
    for piece in pieces:
        meter.feed(piece)
    return meter.usage()


def split(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("name", sorted(RECORDED))
@pytest.mark.parametrize("size", [1, 7, 100, 1 << 20])
def test_recorded_answers_of_every_dialect_report_their_tokens(name: str, size: int) -> None:
    answer = RECORDED[name]
    body = answer["body"].encode()
    usage = metered(answer["path"], answer["content_type"], split(body, size))
    assert usage == Usage(answer["prompt"], answer["generated"]), name


def test_the_recordings_cover_every_dialect_and_framing() -> None:
    seen = {(dialect_of(a["path"]), a["content_type"].split(";")[0]) for a in RECORDED.values()}
    for dialect in ("ollama", "openai", "responses", "anthropic"):
        assert (dialect, "application/json") in seen
    assert ("ollama", "application/x-ndjson") in seen
    assert {d for d, kind in seen if kind == "text/event-stream"} == {
        "openai",
        "responses",
        "anthropic",
    }


def test_reported_usage_wins_over_counted_chunks() -> None:
    """With include_usage the last chunk's usage is the count, not the content chunks seen."""
    answer = RECORDED["openai_chat_stream_usage"]
    meter = meter_for(answer["path"], 200, {"content-type": answer["content_type"]})
    assert meter is not None
    meter.feed(answer["body"].encode())
    assert meter.deltas == 2 and meter.usage() == Usage(56, 3)


def cut(name: str, marker: str) -> bytes:
    """A recorded stream up to (not including) the line that contains ``marker``."""
    body: str = RECORDED[name]["body"]
    return body[: body.index(marker)].encode()


def test_a_stream_cut_off_is_charged_what_was_sent() -> None:
    ndjson = "application/x-ndjson"
    assert metered("/api/chat", ndjson, [cut("ollama_chat", '"done":true')]) == Usage(0, 3)
    sse = "text/event-stream"
    anthropic = cut("anthropic_stream", "event: message_delta")
    assert metered("/v1/messages", sse, [anthropic]) == Usage(56, 3)  # prompt from message_start
    responses = cut("responses_stream", "event: response.incomplete")
    assert metered("/v1/responses", sse, [responses]) == Usage(0, 2)


def test_crlf_lines_and_events_without_names() -> None:
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "a"}},
        {"type": "message_delta", "usage": {"output_tokens": 4}},
    ]
    body = "".join(f"data: {json.dumps(e)}\r\n\r\n" for e in events).encode()
    assert metered("/v1/messages", "text/event-stream", split(body, 5)) == Usage(9, 4)


def test_a_long_body_is_read_from_its_tail() -> None:
    """Many embeddings (too long to parse quickly): the counts are still found, and a key written
    inside a string (escaped quotes) is not taken for one."""
    vectors = [[0.123456789] * 1024 for _ in range(400)]
    answer = {"model": "m", "note": '"prompt_eval_count": 999', "embeddings": vectors}
    body = json.dumps(answer | {"prompt_eval_count": 812}).encode()
    assert len(body) > 1024 * 1024
    assert metered("/api/embed", "application/json", split(body, 65536)) == Usage(812, 0)
    tail_note = body[:-1] + b',"x":"\\"eval_count\\": 77"}'
    assert metered("/api/generate", "application/json", [tail_note]) == Usage(812, 0)


def test_long_final_lines_and_events_are_read_from_their_tail() -> None:
    """Ollama's last line with a long ``context``; a Responses terminal event with a long text."""
    done = {"done": True, "context": list(range(5000)), "prompt_eval_count": 7, "eval_count": 3}
    lines = [b'{"response":"a","done":false}\n', json.dumps(done).encode() + b"\n"]
    assert len(lines[1]) > 8192
    assert metered("/api/generate", "application/x-ndjson", lines) == Usage(7, 3)
    body = RECORDED["responses_stream"]["body"].replace(
        '"text":"FP"', '"text":"' + "x" * 9000 + '"'
    )
    assert metered("/v1/responses", "text/event-stream", split(body.encode(), 512)) == Usage(56, 3)


def test_what_is_not_metered() -> None:
    headers = {"content-type": "application/json"}
    assert meter_for("/api/chat", 400, headers) is None
    assert meter_for("/v1/chat/completions", 503, headers) is None
    assert meter_for("/api/chat", 200, headers | {"content-encoding": "gzip"}) is None
    for path in ("/api/embeddings", "/v1/messages/count_tokens", "/tokenize", "/v1/rerank",
                 "/api/show", "/v1/models"):  # fmt: skip
        assert meter_for(path, 200, headers) is None, path
    assert dialect_of("/engines/llama.cpp/v1/chat/completions") == "openai"
    assert dialect_of("/engines/responses") == "responses"
    assert dialect_of("/engines/v1/messages") == "anthropic"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'{"usage": "none"}', b'{"usage": {"prompt_tokens": -3}}'],
)
def test_bodies_without_usable_counts_charge_nothing(body: bytes) -> None:
    meter = Meter("openai", "json")
    meter.feed(body)
    assert meter.usage() == Usage(0, 0)


def test_the_gateway_wide_limit_applies_to_keys_without_their_own(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("a:key-a\nb:key-b tpm=0\n")
    settings = GatewaySettings(api_keys_file=keys, key_tokens_per_minute=10)
    access = Access(settings, CollectorRegistry())
    for key in ("a", "b"):
        access.release(access.admit({"authorization": f"Bearer key-{key}"}))
        access.charge(key, Usage(6, 4))
    with pytest.raises(Refusal) as refused:
        access.admit({"authorization": "Bearer key-a"})
    assert refused.value.status == 429
    assert refused.value.message == "rate limit of 10 tokens per minute"
    assert 59 <= int(refused.value.headers["Retry-After"]) <= 60
    assert access.admit({"x-api-key": "key-b"}) is not None  # tpm=0: its own, unlimited
