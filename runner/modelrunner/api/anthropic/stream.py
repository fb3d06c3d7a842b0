"""A session's chunks as Anthropic's streaming events.

The order is Anthropic's: ``message_start`` (empty content, input usage), then per content block
``content_block_start``, its deltas and ``content_block_stop`` (one ``ping`` after the first
block starts), then ``message_delta`` (stop reason, cumulative usage) and ``message_stop``.
Thinking, text and each tool call are separate blocks, indexed in order; a thinking block ends
with a ``signature_delta``; a tool call's input arrives as one ``input_json_delta``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from modelrunner.api.anthropic import convert
from modelrunner.core.types import Chunk, Timings

Event = dict[str, Any]


class MessageStream:
    def __init__(
        self, ident: str, model: str, requested_stops: list[str] | None,
        matched: Callable[[], str | None],
    ) -> None:  # fmt: skip
        self.ident = ident
        self.model = model
        self.requested_stops = requested_stops
        self.matched = matched
        self.index = -1
        self.open: str | None = None  # type of the block now open
        self.thinking = ""
        self.pinged = False
        self.called = False

    def start(self, prompt_tokens: int) -> list[Event]:
        usage = convert.usage(Timings(prompt_eval_count=prompt_tokens))
        message: dict[str, Any] = {
            "id": self.ident,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [{"type": "message_start", "message": message}]

    def _begin(self, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self.index += 1
        self.open = block["type"]
        events.append({"type": "content_block_start", "index": self.index, "content_block": block})
        if not self.pinged:
            self.pinged = True
            events.append({"type": "ping"})
        return events

    def _close(self) -> list[Event]:
        if self.open is None:
            return []
        events: list[Event] = []
        if self.open == "thinking":
            delta = {"type": "signature_delta", "signature": convert.signature(self.thinking)}
            events.append(self._delta(delta))
            self.thinking = ""
        events.append({"type": "content_block_stop", "index": self.index})
        self.open = None
        return events

    def _delta(self, delta: dict[str, Any]) -> Event:
        return {"type": "content_block_delta", "index": self.index, "delta": delta}

    def feed(self, chunk: Chunk) -> list[Event]:
        if chunk.done:
            return self.finish(chunk)
        events: list[Event] = []
        if chunk.thinking:
            if self.open != "thinking":
                events += self._begin({"type": "thinking", "thinking": "", "signature": ""})
            self.thinking += chunk.thinking
            events.append(self._delta({"type": "thinking_delta", "thinking": chunk.thinking}))
        if chunk.content:
            if self.open != "text":
                events += self._begin({"type": "text", "text": ""})
            events.append(self._delta({"type": "text_delta", "text": chunk.content}))
        for call in chunk.tool_calls:
            self.called = True
            block = convert.tool_use_block(call.name, {})
            events += self._begin(block)
            partial = json.dumps(call.arguments, ensure_ascii=False)
            events.append(self._delta({"type": "input_json_delta", "partial_json": partial}))
            events += self._close()
        return events

    def finish(self, final: Chunk) -> list[Event]:
        events = self._close()
        if not self.pinged:
            events.append({"type": "ping"})
        reason, sequence = convert.stop_reason(
            final, self.called, self.matched(), self.requested_stops
        )
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        events.append(
            {"type": "message_delta", "delta": delta, "usage": convert.usage(final.timings)}
        )
        events.append({"type": "message_stop"})
        return events
