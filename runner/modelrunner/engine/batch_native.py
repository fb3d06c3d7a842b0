"""Thin typed helpers over llama-cpp-python's low-level ctypes API, for the batched engine.

Everything here is a direct call into llama.cpp: loading a model and a multi-sequence context,
a ``llama_batch`` whose arrays are numpy buffers (so a prompt chunk is written with one slice
assignment instead of a Python loop), tokenization. Nothing here holds request state;
``batch_sampling.py`` samples, ``batched.py`` owns the decode loop.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from modelrunner.engine.threadpool import ThreadPool
from modelrunner.errors import InvalidRequest, ModelRunnerError

_backend_lock = threading.Lock()
_backend_ready = False

_I32P = ctypes.POINTER(ctypes.c_int32)


def backend_init() -> None:
    """``llama_backend_init`` once per process (llama-cpp-python's ``Llama`` does the same)."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            # llama-cpp-python prints every llama.cpp log line unless its logger is raised, as
            # ``Llama(verbose=False)`` does.
            log = logging.getLogger("llama-cpp-python")
            if log.level == logging.NOTSET:
                log.setLevel(logging.ERROR)
            llama_cpp.llama_backend_init()
            _backend_ready = True


@dataclass(frozen=True)
class ContextSpec:
    """How the llama.cpp context is laid out (chosen by the engine from ``LoadOptions``)."""

    n_ctx_seq: int  # context per sequence
    n_seq: int  # sequences (slots)
    n_batch: int
    n_ubatch: int
    n_threads: int
    n_threads_batch: int
    embeddings: bool
    unified_kv: bool
    swa_full: bool
    flash_attn: bool | None  # None: llama.cpp decides (auto)
    poll: int = 0  # idle workers' busy-wait level (threadpool.py), 0-100


class NativeModel:
    """A ``llama_model`` plus one ``llama_context`` with ``n_seq`` sequences."""

    def __init__(
        self,
        path: Path,
        *,
        n_gpu_layers: int,
        use_mmap: bool,
        spec: ContextSpec,
        extra_bufts: bool = True,
    ) -> None:
        backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = n_gpu_layers
        mparams.load_mode = (
            llama_cpp.LLAMA_LOAD_MODE_MMAP if use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE
        )
        mparams.use_extra_bufts = extra_bufts
        if not path.is_file():
            raise ModelRunnerError(f"unable to load model: {path} does not exist")
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise ModelRunnerError(f"unable to load model: llama.cpp could not load {path.name}")
        self.model: Any = model
        cparams = llama_cpp.llama_context_default_params()
        n_ctx = spec.n_ctx_seq if spec.unified_kv else spec.n_ctx_seq * spec.n_seq
        cparams.n_ctx = n_ctx
        cparams.n_batch = spec.n_batch
        cparams.n_ubatch = spec.n_ubatch
        cparams.n_seq_max = spec.n_seq
        cparams.n_threads = spec.n_threads
        cparams.n_threads_batch = spec.n_threads_batch
        cparams.embeddings = spec.embeddings
        cparams.kv_unified = spec.unified_kv
        cparams.swa_full = spec.swa_full
        cparams.no_perf = True
        if spec.flash_attn is not None:
            cparams.flash_attn_type = (
                llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
                if spec.flash_attn
                else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
        ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(self.model)
            raise ModelRunnerError("unable to load model: llama.cpp could not create a context")
        self.ctx: Any = ctx
        self.spec = spec
        self.pool = ThreadPool(ctx, max(spec.n_threads, spec.n_threads_batch), spec.poll)
        self.memory: Any = llama_cpp.llama_get_memory(self.ctx)
        self.vocab: Any = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(self.ctx))
        self.n_batch = int(llama_cpp.llama_n_batch(self.ctx))
        self.n_ubatch = int(llama_cpp.llama_n_ubatch(self.ctx))
        self.n_swa = 0 if spec.swa_full else int(llama_cpp.llama_model_n_swa(self.model))
        self.n_embd_out = int(llama_cpp.llama_model_n_embd_out(self.model))
        self.pooling = int(llama_cpp.llama_pooling_type(self.ctx))
        self.encoder_only = bool(llama_cpp.llama_model_has_encoder(self.model)) and not bool(
            llama_cpp.llama_model_has_decoder(self.model)
        )
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos = int(llama_cpp.llama_vocab_eos(self.vocab))
        self._embeddings = spec.embeddings
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._pieces_lock = threading.Lock()
        self._eog: list[int] | None = None

    # -- text -----------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        data = text.encode()
        size = len(data) + 8
        buf = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, size, add_bos, True)
        if n < 0:
            size = -n
            buf = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, size, add_bos, True)
            if n < 0:
                raise InvalidRequest("the input could not be tokenized")
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (cached: the vocabulary never changes)."""
        key = (token, special)
        cached = self._pieces.get(key)
        if cached is not None:
            return cached
        size = 64
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, special)
        if n < 0:
            size = -n
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, special)
        out = buf.raw[: max(n, 0)]
        with self._pieces_lock:
            self._pieces[key] = out
        return out

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> bytes:
        out = b"".join(self.piece(t, special=special) for t in tokens)
        # As llama-cpp-python does: drop the space a SentencePiece vocabulary puts after BOS.
        if tokens and tokens[0] == self.bos and out[:1] == b" ":
            return out[1:]
        return out

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def eog_tokens(self) -> list[int]:
        """Every end-of-generation token of the vocabulary (computed once)."""
        if self._eog is None:
            self._eog = [t for t in range(self.n_vocab) if self.is_eog(t)]
        return self._eog

    # -- decoding -------------------------------------------------------------------------------

    def set_embeddings(self, on: bool) -> None:
        if on != self._embeddings:
            llama_cpp.llama_set_embeddings(self.ctx, on)
            self._embeddings = on

    def decode(self, batch: NativeBatch) -> int:
        batch.struct.n_tokens = batch.n
        if self.encoder_only:
            return int(llama_cpp.llama_encode(self.ctx, batch.struct))
        return int(llama_cpp.llama_decode(self.ctx, batch.struct))

    def logits_row(self, index: int) -> npt.NDArray[np.float32]:
        raw = llama_cpp.llama_get_logits_ith(self.ctx, index)
        if not raw:
            raise ModelRunnerError("llama.cpp returned no logits")
        return np.ctypeslib.as_array(raw, shape=(self.n_vocab,))

    def embedding_row(self, index: int) -> npt.NDArray[np.float32]:
        raw = llama_cpp.llama_get_embeddings_ith(self.ctx, index)
        if not raw:
            raise ModelRunnerError("llama.cpp returned no embeddings")
        return np.ctypeslib.as_array(raw, shape=(self.n_embd_out,))

    def embedding_seq(self, seq: int) -> npt.NDArray[np.float32]:
        raw = llama_cpp.llama_get_embeddings_seq(self.ctx, seq)
        if not raw:
            raise ModelRunnerError("llama.cpp returned no pooled embeddings")
        # rank pooling (rerankers) yields the classifier's n_cls_out scores, not an embedding
        rank = self.pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK
        size = int(llama_cpp.llama_model_n_cls_out(self.model)) if rank else self.n_embd_out
        return np.ctypeslib.as_array(raw, shape=(size,))

    # -- KV memory ------------------------------------------------------------------------------

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        if not self.memory:
            return True
        return bool(llama_cpp.llama_memory_seq_rm(self.memory, seq, p0, p1))

    def seq_pos_min(self, seq: int) -> int:
        if not self.memory:
            return -1
        return int(llama_cpp.llama_memory_seq_pos_min(self.memory, seq))

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        self.pool.close()
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None

    @property
    def size_bytes(self) -> int:
        return int(llama_cpp.llama_model_size(self.model)) if self.model else 0


class NativeBatch:
    """A ``llama_batch`` backed by numpy arrays: one sequence id per token."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.n = 0
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        base = self.seq.ctypes.data
        self._seq_ptrs = (_I32P * capacity)(
            *[ctypes.cast(base + 4 * i, _I32P) for i in range(capacity)]
        )
        struct: Any = llama_cpp.llama_batch()
        struct.n_tokens = 0
        struct.token = self.token.ctypes.data_as(_I32P)
        struct.embd = None
        struct.pos = self.pos.ctypes.data_as(_I32P)
        struct.n_seq_id = self.n_seq_id.ctypes.data_as(_I32P)
        struct.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(_I32P))
        struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.struct = struct

    @property
    def room(self) -> int:
        return self.capacity - self.n

    def clear(self) -> None:
        self.n = 0

    def add(self, tokens: Sequence[int], pos: int, seq: int, *, output: str = "last") -> int:
        """Append tokens of one sequence at positions ``pos...``; ``output`` is ``last``,
        ``all`` or ``none``. Returns the batch index of the last token."""
        a = self.n
        b = a + len(tokens)
        if b > self.capacity:
            raise ValueError("batch overflow")
        self.token[a:b] = tokens
        self.pos[a:b] = np.arange(pos, pos + len(tokens), dtype=np.int32)
        self.seq[a:b] = seq
        self.logits[a:b] = 1 if output == "all" else 0
        if output == "last":
            self.logits[b - 1] = 1
        self.n = b
        return b - 1

    def add_one(self, token: int, pos: int, seq: int) -> int:
        i = self.n
        self.token[i] = token
        self.pos[i] = pos
        self.seq[i] = seq
        self.logits[i] = 1
        self.n = i + 1
        return i


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    x = np.asarray(a[:n], dtype=np.int64)
    y = np.asarray(b[:n], dtype=np.int64)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n
