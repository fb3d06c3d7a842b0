"""How the batched engine sizes its llama.cpp context: engine knobs beyond ``LoadOptions``."""

from __future__ import annotations

from dataclasses import dataclass

import llama_cpp

from modelrunner.engine import batch_native as nat
from modelrunner.engine.base import LoadOptions
from modelrunner.engine.cpu import default_threads

_EMBED_SEQUENCES = 32  # inputs an embedding model evaluates in one decode (sharing n_ctx)


@dataclass(frozen=True)
class BatchTuning:
    """Engine knobs that are not part of ``LoadOptions`` (defaults measured in BENCHMARKS.md)."""

    threads: int = 0  # 0 (and no num_thread in LoadOptions): one per physical core (cpu.py)
    threads_batch: int = 0  # 0: same as threads
    flash_attn: bool | None = None  # None: llama.cpp decides
    # Full-size sliding-window KV (Gemma 2/3...): every cached prefix stays reusable, but the
    # SWA layers then need the whole context each (about 2.7x the KV of Gemma 3 27B). Off, a
    # prefix is reused only while its window is still in the cache (checked per request; chat
    # continuations and shared system prompts normally are), else recomputed.
    swa_full: bool = False
    unified_kv: bool = False  # True: one KV pool of num_ctx * parallel shared by all slots
    repack: bool = True  # llama.cpp's repacked CPU weight layouts (faster batched matmuls)
    # Busy-wait level (0-100) of the ggml thread pool's idle workers between steps
    # (threadpool.py): 0 leaves the cores to the Python work between steps.
    poll: int = 0


def context_spec(options: LoadOptions, tuning: BatchTuning) -> nat.ContextSpec:
    """The context for ``options``: ``parallel`` sequences of ``num_ctx`` tokens each."""
    n_seq = max(1, min(options.parallel, int(llama_cpp.llama_max_parallel_sequences())))
    threads = options.num_thread or tuning.threads or default_threads()
    n_batch = max(options.num_batch, n_seq)
    n_ubatch = options.num_batch
    unified = tuning.unified_kv
    n_ctx_seq = options.num_ctx
    if options.embedding:
        # An embedding batch must be one micro-batch (non-causal models need a whole input
        # in one; pooling is per micro-batch). One KV stream keeps llama.cpp from splitting
        # the batch per sequence, and lets a list of inputs share it as one sequence each
        # (more sequences than slots cost nothing then). llama.cpp pads the context to a
        # multiple of 256.
        unified = True
        n_seq = max(n_seq, _EMBED_SEQUENCES)
        n_ctx_seq = n_batch = n_ubatch = -(-options.num_ctx // 256) * 256
    return nat.ContextSpec(
        n_ctx_seq=n_ctx_seq,
        n_seq=n_seq,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
        n_threads=threads,
        n_threads_batch=tuning.threads_batch or threads,
        embeddings=options.embedding,
        unified_kv=unified,
        swa_full=tuning.swa_full,
        flash_attn=tuning.flash_attn,
        poll=tuning.poll,
    )
