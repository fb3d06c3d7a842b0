"""The llama.cpp engine (llama-cpp-python, in process): one request at a time per loaded model.

Each generation runs in a worker thread that feeds tokens to the event loop through a queue, so a
slow client never blocks llama.cpp and a disconnected one stops the worker within a token.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import math
import os
import random
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import LlamaGrammar

from modelrunner.engine.base import (
    Embeddings,
    GenerationStats,
    LoadOptions,
    Sampling,
    TokenOut,
)
from modelrunner.engine.cpu import default_threads
from modelrunner.engine.vision import (
    EmbdBatch,
    Media,
    MediaPrompt,
    Projector,
    decode_span,
)
from modelrunner.errors import InvalidRequest, ModelRunnerError, Unsupported

_END = object()


def gpu_available() -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


class LlamaEngine:
    def load(self, options: LoadOptions) -> LlamaModel:
        return LlamaModel(options)


class LlamaModel:
    def __init__(self, options: LoadOptions) -> None:
        self.options = options
        n_gpu = options.num_gpu
        if n_gpu < 0:
            n_gpu = -1 if gpu_available() else 0
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(options.model_path),
                n_ctx=options.num_ctx,
                n_batch=options.num_batch,
                n_ubatch=options.num_batch,
                n_gpu_layers=n_gpu,
                n_threads=options.num_thread or default_threads(),
                use_mmap=options.use_mmap,
                embedding=options.embedding,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelRunnerError(f"unable to load model: {exc}") from None
        self._lock = threading.Lock()
        self._vocab = self.llm._model.vocab
        self.gpu_layers = n_gpu
        self.projector: Projector | None = None
        if options.projector is not None and not options.embedding:
            try:
                self.projector = Projector(
                    options.projector,
                    self.llm._model.model,
                    n_threads=options.num_thread or default_threads(),
                    use_gpu=n_gpu != 0,
                )
            except BaseException:
                self.llm.close()
                raise

    @property
    def context_length(self) -> int:
        return int(self.llm.n_ctx())

    @property
    def size_bytes(self) -> int:
        """The weights' files (with the projector's, as Ollama counts a vision model)."""
        projector = self.options.projector if self.projector is not None else None
        return os.path.getsize(self.options.model_path) + (
            os.path.getsize(projector) if projector is not None else 0
        )

    @property
    def slots(self) -> int:
        return 1  # one llama_cpp.Llama: requests take turns

    @property
    def size_vram(self) -> int:
        """Bytes offloaded to the GPU (all of the weights when any layer is, as an estimate)."""
        return self.size_bytes if self.gpu_layers != 0 and gpu_available() else 0

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return list(self.llm.tokenize(text.encode(), add_bos=add_bos, special=True))

    def detokenize(self, tokens: list[int]) -> str:
        return self.llm.detokenize(tokens).decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def media_prompt(
        self, text: str, images: list[bytes], *, add_bos: bool, encode: bool = True
    ) -> MediaPrompt:
        """Tokens and image embeddings for a prompt with images (see ``engine/vision.py``)."""
        if self.projector is None:
            raise Unsupported("image input is not supported by this model")
        return self.projector.prompt(text, images, add_bos=add_bos, encode=encode)

    def generate(
        self, prompt: list[int], sampling: Sampling, *, media: Media | None = None
    ) -> LlamaGeneration:
        if len(prompt) >= self.context_length:
            raise InvalidRequest(
                f"the input length ({len(prompt)} tokens) exceeds the context length "
                f"({self.context_length})"
            )
        if media is not None and media.spans:
            if self.projector is None:
                raise Unsupported("image input is not supported by this model")
            if media.spans[-1].end >= len(prompt):
                raise InvalidRequest("the prompt must not end with an image")
            media.check_batch(min(int(self.llm.n_batch), self.options.num_batch))
        return LlamaGeneration(self, prompt, sampling, media)

    async def embed(self, texts: list[str], *, truncate: bool = True) -> Embeddings:
        def run() -> Embeddings:
            with self._lock:
                counts = [len(self.tokenize(t)) for t in texts]
                if not truncate and any(c > self.context_length for c in counts):
                    raise InvalidRequest("the input length exceeds the context length")
                vectors: Any = self.llm.embed(texts, normalize=False, truncate=True)
            return Embeddings(vectors=[_pooled(v) for v in vectors], prompt_tokens=sum(counts))

        return await anyio.to_thread.run_sync(run)

    def close(self) -> None:
        with self._lock:
            if self.projector is not None:
                self.projector.close()
            self.llm.close()


class LlamaGeneration:
    def __init__(
        self, model: LlamaModel, prompt: list[int], sampling: Sampling, media: Media | None = None
    ) -> None:
        self.model = model
        self.prompt = prompt
        self.sampling = sampling
        self.media = media
        self.stats = GenerationStats(prompt_tokens=len(prompt))
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    async def __aiter__(self) -> AsyncIterator[TokenOut]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        worker = threading.Thread(target=self._run, args=(emit,), daemon=True)
        worker.start()
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._cancel.set()

    def _run(self, emit: Any) -> None:
        try:
            with self.model._lock:
                self._generate(emit)
        except BaseException as exc:
            emit(exc)
        finally:
            emit(_END)

    def _generate(self, emit: Any) -> None:
        llm = self.model.llm
        s = self.sampling
        self.stats.cached_tokens = _common_prefix(list(llm._input_ids), self.prompt)
        llm.last_n_tokens_size = s.repeat_last_n if s.repeat_last_n >= 0 else llm.n_ctx()
        llm.set_seed(s.seed if s.seed >= 0 else random.randint(0, 2**31 - 1))
        grammar = LlamaGrammar.from_string(s.grammar, verbose=False) if s.grammar else None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        limit = s.num_predict if s.num_predict >= 0 else llm.n_ctx() - len(self.prompt)
        limit = min(limit, llm.n_ctx() - len(self.prompt))
        start = time.perf_counter_ns()
        first = 0
        self.stats.done_reason = "length"
        if limit <= 0:
            return
        if self.media is not None and self.media.spans:
            self._prefill_images(self.media)
        tokens = llm.generate(
            self.prompt,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            typical_p=s.typical_p,
            temp=s.temperature,
            repeat_penalty=s.repeat_penalty,
            frequency_penalty=s.frequency_penalty,
            presence_penalty=s.presence_penalty,
            grammar=grammar,
        )
        try:
            for token in tokens:
                now = time.perf_counter_ns()
                if not first:
                    first = now
                    self.stats.prompt_eval_ns = now - start
                if self._cancel.is_set():
                    self.stats.done_reason = "cancel"
                    break
                if self.model.is_eog(token):
                    self.stats.done_reason = "stop"
                    break
                self.stats.eval_count += 1
                piece = llm.detokenize([token], prev_tokens=None)
                out = TokenOut(token=token, text=decoder.decode(piece))
                if s.logprobs:
                    out.logprob, out.top_logprobs = self._logprobs(token)
                emit(out)
                if self.stats.eval_count >= limit:
                    self.stats.done_reason = "length"
                    break
        finally:
            with contextlib.suppress(Exception):
                tokens.close()
            self.stats.eval_ns = time.perf_counter_ns() - (first or start)

    def _prefill_images(self, media: Media) -> None:
        """Evaluate the prompt up to the end of its last image: text through ``Llama.eval``,
        each image as an embedding batch, placeholders recorded as its tokens, so that
        ``Llama.generate`` then finds this prefix cached and evaluates only the rest."""
        llm = self.model.llm
        prompt = self.prompt
        keep = media.align(min(_common_prefix(list(llm._input_ids), prompt), len(prompt) - 1))
        if not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            keep = 0
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        llm.n_tokens = keep
        end = media.spans[-1].end
        batch = EmbdBatch(llm.n_batch, llm.n_embd())
        pos = keep
        while pos < end:
            span = media.span_at(pos)
            if span is None:
                stop = media.text_end(pos, end)
                llm.eval(prompt[pos:stop])
                pos = stop
                continue
            rc, _ = decode_span(llm._ctx.ctx, batch, span, 0, logits_last=False)
            if rc != 0:
                llm.n_tokens = pos
                raise ModelRunnerError(f"llama_decode failed ({rc})")
            llm.input_ids[pos : span.end] = prompt[pos : span.end]
            pos = llm.n_tokens = span.end

    def _logprobs(self, token: int) -> tuple[float, list[tuple[str, float]]]:
        llm = self.model.llm
        # The logits of the position that produced ``token`` are still in the context: the next
        # decode only runs when the generator is asked for the next token.
        raw = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(raw, shape=(llm.n_vocab(),)).astype(np.float64)
        top = max(self.sampling.top_logprobs, 1)
        peak = logits.max()
        logz = peak + math.log(float(np.exp(logits - peak).sum()))
        best = np.argpartition(-logits, top)[:top]
        best = best[np.argsort(-logits[best])]
        return float(logits[token] - logz), [
            (self.model.token_text(int(i)), float(logits[i] - logz)) for i in best
        ]


def _pooled(vector: Any) -> list[float]:
    """A model without a pooling type yields one vector per token: average them (mean pooling)."""
    array = np.asarray(vector, dtype=np.float64)
    if array.ndim == 2:
        array = array.mean(axis=0)
    return [float(x) for x in array]


def _common_prefix(a: list[int], b: list[int]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count
