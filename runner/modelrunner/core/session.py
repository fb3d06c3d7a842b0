"""One running generation: the engine's tokens turned into ``Chunk`` values (stop strings,
thinking, tool calls, log-probabilities), the final chunk's timings, and metrics when it ends."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from modelrunner.core.textstream import StopMatcher, ThinkingSplitter, ToolCallParser
from modelrunner.core.types import Chunk, InferenceRequest, Timings
from modelrunner.engine.base import Generation, TokenOut
from modelrunner.options import DEFAULTS
from modelrunner.scheduler import Lease
from modelrunner.store.records import ModelRecord

if TYPE_CHECKING:
    from modelrunner.core.inference import InferenceService


class Session:
    """One running generation; iterate ``chunks()`` exactly once."""

    def __init__(
        self, service: InferenceService, req: InferenceRequest, record: ModelRecord, lease: Lease,
        stack: contextlib.AsyncExitStack, generation: Generation, prompt: list[int],
        opts: dict[str, Any], think: bool | str | None, think_opened: bool, started: int,
    ) -> None:  # fmt: skip
        self.service = service
        self.req = req
        self.record = record
        self.lease = lease
        self.stack = stack
        self.generation = generation
        self.prompt = prompt
        self.started = started
        self.stops = StopMatcher(list({*DEFAULTS["stop"], *opts.get("stop", [])}))
        self.thinking = ThinkingSplitter(starts_inside=think_opened) if think else None
        names = [str((t.get("function") or {}).get("name", "")) for t in req.tools or []]
        self.tools = ToolCallParser(names) if names else None
        self.output: list[int] = []
        self.lead = 0  # leading BOS tokens of the prompt, left out of the returned context

    def cancel(self) -> None:
        self.generation.cancel()

    async def chunks(self) -> AsyncIterator[Chunk]:
        name = self.record.display()
        metrics = self.service.metrics
        first_token_at = 0.0
        try:
            async for out in self.generation:
                if not first_token_at:
                    first_token_at = time.perf_counter()
                    metrics.ttft.labels(name).observe((time.perf_counter_ns() - self.started) / 1e9)
                self.output.append(out.token)
                chunk = self._process(out.text)
                if out.logprob is not None:
                    chunk.logprobs = [_logprob_entry(out)]
                if self.stops.stopped:
                    self.generation.cancel()
                if chunk.content or chunk.thinking or chunk.tool_calls or chunk.logprobs:
                    yield chunk
                if self.stops.stopped:
                    break
            tail = self._flush()
            if tail.content or tail.thinking or tail.tool_calls:
                yield tail
            yield self._final()
        finally:
            self.generation.cancel()
            await self.stack.aclose()
            self._record_metrics()

    def _record_metrics(self) -> None:
        """Counted for every generation, including those the client abandoned."""
        stats = self.generation.stats
        name = self.record.display()
        metrics = self.service.metrics
        metrics.prompt_tokens.labels(name).inc(stats.prompt_tokens)
        metrics.cached_tokens.labels(name).inc(stats.cached_tokens)
        metrics.generated_tokens.labels(name).inc(stats.eval_count)
        if stats.eval_count:
            metrics.token_latency.labels(name).observe(stats.eval_ns / 1e9 / stats.eval_count)

    def _process(self, text: str) -> Chunk:
        return self._filter(self.stops.feed(text))

    def _filter(self, text: str, final: bool = False) -> Chunk:
        chunk = Chunk()
        content = text
        if self.thinking is not None:
            thinking, content = self.thinking.feed(text)
            if final:
                more_thinking, more_content = self.thinking.flush()
                thinking, content = thinking + more_thinking, content + more_content
            chunk.thinking = thinking
        if self.tools is not None:
            content, calls = self.tools.feed(content)
            if final:
                rest, more = self.tools.flush()
                content, calls = content + rest, calls + more
            chunk.tool_calls = calls
        chunk.content = content
        return chunk

    def _flush(self) -> Chunk:
        return self._filter(self.stops.flush(), final=True)

    def _final(self) -> Chunk:
        stats = self.generation.stats
        reason = "length" if stats.done_reason == "length" and not self.stops.stopped else "stop"
        timings = Timings(
            total_ns=time.perf_counter_ns() - self.started,
            load_ns=int(self.lease.load_seconds * 1e9),
            prompt_eval_count=stats.prompt_tokens,
            prompt_eval_ns=stats.prompt_eval_ns,
            eval_count=stats.eval_count,
            eval_ns=stats.eval_ns,
            cached_tokens=stats.cached_tokens,
        )
        context = (
            None
            if self.req.raw or self.req.is_chat
            else [t for t in self.prompt[self.lead :] if t >= 0] + self.output  # no image slots
        )
        return Chunk(done=True, done_reason=reason, timings=timings, context=context)


def _logprob_entry(out: TokenOut) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "token": out.text,
        "logprob": out.logprob,
        "bytes": list(out.text.encode()),
    }
    if out.top_logprobs:
        entry["top_logprobs"] = [
            {"token": text, "logprob": lp, "bytes": list(text.encode())}
            for text, lp in out.top_logprobs
        ]
    return entry
