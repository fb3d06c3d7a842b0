"""A tiny reranker GGUF with random weights: Qwen3's architecture with a rank head, as llama.cpp
loads Qwen3-Reranker conversions (``pooling_type`` RANK, ``cls.output.weight`` of shape
``{n_embd, n_cls_out}``, ``classifier.output_labels`` ["yes", "no"]). llama.cpp scores a pair with
the softmax of the head at the last token, so a score is P("yes"), between 0 and 1.

The vocabulary is the tiny model's (byte tokens plus a few words); a rerank template
(``tokenizer.chat_template.rerank``) is written when asked, as real Qwen3 rerankers carry one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType, PoolingType

from tests.support.tiny_model import _vocab

N_EMBD = 64
N_HEAD = 4
N_LAYER = 2
N_FF = 128
CONTEXT = 512
HEAD_DIM = N_EMBD // N_HEAD
RERANK_TEMPLATE = "<s>query: {query}\ndocument: {document}\nrelevant:"


def write_tiny_reranker(path: Path, seed: int = 0, template: str | None = None) -> Path:
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    writer = GGUFWriter(str(path), "qwen3")
    writer.add_name("tiny-test-reranker")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(LlamaFileType.ALL_F32)
    writer.add_pooling_type(PoolingType.RANK)
    writer.add_classifier_output_labels(["yes", "no"])
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    if template is not None:
        writer.add_chat_template([{"name": "rerank", "template": template}])

    def tensor(name: str, *shape: int, scale: float = 0.02) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def ones(name: str, size: int) -> None:
        writer.add_tensor(name, np.ones(size, dtype=np.float32))

    tensor("token_embd.weight", len(tokens), N_EMBD, scale=1.0)
    ones("output_norm.weight", N_EMBD)
    tensor("cls.output.weight", 2, N_EMBD, scale=1.0)
    for i in range(N_LAYER):
        ones(f"blk.{i}.attn_norm.weight", N_EMBD)
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{i}.{part}.weight", N_EMBD, N_EMBD)
        ones(f"blk.{i}.attn_q_norm.weight", HEAD_DIM)
        ones(f"blk.{i}.attn_k_norm.weight", HEAD_DIM)
        ones(f"blk.{i}.ffn_norm.weight", N_EMBD)
        tensor(f"blk.{i}.ffn_gate.weight", N_FF, N_EMBD)
        tensor(f"blk.{i}.ffn_up.weight", N_FF, N_EMBD)
        tensor(f"blk.{i}.ffn_down.weight", N_EMBD, N_FF)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
