"""Per-request native sampling for the batched engine: llama.cpp sampler chains, repetition
penalties applied to the logits row, greedy argmax in numpy, grammar, and log-probabilities."""

from __future__ import annotations

import collections
import ctypes
import math
import threading
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from modelrunner.engine.base import Sampling
from modelrunner.engine.batch_native import NativeModel
from modelrunner.errors import InvalidRequest, ModelRunnerError

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


def _chain(native: NativeModel, s: Sampling, ban_eog: bool) -> Any:
    """The sampler chain without grammar and penalties (``Penalties``, applied to the logits
    first): (EOG ban) -> top_k -> typical -> top_p -> min_p -> temperature -> dist(seed), as
    llama.cpp orders them; greedy at temperature 0."""
    params = llama_cpp.llama_sampler_chain_default_params()
    params.no_perf = True
    chain = llama_cpp.llama_sampler_chain_init(params)
    if not chain:
        raise ModelRunnerError("llama.cpp could not create a sampler")

    def add(smpl: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, smpl)

    if ban_eog:
        eog = native.eog_tokens()
        biases: Any = (llama_cpp.llama_logit_bias * len(eog))()
        for i, token in enumerate(eog):
            biases[i].token = token
            biases[i].bias = -math.inf
        add(llama_cpp.llama_sampler_init_logit_bias(native.n_vocab, len(eog), biases))
    if s.temperature <= 0:
        add(llama_cpp.llama_sampler_init_greedy())
        return chain
    if s.top_k > 0:
        add(llama_cpp.llama_sampler_init_top_k(s.top_k))
    if 0 < s.typical_p < 1:
        add(llama_cpp.llama_sampler_init_typical(s.typical_p, 1))
    if 0 < s.top_p < 1:
        add(llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
    if s.min_p > 0:
        add(llama_cpp.llama_sampler_init_min_p(s.min_p, 1))
    add(llama_cpp.llama_sampler_init_temp(s.temperature))
    seed = s.seed if s.seed >= 0 else llama_cpp.LLAMA_DEFAULT_SEED
    add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


class Penalties:
    """Repeat, frequency and presence penalties over the last ``last_n`` generated tokens.

    The same arithmetic as llama.cpp's penalties sampler, but applied to the logits row at the
    few token ids in the window instead of looking up every candidate (262k for Gemma: ~1 ms a
    token, more than the rest of sampling). ``apply`` returns what ``restore`` needs to put the
    raw logits back (log-probabilities are reported from them).
    """

    def __init__(self, last_n: int, repeat: float, frequency: float, presence: float) -> None:
        self.window: collections.deque[int] = collections.deque(maxlen=last_n)
        self.counts: collections.Counter[int] = collections.Counter()
        self.repeat = np.float32(repeat)
        self.frequency = np.float32(frequency)
        self.presence = np.float32(presence)

    @classmethod
    def for_sampling(cls, s: Sampling, n_ctx: int) -> Penalties | None:
        last_n = s.repeat_last_n if s.repeat_last_n >= 0 else n_ctx
        neutral = s.repeat_penalty == 1.0 and s.frequency_penalty == 0 and s.presence_penalty == 0
        if last_n == 0 or neutral:
            return None
        return cls(last_n, s.repeat_penalty, s.frequency_penalty, s.presence_penalty)

    def accept(self, token: int) -> None:
        window = self.window
        if len(window) == window.maxlen:
            old = window[0]
            self.counts[old] -= 1
            if not self.counts[old]:
                del self.counts[old]
        window.append(token)
        self.counts[token] += 1

    def apply(
        self, logits: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]] | None:
        if not self.counts:
            return None
        ids = np.fromiter(self.counts.keys(), dtype=np.intp, count=len(self.counts))
        count = np.fromiter(self.counts.values(), dtype=np.float32, count=len(self.counts))
        raw = logits[ids]
        penalized = np.where(raw <= 0, raw * self.repeat, raw / self.repeat)
        penalized -= count * self.frequency + (count > 0).astype(np.float32) * self.presence
        logits[ids] = penalized
        return ids, raw

    @staticmethod
    def restore(
        logits: npt.NDArray[np.float32],
        saved: tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]] | None,
    ) -> None:
        if saved is not None:
            logits[saved[0]] = saved[1]


class RequestSampler:
    """One request's native samplers: a chain, plus a grammar sampler for GBNF requests.

    Without a grammar, ``llama_sampler_sample`` does everything in C. With one, checking the
    grammar against the whole vocabulary (262k tokens for Gemma) costs ~100 ms a token, so, as
    llama.cpp's own server does, the chain picks a token first and only that token is checked;
    only when the grammar rejects it is the grammar applied to every candidate and the chain run
    again on what is left. Raises InvalidRequest for a grammar llama.cpp cannot parse.
    """

    def __init__(self, native: NativeModel, s: Sampling, *, ban_eog: bool = False) -> None:
        self.chain: Any = None
        self.grammar: Any = None
        self.penalties = Penalties.for_sampling(s, native.n_ctx_seq)
        self._lock = threading.Lock()
        # Greedy without a grammar: the argmax of the logits row in numpy (~50 us) instead of
        # llama.cpp's sampler, which first copies all 262k candidates of Gemma's vocabulary into
        # a token-data array (~0.3 ms a token). Same pick: the first of equal maxima.
        self._argmax = s.temperature <= 0 and not s.grammar
        self._banned = np.asarray(native.eog_tokens(), dtype=np.intp) if ban_eog else None
        if s.grammar:
            self.grammar = llama_cpp.llama_sampler_init_grammar(
                native.vocab, s.grammar.encode(), b"root"
            )
            if not self.grammar:
                raise InvalidRequest("invalid grammar")
        try:
            self.chain = _chain(native, s, ban_eog)
        except BaseException:
            self.free()
            raise
        if self.grammar:
            n = native.n_vocab
            self._ids = np.arange(n, dtype=np.int32)
            self._cand = np.zeros(n, dtype=_TOKEN_DATA)
            self._one = np.zeros(1, dtype=_TOKEN_DATA)
            self._all: Any = llama_cpp.llama_token_data_array(
                data=ctypes.cast(self._cand.ctypes.data, llama_cpp.llama_token_data_p),
                size=n,
                selected=-1,
                sorted=False,
            )
            self._single: Any = llama_cpp.llama_token_data_array(
                data=ctypes.cast(self._one.ctypes.data, llama_cpp.llama_token_data_p),
                size=1,
                selected=-1,
                sorted=False,
            )

    def sample(self, native: NativeModel, index: int) -> int:
        """Pick (and accept) the next token from the logits at batch ``index``."""
        penalties = self.penalties
        if penalties is None:
            return self._sample(native, index)
        logits = native.logits_row(index)
        saved = penalties.apply(logits)
        try:
            token = self._sample(native, index)
        finally:
            penalties.restore(logits, saved)
        penalties.accept(token)
        return token

    def _sample(self, native: NativeModel, index: int) -> int:
        if self._argmax:
            logits = native.logits_row(index)
            banned = self._banned
            if banned is None:
                return int(np.argmax(logits))
            saved = logits[banned]
            logits[banned] = -np.inf
            token = int(np.argmax(logits))
            logits[banned] = saved
            return token
        if not self.grammar:
            return int(llama_cpp.llama_sampler_sample(self.chain, native.ctx, index))
        logits = native.logits_row(index)
        token = self._apply(logits, grammar_first=False)
        self._one["id"][0] = token
        self._one["logit"][0] = 1.0
        self._single.size = 1
        self._single.selected = -1
        self._single.sorted = False
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self._single))
        if not np.isfinite(self._one["logit"][0]):
            token = self._apply(logits, grammar_first=True)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain, token)
        return token

    def _apply(self, logits: npt.NDArray[np.float32], *, grammar_first: bool) -> int:
        cand = self._cand
        cand["id"] = self._ids
        cand["logit"] = logits
        cand["p"] = 0.0
        arr = self._all
        arr.size = len(cand)
        arr.selected = -1
        arr.sorted = False
        if grammar_first:
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(arr))
        if not 0 <= arr.selected < arr.size:
            raise ModelRunnerError("the sampler selected no token")
        return int(cand["id"][arr.selected])

    def free(self) -> None:
        with self._lock:
            chain, grammar = self.chain, self.grammar
            self.chain = self.grammar = None
        if chain:
            llama_cpp.llama_sampler_free(chain)
        if grammar:
            llama_cpp.llama_sampler_free(grammar)


def logprobs(
    native: NativeModel, index: int, token: int, top: int
) -> tuple[float, list[tuple[str, float]]]:
    """Log-softmax of the raw logits row at batch ``index``: the token's and the ``top`` best."""
    logits = native.logits_row(index).astype(np.float64)
    peak = float(logits.max())
    logz = peak + math.log(float(np.exp(logits - peak).sum()))
    top = max(top, 1)
    best = np.argpartition(-logits, top)[:top]
    best = best[np.argsort(-logits[best])]
    return float(logits[token] - logz), [
        (
            native.piece(int(i), special=True).decode("utf-8", errors="replace"),
            float(logits[i] - logz),
        )
        for i in best
    ]
