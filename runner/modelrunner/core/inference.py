"""Inference for every dialect: resolve the model, build the prompt, schedule, stream chunks.

``open`` does everything that can fail with a clear error (unknown model, unsupported feature,
bad format, load failure) before the first byte is sent; the returned session then streams
``Chunk`` objects until done, and releases the model when iteration ends or is abandoned.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import anyio

from modelrunner.core import offload
from modelrunner.core.fit import check_fits, kv_cache_bytes
from modelrunner.core.policy import RuntimePolicy
from modelrunner.core.session import Session
from modelrunner.core.textstream import (
    strip_thinking,
)
from modelrunner.core.types import EmbedResult, InferenceRequest, Timings
from modelrunner.core.vision import decode_base64, place_markers, tag_messages, tag_prompt
from modelrunner.engine.base import Generation, LoadOptions, Sampling
from modelrunner.engine.grammar import grammar_for
from modelrunner.engine.prompts import PromptSource, chat_prompt, generate_prompt
from modelrunner.engine.vision import MARKER, Media, VisionModel
from modelrunner.errors import InvalidRequest, ModelRunnerError, Unsupported
from modelrunner.metrics import Metrics
from modelrunner.names import Dialect
from modelrunner.options import DEFAULTS, check_options
from modelrunner.scheduler import Lease, Scheduler
from modelrunner.store.models import ModelStore
from modelrunner.store.records import ModelRecord

_SAMPLING_FIELDS = {f.name for f in fields(Sampling)}


@dataclass
class EngineDefaults:
    context_size: int = 4096
    num_gpu: int = -1
    num_thread: int = 0
    parallel: int = 1
    max_context: int = 0  # the runner's num_ctx ceiling for every source of a context; 0: none


class InferenceService:
    def __init__(
        self, store: ModelStore, scheduler: Scheduler, metrics: Metrics, defaults: EngineDefaults
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.metrics = metrics
        self.defaults = defaults
        self.parallel_overrides: dict[str, int] = {}
        self.context_overrides: dict[str, int] = {}
        # The stored runtime policy of a model (core.runtime sets it; none by default).
        self.policy_for: Callable[[ModelRecord], RuntimePolicy | None] = lambda _record: None

    # -- resolving -----------------------------------------------------------------------------

    async def record(self, ref: str, dialect: Dialect) -> ModelRecord:
        return await anyio.to_thread.run_sync(self.store.get, ref, dialect)

    def load_options(
        self, record: ModelRecord, request_opts: dict[str, Any], embedding: bool
    ) -> LoadOptions:
        """Load settings from the request's options over the Modelfile's parameters."""
        if not record.model_files:
            raise InvalidRequest(f"model '{record.display()}' has no GGUF weights to load")
        policy = self.policy_for(record)
        num_ctx = self._context_size(record, request_opts, policy)
        opts = {**record.parameters, **request_opts}
        parallel = self.parallel_overrides.get(record.digest) or (
            policy.parallel if policy is not None and policy.parallel else self.defaults.parallel
        )
        num_ctx = max(int(num_ctx), 4)
        slots = 1 if embedding else parallel
        num_thread = int(opts.get("num_thread", self.defaults.num_thread))
        check_fits(record.display(), record.gguf, num_ctx, slots, self.defaults.max_context,
                   num_thread)  # fmt: skip
        num_batch = int(opts.get("num_batch", DEFAULTS["num_batch"]))
        return LoadOptions(
            model_path=record.model_files[0],
            num_ctx=num_ctx,
            # A batch beyond the context buys nothing and its buffers can be huge.
            num_batch=min(num_batch, num_ctx) if num_batch > 0 else DEFAULTS["num_batch"],
            num_gpu=int(opts.get("num_gpu", self.defaults.num_gpu)),
            num_thread=num_thread,
            use_mmap=bool(opts.get("use_mmap", True)),
            embedding=embedding,
            parallel=slots,
            projector=record.projectors[0] if record.projectors else None,
            cache_bytes=kv_cache_bytes(record.gguf, num_ctx, slots) or 0,
        )

    def _context_size(
        self, record: ModelRecord, request_opts: dict[str, Any], policy: RuntimePolicy | None
    ) -> int:
        """Highest first: the request's num_ctx, a runtime setting (DMR's _configure, until
        the model's policy is set again), the stored runtime policy, the Modelfile's num_ctx,
        the artifact's context_size, the runner default (capped at the trained length), the
        trained length."""
        if request_opts.get("num_ctx"):
            return int(request_opts["num_ctx"])
        for value in (
            self.context_overrides.get(record.digest),
            policy.context_size if policy is not None else None,
            record.parameters.get("num_ctx"),
            record.docker_config.get("context_size"),
        ):
            if isinstance(value, int) and value > 0:
                return value
        default = self.defaults.context_size or record.context_length or 4096
        return min(default, record.context_length) if record.context_length else default

    def _lease(self, record: ModelRecord, options: LoadOptions, keep_alive: float | None) -> Any:
        if keep_alive is None:  # the request's own keep_alive wins over the policy's default
            policy = self.policy_for(record)
            keep_alive = policy.keep_alive_seconds if policy is not None else None
        return self.scheduler.use(
            record.digest, record.display(), options, keep_alive,
            details={"record": record},
        )  # fmt: skip

    # -- load / unload -------------------------------------------------------------------------

    async def preload(self, ref: str, dialect: Dialect, keep_alive: float | None,
                      options: dict[str, Any] | None = None, embedding: bool = False) -> tuple[ModelRecord, Timings]:  # fmt: skip
        record = await self.record(ref, dialect)
        load = self.load_options(record, check_options(options), embedding)
        started = time.perf_counter_ns()
        async with self._lease(record, load, keep_alive) as lease:
            load_ns = int(lease.load_seconds * 1e9)
        return record, Timings(total_ns=time.perf_counter_ns() - started, load_ns=load_ns)

    async def unload(self, ref: str, dialect: Dialect) -> ModelRecord:
        record = await self.record(ref, dialect)
        await self.scheduler.unload(record.digest)
        return record

    # -- generation ----------------------------------------------------------------------------

    async def open(self, req: InferenceRequest) -> Session:
        started = time.perf_counter_ns()
        record = await self.record(req.model, req.dialect)
        think = self._check(record, req)
        images = [decode_base64(image) for image in request_images(req)]
        request_opts = check_options(req.options)
        opts = {**record.parameters, **request_opts}
        sampling = _sampling(opts, grammar_for(req.format), req)
        load = self.load_options(record, request_opts, embedding=False)
        stack = contextlib.AsyncExitStack()
        try:
            lease: Lease = await stack.enter_async_context(
                self._lease(record, load, req.keep_alive)
            )
            model = lease.runner.model
            text = self._prompt(record, req, think, model)
            lead = model.tokenize("", add_bos=True)  # [BOS] for models that want one
            media: Media | None = None
            if images:
                tokens, media = await _media_prompt(model, text, images, lead, req)
            elif req.context and not req.is_chat:
                _check_context(req.context, model)
                # A continuation: one BOS, the earlier turns, then the new text (as Ollama
                # tokenizes the detokenized context plus the prompt).
                earlier = _without_lead(list(req.context), lead)
                tokens = lead + earlier + await offload.tokenize(model, text, add_bos=False)
            else:
                bos = not _starts_with_bos(text, model)
                tokens = await offload.tokenize(model, text, add_bos=bos)
            generation = _generate(model, tokens, sampling, media)
        except BaseException:
            await stack.aclose()
            raise
        name = record.display()
        self.metrics.requests.labels(name, req.api, "chat" if req.is_chat else "generate").inc()
        opened = bool(think) and text.rstrip().endswith("<think>")
        session = Session(
            self, req, record, lease, stack, generation, tokens, opts, think, opened, started
        )
        session.lead = len(lead) if lead and tokens[: len(lead)] == lead else 0
        return session

    async def render(self, req: InferenceRequest) -> str:
        """Ollama's ``_debug_render_only``: the prompt the model would get, without running it
        (the model is loaded, as Ollama loads it, for its tokenizer)."""
        record = await self.record(req.model, req.dialect)
        think = self._check(record, req)
        load = self.load_options(record, check_options(req.options), embedding=False)
        async with self._lease(record, load, req.keep_alive) as lease:
            model = lease.runner.model
            text = self._prompt(record, req, think, model)
            if req.context and not req.is_chat:
                lead = model.tokenize("", add_bos=True)
                text = model.detokenize(_without_lead(list(req.context), lead)) + text
        return text

    def _check(self, record: ModelRecord, req: InferenceRequest) -> bool | str | None:
        """Refuse what the model or the request cannot do; the effective ``think``."""
        caps = record.capabilities()
        name = record.display()
        if "completion" not in caps:
            raise Unsupported(f'"{name}" does not support generate')
        if req.tools and "tools" not in caps:
            raise Unsupported(f"{record.name} does not support tools")
        if request_images(req) and "vision" not in caps:
            # What llama-server answers without --mmproj: Ollama relays its /completion
            # error (400), DMR its chat-completions one (500).
            if req.dialect is Dialect.DMR:
                raise ModelRunnerError(
                    "image input is not supported - hint: if this is unexpected, "
                    "you may need to provide the mmproj"
                )
            raise Unsupported(
                "Multimodal data provided, but model does not support multimodal requests."
            )
        if req.suffix and "insert" not in caps:
            raise Unsupported(f'"{name}" does not support insert')
        think = req.think
        if think not in (None, False) and "thinking" not in caps:
            raise Unsupported(f'"{name}" does not support thinking')
        if think is None and "thinking" in caps:
            think = True
        if req.raw and (req.template or req.system or req.context):
            raise InvalidRequest("raw mode does not support template, system, or context")
        if not 0 <= req.top_logprobs <= 20:
            raise InvalidRequest("top_logprobs must be between 0 and 20")
        return think

    def _prompt(
        self, record: ModelRecord, req: InferenceRequest, think: bool | str | None, model: Any
    ) -> str:
        if req.raw:
            return req.prompt or ""
        source = PromptSource(
            template=record.template,
            jinja=record.jinja_template or (record.gguf.chat_template if record.gguf else None),
            system=record.system,
            messages=record.messages,
            bos_token=_special(model, "bos"),
            eos_token=_special(model, "eos"),
        )
        if req.is_chat:
            return chat_prompt(source, tag_messages(req.messages or []), req.tools, think)
        prompt = tag_prompt(req.prompt or "", len(req.images)) if req.images else req.prompt
        return generate_prompt(
            source, prompt or "", req.system, req.template, req.suffix, think,
            history=req.context is None,
        )  # fmt: skip

    async def count_tokens(self, req: InferenceRequest) -> int:
        """Tokens of the prompt ``req`` renders to, by the model's own tokenizer (which needs
        the model loaded, so this loads it as a generation would)."""
        record = await self.record(req.model, req.dialect)
        think = req.think
        if think is None and "thinking" in record.capabilities():
            think = True
        load = self.load_options(record, check_options(req.options), embedding=False)
        async with self._lease(record, load, req.keep_alive) as lease:
            model = lease.runner.model
            text = self._prompt(record, req, think, model)
            images = request_images(req)
            if images and "vision" in record.capabilities():
                decoded = [decode_base64(image) for image in images]
                tokens, _ = await _media_prompt(model, text, decoded, [], req, encode=False)
                return len(tokens)
            bos = not _starts_with_bos(text, model)
            return len(await offload.tokenize(model, text, add_bos=bos))

    # -- embeddings ----------------------------------------------------------------------------

    async def embed(
        self, ref: str, inputs: list[str], *, dialect: Dialect = Dialect.OLLAMA,
        truncate: bool = True, options: dict[str, Any] | None = None,
        keep_alive: float | None = None, api: str = "ollama",
    ) -> EmbedResult:  # fmt: skip
        started = time.perf_counter_ns()
        record = await self.record(ref, dialect)
        load = self.load_options(record, check_options(options), embedding=True)
        async with self._lease(record, load, keep_alive) as lease:
            eval_start = time.perf_counter_ns()
            result = await lease.runner.model.embed(inputs, truncate=truncate) if inputs else None
            eval_ns = time.perf_counter_ns() - eval_start
        self.metrics.requests.labels(record.display(), api, "embed").inc()
        vectors = result.vectors if result else []
        count = result.prompt_tokens if result else 0
        self.metrics.prompt_tokens.labels(record.display()).inc(count)
        timings = Timings(
            total_ns=time.perf_counter_ns() - started,
            load_ns=int(lease.load_seconds * 1e9),
            prompt_eval_count=count,
            prompt_eval_ns=eval_ns,
        )
        return EmbedResult(vectors=vectors, prompt_tokens=count, timings=timings)


def _special(model: Any, which: str) -> str:
    llm = getattr(model, "llm", None)
    if llm is None:
        return ""
    token = llm.token_bos() if which == "bos" else llm.token_eos()
    return str(model.token_text(token)) if token >= 0 else ""


def request_images(req: InferenceRequest) -> list[str]:
    """The request's images in prompt order: a chat's come from its messages."""
    if req.is_chat:
        return [str(i) for m in req.messages or [] for i in m.get("images") or []]
    return list(req.images)


async def _media_prompt(
    model: Any,
    text: str,
    images: list[bytes],
    lead: list[int],
    req: InferenceRequest,
    *,
    encode: bool = True,
) -> tuple[list[int], Media]:
    """Prompt tokens with image placeholders, and the images' embeddings (encoded off the
    event loop). A continuation's earlier tokens come first, as for text."""
    if not isinstance(model, VisionModel):
        raise Unsupported("image input is not supported by this engine")
    marked, ordered = place_markers(text, images, MARKER)
    prefix: list[int] = []
    add_bos = not _starts_with_bos(marked, model)
    if req.context and not req.is_chat:
        _check_context(req.context, model)
        prefix = lead + _without_lead(list(req.context), lead)
        add_bos = False
    mp = await anyio.to_thread.run_sync(
        lambda: model.media_prompt(marked, ordered, add_bos=add_bos, encode=encode)
    )
    return prefix + mp.tokens, mp.media.shifted(len(prefix))


def _generate(model: Any, tokens: list[int], sampling: Sampling, media: Media | None) -> Generation:
    if media is None:
        return model.generate(tokens, sampling)  # type: ignore[no-any-return]
    vision: VisionModel = model
    return vision.generate(tokens, sampling, media=media)


def _without_lead(tokens: list[int], lead: list[int]) -> list[int]:
    """A context from before this fix (or another server) may still start with BOS."""
    return tokens[len(lead) :] if lead and tokens[: len(lead)] == lead else tokens


def _starts_with_bos(text: str, model: Any) -> bool:
    bos = _special(model, "bos")
    return bool(bos) and text.startswith(bos)


def _sampling(opts: dict[str, Any], grammar: str | None, req: InferenceRequest) -> Sampling:
    merged = {**DEFAULTS, **opts}
    values = {k: v for k, v in merged.items() if k in _SAMPLING_FIELDS}
    return Sampling(
        **values,
        grammar=grammar,
        logprobs=req.logprobs or req.top_logprobs > 0,
        top_logprobs=req.top_logprobs,
    )


def normalize(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else vector


def clean_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop earlier turns' reasoning from assistant messages (as Ollama does for thinkers)."""
    return [
        {**m, "content": strip_thinking(str(m.get("content", "")))}
        if m.get("role") == "assistant"
        else m
        for m in messages
    ]


def vocab_size(model: Any) -> int | None:
    """The model's vocabulary size, from whichever llama.cpp handle its engine holds."""
    native: Any = getattr(model, "native", None)
    if native is not None:
        return int(native.n_vocab)
    llm: Any = getattr(model, "llm", None)
    return int(llm.n_vocab()) if llm is not None else None


def _check_context(context: list[int], model: Any) -> None:
    """A context is the model's own token ids: anything else would reach llama.cpp unchecked."""
    size = vocab_size(model)
    for token in context:
        if (
            isinstance(token, bool)
            or not isinstance(token, int)
            or token < 0
            or (size is not None and token >= size)
        ):
            raise InvalidRequest(f"context holds {token!r}, not a token id of this model")
