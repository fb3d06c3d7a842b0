"""Renders a session's chunks as Responses API stream events, and builds the final response.

The order is OpenAI's: ``response.created``, ``response.in_progress``; then per output item
``response.output_item.added``, its part and delta events, and ``response.output_item.done``;
finally ``response.completed`` (or ``response.incomplete`` when ``max_output_tokens`` cut the
answer). Every event carries ``type`` and a ``sequence_number`` counting from 0. Thinking becomes
a ``reasoning`` item with one summary part (as Ollama streams it); text a ``message`` item with
one ``output_text`` part; each tool call a ``function_call`` item. Non-streaming answers are built
by the same renderer, so both shapes always agree.
"""

from __future__ import annotations

import json
import time
from typing import Any

from modelrunner.api.openai.responses_convert import Item, ResponseHead, new_id, response_object
from modelrunner.core.textstream import ToolCall
from modelrunner.core.types import Chunk

Event = dict[str, Any]


def _text_part(text: str) -> Item:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str) -> Item:
    content = [] if text is None else [_text_part(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": content}  # fmt: skip


def reasoning_item(item_id: str, text: str | None) -> Item:
    summary = [] if text is None else [{"type": "summary_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": summary}


def function_call_item(item_id: str, call: ToolCall, arguments: str, status: str) -> Item:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call.id,
            "name": call.name, "arguments": arguments}  # fmt: skip


class ResponseStream:
    def __init__(self, head: ResponseHead) -> None:
        self.head = head
        self.sequence = 0
        self.output: list[Item] = []  # finished items, in output order
        self.kind = ""  # "reasoning" | "message" while an item is open
        self.item_id = ""
        self.text = ""  # the open item's text so far
        self.pending = ""  # whitespace held back before a message is opened
        self.response: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    @property
    def _index(self) -> int:
        return len(self.output)

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": self._index}

    def start(self) -> list[Event]:
        shell = response_object(self.head, "in_progress", [])
        return [
            self._event("response.created", response=shell),
            self._event("response.in_progress", response=shell),
        ]

    def feed(self, chunk: Chunk) -> list[Event]:
        events: list[Event] = []
        if chunk.thinking:
            events += self._thinking(chunk.thinking)
        if chunk.content:
            events += self._content(chunk.content)
        for call in chunk.tool_calls:
            events += self._call(call)
        if chunk.done:
            events += self._finish(chunk)
        return events

    def fail(self, message: str) -> Event:
        """The terminal event when generation breaks after the stream has begun."""
        error = {"code": "server_error", "message": message}
        response = response_object(self.head, "failed", self.output, error=error)
        return self._event("response.failed", response=response)

    # -- items ---------------------------------------------------------------------------------

    def _open(self, kind: str, prefix: str) -> list[Event]:
        events = self._close("completed")
        self.kind, self.item_id, self.text = kind, new_id(prefix), ""
        if kind == "reasoning":
            added = reasoning_item(self.item_id, None)
            part: Item = {"type": "summary_text", "text": ""}
            return [
                *events,
                self._event("response.output_item.added", output_index=self._index, item=added),
                self._event("response.reasoning_summary_part.added", **self._where(),
                            summary_index=0, part=part),
            ]  # fmt: skip
        added = message_item(self.item_id, None, "in_progress")
        return [
            *events,
            self._event("response.output_item.added", output_index=self._index, item=added),
            self._event("response.content_part.added", **self._where(), content_index=0,
                        part=_text_part("")),
        ]  # fmt: skip

    def _close(self, status: str) -> list[Event]:
        if not self.kind:
            return []
        text, where = self.text, self._where()
        if self.kind == "reasoning":
            item = reasoning_item(self.item_id, text)
            events = [
                self._event("response.reasoning_summary_text.done", **where, summary_index=0,
                            text=text),
                self._event("response.reasoning_summary_part.done", **where, summary_index=0,
                            part={"type": "summary_text", "text": text}),
            ]  # fmt: skip
        else:
            item = message_item(self.item_id, text, status)
            events = [
                self._event("response.output_text.done", **where, content_index=0, text=text,
                            logprobs=[]),
                self._event("response.content_part.done", **where, content_index=0,
                            part=_text_part(text)),
            ]  # fmt: skip
        events.append(self._event("response.output_item.done", output_index=self._index, item=item))
        self.output.append(item)
        self.kind = ""
        return events

    def _thinking(self, text: str) -> list[Event]:
        events = [] if self.kind == "reasoning" else self._open("reasoning", "rs")
        self.text += text
        return [*events, self._event("response.reasoning_summary_text.delta", **self._where(),
                                     summary_index=0, delta=text)]  # fmt: skip

    def _content(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self.kind != "message":
            # Whitespace between reasoning and a tool call is not worth a message item.
            if not (self.pending + text).strip():
                self.pending += text
                return []
            text, self.pending = self.pending + text, ""
            events = self._open("message", "msg")
        self.text += text
        delta = self._event("response.output_text.delta", **self._where(), content_index=0,
                            delta=text, logprobs=[])  # fmt: skip
        return [*events, delta]

    def _call(self, call: ToolCall) -> list[Event]:
        events = self._close("completed")
        self.pending = ""
        item_id, index = new_id("fc"), self._index
        arguments = json.dumps(call.arguments)
        where = {"item_id": item_id, "output_index": index}
        item = function_call_item(item_id, call, arguments, "completed")
        events += [
            self._event("response.output_item.added", output_index=index,
                        item=function_call_item(item_id, call, "", "in_progress")),
            self._event("response.function_call_arguments.delta", **where, delta=arguments),
            self._event("response.function_call_arguments.done", **where, name=call.name,
                        arguments=arguments),
            self._event("response.output_item.done", output_index=index, item=item),
        ]  # fmt: skip
        self.output.append(item)
        return events

    def _finish(self, final: Chunk) -> list[Event]:
        incomplete = final.done_reason == "length"
        status = "incomplete" if incomplete else "completed"
        events = self._close(status)
        if not any(item["type"] in ("message", "function_call") for item in self.output):
            # Every answer without tool calls has a message, even an empty one.
            text, self.pending = self.pending, ""
            events += self._open("message", "msg")
            if text:
                self.text = text
                events.append(self._event("response.output_text.delta", **self._where(),
                                          content_index=0, delta=text, logprobs=[]))  # fmt: skip
            events += self._close(status)
        completed_at = None if incomplete else int(time.time())
        self.response = response_object(
            self.head, status, self.output, timings=final.timings, completed_at=completed_at
        )
        kind = "response.incomplete" if incomplete else "response.completed"
        return [*events, self._event(kind, response=self.response)]
