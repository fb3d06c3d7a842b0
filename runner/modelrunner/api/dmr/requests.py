"""DMR's request recorder (``pkg/metrics/openai_recorder.go``) and ``GET /engines/requests``.

An ASGI middleware records every inference request (OpenAI, Anthropic, rerank/score routes, with
or without the ``/engines[/{backend}]`` prefix): its body, and when the answer is complete its
status and body. A streamed chat answer is stored as the ``chat.completion`` it adds up to; a
failure as ``error``. The last 10 records of each model are kept, keyed by model ID.
``docker model requests`` reads them as JSON, or follows them as server-sent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from modelrunner.api.common import Services, services
from modelrunner.api.dmr.wire import DMRRoute
from modelrunner.names import Dialect

router = APIRouter(route_class=DMRRoute)
KEY = "dmr_requests"
PER_MODEL = 10
MAX_BODY = 10 << 20  # DMR's request limit: larger ones are not recorded
MAX_ANSWER = 1 << 20  # what is kept of an answer (records stay in memory)
MAX_MEDIA = 100
_PATHS = re.compile(
    r"^(?:/engines(?:/[^/]+)?|/anthropic)?(?:/v1)?/"
    r"(?:chat/completions|completions|embeddings|messages|messages/count_tokens|responses"
    r"|rerank|reranking|score)$"
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Record:
    id: str
    model: str
    method: str
    url: str
    request: str
    response: str = ""
    error: str = ""
    timestamp: int = 0
    status_code: int = 0
    user_agent: str = ""
    origin: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("response", "error", "user_agent", "origin"):  # omitempty
            if not out[key]:
                del out[key]
        return out


@dataclass
class ModelRecords:
    config: dict[str, Any] = field(default_factory=dict)
    records: deque[Record] = field(default_factory=lambda: deque(maxlen=PER_MODEL))


class Recorder:
    def __init__(self) -> None:
        self.models: dict[str, ModelRecords] = {}
        self.subscribers: set[asyncio.Queue[list[dict[str, Any]]]] = set()

    def add(self, model_id: str, record: Record, config: dict[str, Any]) -> None:
        entry = self.models.setdefault(model_id, ModelRecords())
        entry.config = config
        entry.records.append(record)

    def finished(self, model: str, model_id: str, record: Record) -> None:
        config = self.models[model_id].config if model_id in self.models else {}
        event = [{"count": 1, "model": model, "config": config, "records": [record.to_json()]}]
        for queue in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    def listing(self, model_id: str | None) -> list[dict[str, Any]]:
        items = self.models.items() if model_id is None else [(model_id, self.models.get(model_id))]
        return [
            {
                "count": len(data.records),
                "model": ident,
                "config": data.config,
                "records": [r.to_json() for r in data.records],
            }
            for ident, data in items
            if data is not None
        ]


def recorder_of(svc: Services) -> Recorder:
    value = svc.extra.get(KEY)
    if not isinstance(value, Recorder):
        value = svc.extra[KEY] = Recorder()
    return value


def resolve_id(svc: Services, model: str) -> str:
    """The model's ID, or what the caller typed when it names no stored model (as DMR)."""
    try:
        return svc.models.store.get(model, Dialect.DMR).manifest.digest
    except Exception:
        return model


def runner_config(svc: Services, model_id: str) -> dict[str, Any]:
    state = svc.extra.get("dmr_engines")
    configs = getattr(state, "configs", {})
    for (digest, _mode), config in configs.items():
        if "sha256:" + digest == model_id:
            entry: dict[str, Any] = config.entry()["Config"]
            return entry
    return {}


# -- body helpers --------------------------------------------------------------------------------


def truncate_media(body: bytes) -> str:
    """Base64 images and audio in chat messages cut to 100 characters, as DMR stores them."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        return body.decode("utf-8", errors="replace")
    for message in data["messages"]:
        parts = message.get("content") if isinstance(message, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict):
                continue
            for key, inner in (("image_url", "url"), ("input_audio", "data")):
                holder = part.get(key)
                if isinstance(holder, dict) and isinstance(holder.get(inner), str):
                    holder[inner] = _cut(holder[inner])
    return json.dumps(data, separators=(",", ":"))


def _cut(value: str) -> str:
    if len(value) <= MAX_MEDIA:
        return value
    if value.startswith("data:"):
        head, _, tail = value.partition(",")
        if len(tail) > MAX_MEDIA:
            return f"{head},{tail[:MAX_MEDIA]}...[truncated {len(tail) - MAX_MEDIA} chars]"
        return value
    return f"{value[:MAX_MEDIA]}...[truncated {len(value) - MAX_MEDIA} chars]"


def merge_stream(body: str) -> str:
    """A chat SSE stream as the one ``chat.completion`` it adds up to (DMR's conversion)."""
    content, reasoning = [], []
    last_chunk: dict[str, Any] | None = None
    last_choice: dict[str, Any] = {}
    for line in body.split("\n"):
        if not line.startswith("data: "):
            continue
        data = line.removeprefix("data: ")
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        if not isinstance(chunk, dict):
            continue
        last_chunk = chunk
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            last_choice = choices[0]
            delta = last_choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            for key in ("reasoning_content", "reasoning"):
                if isinstance(delta.get(key), str):
                    reasoning.append(delta[key])
    if last_chunk is None:
        return body
    choice = {k: v for k, v in last_choice.items() if k != "delta"}
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    choice["message"] = message
    choice.setdefault("finish_reason", "stop")
    final = last_chunk | {"choices": [choice], "object": "chat.completion"}
    return json.dumps(final, separators=(",", ":"))


def error_json(body: str) -> str:
    try:
        json.loads(body)
        return body
    except ValueError:
        return json.dumps({"error": body or "unknown error"})


# -- the middleware ------------------------------------------------------------------------------


class RequestRecorder:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not _PATHS.match(scope["path"])
            or "app" not in scope
        ):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:  # read the body first, then replay it to the app
            message = await receive()
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        svc: Services = scope["app"].state.services
        model = _model_of(bytes(body))
        if model is None or len(body) > MAX_BODY:
            await self.app(scope, replay, send)
            return
        recorder = recorder_of(svc)
        model_id = resolve_id(svc, model)
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        record = Record(
            id=f"{model_id}_{time.time_ns()}",
            model=model,
            method="POST",
            url=scope["path"],
            request=truncate_media(bytes(body)),
            timestamp=int(time.time()),
            user_agent=headers.get("user-agent", ""),
            origin=headers.get("x-request-origin", ""),
        )
        recorder.add(model_id, record, runner_config(svc, model_id))
        answer = bytearray()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status_code = int(message["status"])
            elif message["type"] == "http.response.body" and len(answer) < MAX_ANSWER:
                answer.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay, capture)
        finally:
            text = answer.decode("utf-8", errors="replace")
            record.status_code = record.status_code or 408
            if record.status_code >= 400:
                record.error = error_json(text)
            else:
                record.response = merge_stream(text) if "data: " in text else text
            recorder.finished(model, model_id, record)


def _model_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) and model else None


# -- the route -----------------------------------------------------------------------------------


@router.get("/engines/requests")
async def requests(request: Request) -> Response:
    svc = services(request)
    recorder = recorder_of(svc)
    model = request.query_params.get("model") or None
    model_id = resolve_id(svc, model) if model else None
    if request.headers.get("accept") != "text/event-stream":
        return JSONResponse(recorder.listing(model_id))
    existing = request.query_params.get("include_existing") == "true"
    return StreamingResponse(
        _events(request, recorder, model, model_id, existing),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "Connection": "keep-alive"},
    )


async def _events(
    request: Request, recorder: Recorder, model: str | None, model_id: str | None, existing: bool
) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue(maxsize=100)
    recorder.subscribers.add(queue)
    try:
        if existing:
            for entry in recorder.listing(model_id):
                for record in entry["records"]:
                    one = [entry | {"count": 1, "records": [record]}]
                    yield _sse("existing_request", one)
        yield b'event: connected\ndata: {"status": "connected"}\n\n'
        while not await request.is_disconnected():
            try:
                event = await asyncio.wait_for(queue.get(), 1.0)
            except TimeoutError:
                continue
            if model and event and event[0]["model"] != model:
                continue
            yield _sse("new_request", event)
    finally:
        recorder.subscribers.discard(queue)


def _sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
