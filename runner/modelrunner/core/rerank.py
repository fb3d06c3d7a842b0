"""Reranking with a reranker model (llama.cpp's rank pooling), as llama-server's ``/rerank``.

A reranker GGUF declares ``pooling_type`` RANK and carries a classification head (``cls.output``,
optionally ``cls``): loaded for embeddings, llama.cpp returns the head's outputs for each input
instead of an embedding, and the first is the relevance score (for Qwen3-style rerankers the
softmax over the "yes"/"no" labels, so P(yes)).

Each (query, document) pair becomes one input, laid out as llama-server's
``format_prompt_rerank`` does: the model's ``rerank`` chat template filled with ``{query}`` and
``{document}`` when it has one, otherwise ``[BOS] query [EOS] [SEP] document [EOS]`` where each
special token is present only if the vocabulary adds it. The engine adds the vocabulary's own
BOS/EOS when it tokenizes, so only the inner separators are spelled here. Because the engine
tokenizes each pair as one text, two things can differ from llama-server, which joins separately
tokenized halves: tokens at the query/document boundary (a SentencePiece vocabulary adds no space
before the document), and special tokens written inside a query or document (parsed as special).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelrunner.core.inference import InferenceService
from modelrunner.core.tokenize import loaded
from modelrunner.engine.base import EngineModel
from modelrunner.errors import InvalidRequest, ModelRunnerError
from modelrunner.names import Dialect
from modelrunner.store.records import ModelRecord

RANK_POOLING = 4  # LLAMA_POOLING_TYPE_RANK
TEMPLATE_KEY = "tokenizer.chat_template.rerank"


class NotReranker(ModelRunnerError):
    """llama-server's answer when it was not started for reranking."""

    status = 501


@dataclass
class RankResult:
    scores: list[float]
    prompt_tokens: int
    labels: int  # the head's outputs (1: a raw logit; 2+: softmax probabilities)


def is_reranker(record: ModelRecord) -> bool:
    return record.gguf is not None and record.gguf.arch_value("pooling_type") == RANK_POOLING


def _labels(record: ModelRecord) -> int:
    labels = record.gguf.arch_value("classifier.output_labels") if record.gguf else None
    return len(labels) if isinstance(labels, list) and labels else 1


def _flag(record: ModelRecord, name: str, default: bool) -> bool:
    value = record.gguf.kv.get(f"tokenizer.ggml.{name}") if record.gguf else None
    return bool(value) if isinstance(value, bool) else default


def _special(model: EngineModel, record: ModelRecord, key: str) -> str:
    token = record.gguf.kv.get(f"tokenizer.ggml.{key}") if record.gguf else None
    return model.token_text(token) if isinstance(token, int) and token >= 0 else ""


def pair_text(model: EngineModel, record: ModelRecord, query: str, document: str) -> str:
    gguf = record.gguf
    template = gguf.kv.get(TEMPLATE_KEY) if gguf is not None else None
    spm_like = (gguf.kv.get("tokenizer.ggml.model") if gguf else None) in ("llama", "bert")
    add_bos = _flag(record, "add_bos_token", spm_like)
    if isinstance(template, str):
        text = template.replace("{query}", query).replace("{document}", document)
        bos = _special(model, record, "bos_token_id")
        if add_bos and bos and text.startswith(bos):
            text = text[len(bos) :]  # the engine adds the vocabulary's BOS itself
        return text
    eos = _special(model, record, "eos_token_id") if _flag(record, "add_eos_token", False) else ""
    sep = _special(model, record, "seperator_token_id")
    sep = sep if _flag(record, "add_sep_token", False) else ""
    return f"{query}{eos}{sep}{document}"


async def rank(
    svc: InferenceService, ref: str, dialect: Dialect, query: str, documents: list[str]
) -> RankResult:
    record = await svc.record(ref, dialect)
    if not is_reranker(record):
        raise NotReranker(
            f'"{record.display(dialect)}" is not a reranking model (no rank pooling head)'
        )
    if not documents:
        return RankResult([], 0, _labels(record))
    async with loaded(svc, ref, dialect) as model:
        texts = [pair_text(model, record, query, d) for d in documents]
        result = await model.embed(texts, truncate=False)
    scores = []
    for vector in result.vectors:
        if not vector or not math.isfinite(vector[0]):
            raise InvalidRequest("the reranker returned no score")
        scores.append(float(vector[0]))
    return RankResult(scores, result.prompt_tokens, _labels(record))
