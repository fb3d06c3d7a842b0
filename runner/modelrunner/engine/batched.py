"""The batched llama.cpp engine: continuous batching of concurrent requests on one model.

One llama.cpp context holds ``parallel`` sequences (slots), each with its own ``num_ctx`` tokens
of KV cache (total ``n_ctx = num_ctx * parallel``, as Ollama and llama-server lay it out; the KV
is not unified, so a sequence's attention only spans its own cells). A single decode thread per
loaded model runs the loop:

1. drop cancelled requests (their slot is free for the next request at once);
2. admit waiting requests into free slots, picking the slot whose cached tokens share the longest
   prefix with the prompt (prompt cache) and trimming its KV to that prefix;
3. build one ``llama_batch``: one token for every generating sequence, then prompt chunks of the
   admitted ones in admission order, up to ``n_batch`` tokens in all, so running streams keep
   flowing while a long prompt is prefilled;
4. one ``llama_decode``; then every sequence whose logits came out samples its next token with
   its own native sampler chain; the step's tokens go to their consumers' event loops together,
   one wake-up per loop (``batch_requests.Outbox``).

A finished (or cancelled) request leaves its tokens in the slot's KV cache; the next request that
shares a prefix with them reuses it. Embedding requests run between steps on idle slots.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from concurrent.futures import Future
from typing import Any

import llama_cpp

from modelrunner.engine import batch_native as nat
from modelrunner.engine import batch_sampling as samplers
from modelrunner.engine.base import (
    Embeddings,
    LoadOptions,
    Sampling,
    TokenOut,
)
from modelrunner.engine.batch_config import BatchTuning, context_spec
from modelrunner.engine.batch_embed import Embedder
from modelrunner.engine.batch_requests import (
    END,
    BatchedGeneration,
    EmbedJob,
    Outbox,
    Request,
    Slot,
    choose_slot,
)
from modelrunner.engine.vision import EmbdBatch, Media, MediaPrompt, Projector, decode_span
from modelrunner.errors import InvalidRequest, ModelRunnerError, Unsupported

# From idle, the first step waits for requests arriving together (see ``_gather``): until none
# came for _QUIET_S and every generation created has been submitted, at most _GATHER_S.
_GATHER_S = 0.025
_QUIET_S = 0.002


class BatchedLlamaEngine:
    """Loads models into a batched context; ``parallel`` slots per model (at least 1)."""

    def __init__(self, tuning: BatchTuning | None = None) -> None:
        self.tuning = tuning or BatchTuning()

    def load(self, options: LoadOptions) -> BatchedLlamaModel:
        return BatchedLlamaModel(options, self.tuning)


class BatchedLlamaModel:
    """A loaded model served by a continuous-batching decode loop (see the module docstring)."""

    def __init__(self, options: LoadOptions, tuning: BatchTuning | None = None) -> None:
        self.options = options
        self.tuning = tuning = tuning or BatchTuning()
        spec = context_spec(options, tuning)
        n_seq, threads = spec.n_seq, spec.n_threads
        self._threads = threads
        n_gpu = options.num_gpu
        if n_gpu < 0:
            n_gpu = -1 if bool(llama_cpp.llama_supports_gpu_offload()) else 0
        try:
            self.native = nat.NativeModel(
                options.model_path,
                n_gpu_layers=n_gpu,
                use_mmap=options.use_mmap,
                spec=spec,
                extra_bufts=tuning.repack,
            )
        except (ValueError, OSError) as exc:
            raise ModelRunnerError(f"unable to load model: {exc}") from None
        self._batch = nat.NativeBatch(self.native.n_batch)
        self._embedder = Embedder(self.native, self._batch, options.embedding)
        self.projector: Projector | None = None
        self._embd_batch: EmbdBatch | None = None
        if options.projector is not None and not options.embedding:
            try:
                self.projector = Projector(
                    options.projector, self.native.model, n_threads=threads, use_gpu=n_gpu != 0
                )
            except BaseException:
                self.native.close()
                raise
            self._embd_batch = EmbdBatch(self.native.n_batch, self.projector.n_embd)
        self._slots = [Slot(seq=i) for i in range(n_seq)]
        self._waiting: collections.deque[Request] = collections.deque()
        self._outbox = Outbox()  # tokens of the current step, handed over when it ends
        self._embeds: collections.deque[EmbedJob] = collections.deque()
        self._prefilling: list[Request] = []  # admitted, prompt not fully evaluated, in order
        self._cond = threading.Condition()
        self._closing = False
        self._wake = False
        self._coming = 0  # generations created but not yet submitted (nor dropped)
        self._arrival = 0.0  # time.monotonic() of the last generate() or submission
        # Counters for /metrics.
        self.steps = 0
        self.tokens_generated = 0
        self.prompt_tokens_evaluated = 0
        self.prompt_tokens_cached = 0
        self._thread = threading.Thread(
            target=self._loop, name=f"batched-decode:{options.model_path.name}", daemon=True
        )
        self._thread.start()

    # -- EngineModel ----------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        """Tokens one request may use (the per-slot context)."""
        return self.native.n_ctx_seq

    @property
    def size_bytes(self) -> int:
        """The weights' files (with the projector's, as Ollama counts a vision model)."""
        projector = self.options.projector if self.projector is not None else None
        return self.options.model_path.stat().st_size + (
            projector.stat().st_size if projector is not None else 0
        )

    @property
    def slots(self) -> int:
        return len(self._slots)

    @property
    def active_sequences(self) -> int:
        """Requests holding a slot (prefilling or generating)."""
        return len(self.busy_sequences())

    def busy_sequences(self) -> list[int]:
        """Sequence ids (slots) of the requests holding a slot."""
        return [s.seq for s in self._slots if s.request is not None]

    @property
    def kv_cache_usage(self) -> float:
        """Share of the KV cache (0..1) that requests holding a slot occupy, as vLLM's gauge
        counts it (idle slots' cached prefixes are reusable room, not usage)."""
        capacity = self.native.n_ctx_seq * len(self._slots)
        used = sum(len(s.cached) for s in self._slots if s.request is not None)
        return min(1.0, used / capacity) if capacity else 0.0

    @property
    def embed_decodes(self) -> int:
        """llama_decode calls embedding requests took (for tests and /metrics)."""
        return self._embedder.decodes

    @property
    def threads(self) -> int:
        """CPU threads llama.cpp decodes with."""
        return self._threads

    @property
    def waiting(self) -> int:
        """Requests submitted but not yet admitted into a slot."""
        return len(self._waiting)

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return self.native.tokenize(text, add_bos=add_bos)

    def detokenize(self, tokens: list[int]) -> str:
        return self.native.detokenize(tokens).decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        return self.native.piece(token, special=True).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return self.native.is_eog(token)

    def token_bos(self) -> int:
        return self.native.bos

    def token_eos(self) -> int:
        return self.native.eos

    def media_prompt(
        self, text: str, images: list[bytes], *, add_bos: bool, encode: bool = True
    ) -> MediaPrompt:
        """Tokens and image embeddings for a prompt with images (see ``engine/vision.py``)."""
        if self.projector is None:
            raise Unsupported("image input is not supported by this model")
        return self.projector.prompt(text, images, add_bos=add_bos, encode=encode)

    def generate(
        self,
        prompt: list[int],
        sampling: Sampling,
        *,
        ignore_eos: bool = False,
        media: Media | None = None,
    ) -> BatchedGeneration:
        """Queue a request (it is submitted when iteration starts). ``ignore_eos`` (not part of
        the engine protocol; for benchmarks) bans end-of-generation tokens."""
        if self._closing:
            raise ModelRunnerError("the model is being unloaded")
        if not prompt:
            raise InvalidRequest("the prompt is empty")
        if len(prompt) >= self.context_length:
            raise InvalidRequest(
                f"the input length ({len(prompt)} tokens) exceeds the context length "
                f"({self.context_length})"
            )
        # A bad grammar fails here, before the caller starts a response, not mid-stream.
        if media is not None and media.spans:
            if self.projector is None:
                raise Unsupported("image input is not supported by this model")
            media.check_batch(self.native.n_ubatch)
        sampler = samplers.RequestSampler(self.native, sampling, ban_eog=ignore_eos)
        generation = BatchedGeneration(self, list(prompt), sampling, sampler, media)
        with self._cond:
            self._coming += 1
            self._arrival = time.monotonic()
        return generation

    async def embed(self, texts: list[str], *, truncate: bool = True) -> Embeddings:
        if self._closing:
            raise ModelRunnerError("the model is being unloaded")
        limit = self.context_length

        def tokenized() -> list[list[int]]:
            tokens: list[list[int]] = []
            for text in texts:
                toks = self.tokenize(text)
                if len(toks) > limit:
                    if not truncate:
                        raise InvalidRequest("the input length exceeds the context length")
                    toks = toks[:limit]
                if not toks:
                    toks = [self.native.bos] if self.native.bos >= 0 else [0]
                tokens.append(toks)
            return tokens

        # Long inputs tokenize in a worker thread: llama.cpp's tokenizer can take seconds on them.
        long = sum(len(text) for text in texts) > 8192
        tokens = await asyncio.to_thread(tokenized) if long else tokenized()
        if not tokens:
            return Embeddings(vectors=[], prompt_tokens=0)
        job = EmbedJob(tokens=tokens, future=Future())
        with self._cond:
            self._embeds.append(job)
            self._cond.notify()
        vectors = await asyncio.wrap_future(job.future)
        return Embeddings(vectors=vectors, prompt_tokens=sum(len(t) for t in tokens))

    def close(self) -> None:
        with self._cond:
            if self._closing and not self._thread.is_alive():
                return
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self.projector is not None:
            self.projector.close()
        self.native.close()

    # -- called from generations (event-loop thread) --------------------------------------------

    def _submit(self, request: Request) -> None:
        with self._cond:
            if request.generation._arrived():
                self._coming -= 1
            self._arrival = time.monotonic()
            if self._closing:
                raise ModelRunnerError("the model is being unloaded")
            self._waiting.append(request)
            self._cond.notify()

    def _not_coming(self) -> None:
        """A generation will not be submitted after all (cancelled or dropped first)."""
        with self._cond:
            self._coming -= 1
            self._cond.notify()

    def _poke(self) -> None:
        with self._cond:
            self._wake = True
            self._cond.notify()

    # -- the decode thread ----------------------------------------------------------------------

    def _busy(self) -> bool:
        return bool(self._waiting or self._embeds or any(s.request for s in self._slots))

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._closing or self._wake or self._busy()):
                        self._cond.wait()
                    self._wake = False
                    if self._closing:
                        break
                try:
                    self._step()
                except Exception as exc:  # never let the loop die: fail what was running
                    self._fail_all(exc)
                self._outbox.flush()
        finally:
            self._shutdown()
            self._outbox.flush()

    def _step(self) -> None:
        self._gather()
        now = time.perf_counter_ns()
        self._drop_cancelled(now)
        if self._embeds and any(s.request is None for s in self._slots):
            self._run_embeddings(self._embeds.popleft())
        self._admit(now)
        self._decode_step()

    def _gather(self) -> None:
        """From idle, let requests that arrive together start together: wait until every
        generation created has been submitted and none arrived for ``_QUIET_S`` (at most
        ``_GATHER_S``), so their prompts are evaluated in one step. Started one step apart,
        the later ones would also wait for the whole first step (and, on a machine whose cores
        all decode, the event loop that is still parsing them gets no CPU until it ends).
        Never while a request holds a slot: an arriving prompt then joins the very next step."""
        if not self._waiting or any(s.request is not None for s in self._slots):
            return
        deadline = time.monotonic() + _GATHER_S
        with self._cond:
            while not self._closing:
                now = time.monotonic()
                quiet = self._arrival + _QUIET_S
                if now >= deadline or (self._coming <= 0 and now >= quiet):
                    return
                self._cond.wait((deadline if self._coming > 0 else min(deadline, quiet)) - now)

    def _drop_cancelled(self, now: int) -> None:
        if any(r.generation.cancelled for r in self._waiting):
            with self._cond:
                keep = collections.deque(r for r in self._waiting if not r.generation.cancelled)
                gone = [r for r in self._waiting if r.generation.cancelled]
                self._waiting = keep
            for r in gone:
                self._finish(r, "cancel", now)
        for slot in self._slots:
            active = slot.request
            if active is not None and active.generation.cancelled:
                self._finish(active, "cancel", now)

    def _admit(self, now: int) -> None:
        while True:
            free = [s for s in self._slots if s.request is None]
            if not free:
                return
            with self._cond:
                if not self._waiting:
                    return
                r = self._waiting.popleft()
            slot = choose_slot(free, self.busy_sequences(), r.prompt, self.native.spec.unified_kv)
            self._place(r, slot, now)

    def _place(self, r: Request, slot: Slot, now: int) -> None:
        native = self.native
        keep = min(nat.common_prefix(slot.cached, r.prompt), len(r.prompt) - 1)
        if r.media is not None:
            keep = r.media.align(keep)
        if keep > 0:
            # A sliding-window cache may have dropped positions the prefix still needs.
            pos_min = native.seq_pos_min(slot.seq)
            if native.n_swa and pos_min > max(0, keep - native.n_swa):
                keep = 0
        if keep < len(slot.cached) and not native.seq_rm(slot.seq, keep, -1):
            keep = 0
        if keep == 0:
            native.seq_rm(slot.seq, -1, -1)
        del slot.cached[keep:]
        slot.request = r
        r.slot = slot
        r.done = keep
        r.admitted = now
        r.generation.stats.cached_tokens = keep
        self.prompt_tokens_cached += keep
        n_ctx = self.context_length
        limit = r.sampling.num_predict if r.sampling.num_predict >= 0 else n_ctx - len(r.prompt)
        r.limit = min(limit, n_ctx - len(r.prompt))
        if r.limit <= 0:
            self._finish(r, "length", now)
            return
        self._prefilling.append(r)

    def _decode_step(self) -> None:
        self._decode_images()
        batch = self._batch
        batch.clear()
        native = self.native
        generating: list[Request] = []
        for slot in self._slots:
            r = slot.request
            if r is not None and r.pending >= 0:
                r.chunk = [r.pending]
                r.index = batch.add_one(r.pending, len(slot.cached), slot.seq)
                generating.append(r)
        prefilled: list[Request] = []
        for r in self._prefilling:
            room = batch.room
            if room <= 0:
                break
            assert r.slot is not None
            end = len(r.prompt) if r.media is None else r.media.text_end(r.done, len(r.prompt))
            if end == r.done:
                continue  # an image comes first: decoded by the next step
            rest = end - r.done
            n = min(rest, room)
            r.chunk = r.prompt[r.done : r.done + n]
            last = r.done + n == len(r.prompt)
            idx = batch.add(r.chunk, r.done, r.slot.seq, output="last" if last else "none")
            r.index = idx if last else -1
            prefilled.append(r)
        if batch.n == 0:
            return
        native.set_embeddings(False)
        rc = native.decode(batch)
        self.steps += 1
        if rc != 0:
            self._fail_requests(
                generating + prefilled, ModelRunnerError(f"llama_decode failed ({rc})")
            )
            return
        now = time.perf_counter_ns()
        for r in prefilled:
            assert r.slot is not None
            r.slot.cached.extend(r.chunk)
            r.done += len(r.chunk)
            self.prompt_tokens_evaluated += len(r.chunk)
        self._prefilling = [r for r in self._prefilling if r.done < len(r.prompt)]
        for r in generating:
            assert r.slot is not None
            r.slot.cached.append(r.pending)
            r.pending = -1
        for r in generating + prefilled:
            if r.index >= 0:
                self._sample(r, now)
                r.index = -1

    def _decode_images(self) -> None:
        """Decode the image of every prefilling request whose next prompt part is one (an
        embedding batch cannot carry tokens, so each image is a decode of its own); a long
        image with causal attention, a batch of rows per step, so other streams keep going."""
        batch = self._embd_batch
        if batch is None:
            return
        native = self.native
        for r in list(self._prefilling):
            span = r.media.span_at(r.done) if r.media is not None else None
            if span is None or r.slot is None:
                continue
            first = r.done - span.start
            count = span.n_tokens - first
            if not span.non_causal:
                count = min(count, batch.capacity)
            stop = r.done + count
            last = stop == len(r.prompt)
            native.set_embeddings(False)
            rc, index = decode_span(
                native.ctx, batch, span, r.slot.seq, logits_last=last, first=first, count=count
            )
            self.steps += 1
            if rc != 0:
                self._fail_requests([r], ModelRunnerError(f"llama_decode failed ({rc})"))
                continue
            r.slot.cached.extend(r.prompt[r.done : stop])
            r.done = stop
            self.prompt_tokens_evaluated += count
            if last:
                self._prefilling.remove(r)
                r.index = index
                self._sample(r, time.perf_counter_ns())
                r.index = -1

    def _sample(self, r: Request, now: int) -> None:
        native = self.native
        token = r.sampler.sample(native, r.index)
        stats = r.generation.stats
        if not r.first:
            r.first = time.perf_counter_ns()
            stats.prompt_eval_ns = r.first - r.admitted
        if native.is_eog(token):
            self._finish(r, "stop", now)
            return
        stats.eval_count += 1
        self.tokens_generated += 1
        out = TokenOut(token=token, text=r.decoder.decode(native.piece(token)))
        if r.sampling.logprobs:
            out.logprob, out.top_logprobs = samplers.logprobs(
                native, r.index, token, r.sampling.top_logprobs
            )
        if not self._emit(r, out):
            self._finish(r, "cancel", now)
            return
        if stats.eval_count >= r.limit:
            self._finish(r, "length", now)
            return
        r.pending = token

    def _emit(self, r: Request, item: Any) -> bool:
        return self._outbox.put(r.loop, r.queue, item)

    def _finish(self, r: Request, reason: str, now: int) -> None:
        stats = r.generation.stats
        stats.done_reason = reason
        end = time.perf_counter_ns()
        if r.first:
            stats.eval_ns = end - r.first
        elif r.admitted:
            stats.prompt_eval_ns = end - r.admitted
        r.sampler.free()
        slot = r.slot
        if slot is not None:
            slot.request = None
            slot.last_used = time.monotonic()
            r.slot = None
        if r in self._prefilling:
            self._prefilling.remove(r)
        r.pending = -1
        self._emit(r, END)

    def _fail_requests(self, requests: list[Request], exc: BaseException) -> None:
        for r in requests:
            slot = r.slot
            if slot is not None:
                # The KV of this sequence is unknown now: forget it.
                self.native.seq_rm(slot.seq, -1, -1)
                slot.cached.clear()
            self._emit(r, exc)
            self._finish(r, "stop", time.perf_counter_ns())

    def _fail_all(self, exc: BaseException) -> None:
        with self._cond:
            waiting = list(self._waiting)
            self._waiting.clear()
        active = [s.request for s in self._slots if s.request is not None]
        error = exc if isinstance(exc, ModelRunnerError) else ModelRunnerError(str(exc))
        self._fail_requests(active + waiting, error)

    def _run_embeddings(self, job: EmbedJob) -> None:
        try:
            idle = [s for s in self._slots if s.request is None]
            job.future.set_result(self._embedder.run(job.tokens, idle))
        except Exception as exc:
            err = exc if isinstance(exc, ModelRunnerError) else ModelRunnerError(str(exc))
            job.future.set_exception(err)

    def _shutdown(self) -> None:
        now = time.perf_counter_ns()
        with self._cond:
            self._closing = True
            waiting = list(self._waiting)
            self._waiting.clear()
            embeds = list(self._embeds)
            self._embeds.clear()
        for r in waiting + [s.request for s in self._slots if s.request is not None]:
            self._finish(r, "cancel", now)
        for job in embeds:
            job.future.set_exception(ModelRunnerError("the model was unloaded"))
