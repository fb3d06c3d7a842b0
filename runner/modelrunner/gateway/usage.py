"""Tokens an answer spent, read from the runner's answer as its bytes pass through (a copy is parsed
after each piece is sent on, so streams are never held back): the counts each dialect reports
(Ollama's ``prompt_eval_count``/``eval_count``, OpenAI's ``usage``, the Responses terminal event's
``usage``, Anthropic's ``message_start``/``message_delta`` usage). Prompt tokens include cached
ones, as the runner counts them. Pure: no I/O, never raises on bytes it does not understand."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_ENGINES = r"(/engines(/[^/]+)?)?"
_DIALECTS = [
    (re.compile(r"^/api/(generate|chat|embed)$"), "ollama"),
    (re.compile(rf"^{_ENGINES}/v1/(chat/completions|completions|embeddings)$"), "openai"),
    (re.compile(rf"^{_ENGINES}(/v1)?/responses$"), "responses"),
    (re.compile(rf"^(/anthropic|{_ENGINES})/v1/messages$"), "anthropic"),
]
# The usage fields of a whole (non-streamed) body, per dialect: prompt fields (summed), generated.
_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "ollama": (("prompt_eval_count",), "eval_count"),
    "openai": (("prompt_tokens",), "completion_tokens"),
    "responses": (("input_tokens",), "output_tokens"),
    # Anthropic's input_tokens leaves out the cached part; the runner counts the whole prompt.
    "anthropic": (
        ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"),
        "output_tokens",
    ),
}
# Parsing JSON is slow for long arrays (embeddings, Ollama's context): a body or line longer than
# this is scanned for the usage keys in its last _TAIL bytes instead (usage comes last).
_PARSE = 8 * 1024
_TAIL = 64 * 1024
_MAX_LINE = 16 * 1024 * 1024  # a longer stream line is skipped rather than kept
_TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


@dataclass(frozen=True)
class Usage:
    prompt: int = 0
    generated: int = 0


def dialect_of(path: str) -> str | None:
    """The dialect whose answers on ``path`` report tokens; None: nothing to count (the runner
    counts no tokens for tokenize, count_tokens or rerank; Ollama's legacy /api/embeddings
    answers no count)."""
    for pattern, dialect in _DIALECTS:
        if pattern.match(path):
            return dialect
    return None


def meter_for(path: str, status: int, headers: dict[str, str]) -> Meter | None:
    """A meter for this answer, or None when it cannot report tokens (not a counted path, not a
    success, or encoded)."""
    dialect = dialect_of(path)
    if dialect is None or not 200 <= status < 300:
        return None
    if headers.get("content-encoding", "identity").lower() != "identity":
        return None  # the runner does not compress; a compressed body is not read
    content_type = headers.get("content-type", "").lower()
    if "text/event-stream" in content_type:
        return Meter(dialect, "sse")
    if "ndjson" in content_type:
        return Meter(dialect, "ndjson")
    return Meter(dialect, "json")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _counts(dialect: str, data: Any) -> Usage | None:
    """The usage an object reports (Ollama: on the object itself; others: its ``usage``)."""
    if not isinstance(data, dict):
        return None
    found = data if dialect == "ollama" else data.get("usage")
    if not isinstance(found, dict):
        return None
    prompt_fields, generated_field = _FIELDS[dialect]
    if not any(name in found for name in (*prompt_fields, generated_field)):
        return None
    prompt = sum(_int(found.get(name)) for name in prompt_fields)
    return Usage(prompt, _int(found.get(generated_field)))


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _scan(dialect: str, raw: bytes) -> Usage | None:
    """The usage keys in the tail of a long body or line: each key's last occurrence as a JSON
    key with a number (a key written inside a string has escaped quotes, and does not match)."""
    tail = raw[-_TAIL:]
    prompt_fields, generated_field = _FIELDS[dialect]
    values: dict[str, int] = {}
    for name in (*prompt_fields, generated_field):
        matches = re.findall(rb'"' + name.encode() + rb'"\s*:\s*(\d+)', tail)
        if matches:
            values[name] = int(matches[-1])
    if not values:
        return None
    return Usage(sum(values.get(n, 0) for n in prompt_fields), values.get(generated_field, 0))


class Meter:
    """Fed each piece of one answer's body in order; ``usage()`` at any point (a client that went
    away mid-stream is charged what it got)."""

    def __init__(self, dialect: str, framing: str) -> None:
        self.dialect, self.framing = dialect, framing
        self.prompt: int | None = None  # as reported
        self.generated: int | None = None
        self.deltas = 0  # pieces of generated content seen: the count when none is reported
        self._pending = b""  # a stream's unfinished line, or a long body's tail
        self._pieces: list[bytes] = []  # a short body so far
        self._size = 0
        self._long = False
        self._event: str | None = None

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.framing == "json":
            self._keep(chunk)
            return
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > _MAX_LINE:
            self._pending = b""
        for line in lines:
            self._line(line.rstrip(b"\r"))

    def usage(self) -> Usage:
        if self.framing == "json":
            self._body()
        generated = self.generated if self.generated is not None else self.deltas
        return Usage(self.prompt or 0, generated)

    # -- whole bodies ------------------------------------------------------------------------------

    def _keep(self, chunk: bytes) -> None:
        if self._long:
            self._pending = (self._pending + chunk)[-_TAIL:]
            return
        self._pieces.append(chunk)
        self._size += len(chunk)
        if self._size > _PARSE:
            self._long = True
            self._pending = b"".join(self._pieces)[-_TAIL:]
            self._pieces = []

    def _body(self) -> None:
        if self._long:
            self._report(_scan(self.dialect, self._pending))
        else:
            self._report(_counts(self.dialect, _loads(b"".join(self._pieces))))

    # -- streams -----------------------------------------------------------------------------------

    def _line(self, line: bytes) -> None:
        if self.framing == "ndjson":
            self._ndjson(line)
        elif not line:
            self._event = None  # an SSE event ends at a blank line
        elif line.startswith(b"event:"):
            self._event = line[6:].strip().decode("latin-1")
        elif line.startswith(b"data:"):
            self._data(line[5:].strip())

    def _ndjson(self, line: bytes) -> None:
        """Ollama: the counts are on the last object (``done: true``); every line before it is
        one piece of generated content."""
        if not line.strip():
            return
        if b"eval_count" in line or b'"done":true' in line or b'"done": true' in line:
            long = len(line) > _PARSE
            self._report(_scan("ollama", line) if long else _counts("ollama", _loads(line)))
        elif not line.startswith(b'{"error"'):
            self.deltas += 1

    def _data(self, data: bytes) -> None:
        event = self._event
        if self.dialect == "anthropic":
            if event == "content_block_delta":
                self.deltas += 1
            elif event in ("message_start", "message_delta") or event is None:
                self._anthropic(_loads(data))
        elif self.dialect == "responses":
            if event is not None and event.endswith(".delta"):
                self.deltas += 1
            elif event in _TERMINAL and len(data) > _PARSE:  # it holds the whole response
                self._report(_scan("responses", data))
            elif event is None or event in _TERMINAL:
                self._responses(_loads(data))
        elif data != b"[DONE]":
            self._openai(_loads(data))

    def _report(self, found: Usage | None) -> None:
        if found is not None:
            self.prompt, self.generated = found.prompt, found.generated

    def _openai(self, chunk: Any) -> None:
        """``usage`` is on the last chunk only when the client asked for it
        (``stream_options.include_usage``); without it each chunk whose choices carry content
        (one token each, as the runner sends them) is counted as one generated token, and the
        prompt is not known here."""
        if not isinstance(chunk, dict):
            return
        found = _counts("openai", chunk)
        if found is not None:
            self._report(found)
            return
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            parts = delta if isinstance(delta, dict) else {}
            if choice.get("text") or any(
                parts.get(k) for k in ("content", "reasoning_content", "tool_calls", "refusal")
            ):
                self.deltas += 1

    def _responses(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if isinstance(kind, str) and kind.endswith(".delta"):
            self.deltas += 1
        elif kind in _TERMINAL:
            self._report(_counts("responses", event.get("response")))

    def _anthropic(self, event: Any) -> None:
        """``message_start`` has the prompt; ``message_delta`` the final counts (its input
        fields, when present, after the cache was consulted)."""
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "content_block_delta":
            self.deltas += 1
            return
        if kind == "message_start":
            message = event.get("message")
            found = _counts("anthropic", message) if isinstance(message, dict) else None
            if found is not None:
                self.prompt = found.prompt
            return
        usage = event.get("usage") if kind == "message_delta" else None
        if not isinstance(usage, dict):
            return
        found = _counts("anthropic", event)
        if found is not None and "input_tokens" in usage:
            self.prompt = found.prompt
        if "output_tokens" in usage:
            self.generated = _int(usage.get("output_tokens"))
