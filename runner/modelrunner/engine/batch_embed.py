"""Embeddings on the batched engine's decode thread, between generation steps, in idle slots."""

from __future__ import annotations

import llama_cpp
import numpy as np

from modelrunner.engine import batch_native as nat
from modelrunner.engine.batch_requests import Slot
from modelrunner.errors import InvalidRequest, ModelRunnerError


class Embedder:
    """Evaluates lists of inputs with the model's context and batch; counts its decodes."""

    def __init__(self, native: nat.NativeModel, batch: nat.NativeBatch, embedding: bool) -> None:
        self.native, self.batch = native, batch
        self.embedding = embedding  # the context's own mode, restored after each job
        self.decodes = 0

    def run(self, inputs: list[list[int]], idle: list[Slot]) -> list[list[float]]:
        native = self.native
        pooled = native.pooling != llama_cpp.LLAMA_POOLING_TYPE_NONE
        if pooled and any(len(t) > native.n_ubatch for t in inputs):
            raise InvalidRequest(
                "the input is longer than the batch size; load the model for embeddings"
            )
        # Several sequences per decode only with one KV stream: with a stream per sequence
        # llama.cpp splits a batch into equal per-sequence parts and pools each part alone.
        per_decode = len(idle) if native.spec.unified_kv else 1
        out: list[list[float]] = [[] for _ in inputs]
        native.set_embeddings(True)
        try:
            i = 0
            while i < len(inputs):
                group: list[tuple[int, Slot]] = []
                used = 0
                while i < len(inputs) and len(group) < per_decode:
                    n = len(inputs[i])
                    if group and used + n > native.n_ubatch:
                        break
                    group.append((i, idle[len(group)]))
                    used += n
                    i += 1
                for _, slot in group:
                    native.seq_rm(slot.seq, -1, -1)
                    slot.cached.clear()
                if pooled:
                    self.batch.clear()
                    for k, slot in group:
                        self.batch.add(inputs[k], 0, slot.seq, output="all")
                    self._decode()
                    for k, slot in group:
                        out[k] = [float(x) for x in native.embedding_seq(slot.seq)]
                else:
                    for k, slot in group:
                        out[k] = self._mean(inputs[k], slot.seq)
                for _, slot in group:
                    native.seq_rm(slot.seq, -1, -1)
        finally:
            native.set_embeddings(self.embedding)
        return out

    def _mean(self, tokens: list[int], seq: int) -> list[float]:
        """Mean of the token embeddings (a model without a pooling head), in batch-size chunks."""
        native = self.native
        total = np.zeros(native.n_embd_out, dtype=np.float64)
        for a in range(0, len(tokens), native.n_batch):
            chunk = tokens[a : a + native.n_batch]
            self.batch.clear()
            self.batch.add(chunk, a, seq, output="all")
            self._decode()
            for j in range(len(chunk)):
                total += native.embedding_row(j)
        return [float(x) for x in total / len(tokens)]

    def _decode(self) -> None:
        self.decodes += 1
        rc = self.native.decode(self.batch)
        if rc != 0:
            raise ModelRunnerError(f"llama_decode failed ({rc})")
