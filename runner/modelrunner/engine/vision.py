"""Image input through llama.cpp's multimodal library (``mtmd``, llama-cpp-python's ``mtmd_cpp``).

A model with a projector (``mmproj``) gets a ``Projector``: it turns a prompt whose images are
marked with ``MARKER`` into a ``MediaPrompt``: the text tokens, and for each image as many
placeholder tokens as the image takes in the model's context, plus the image's embeddings
(computed here, by the projector, off the decode loop). Placeholders are negative ids derived
from the image's bytes, so the engines' prompt caches match a repeated image like any repeated
text, and they never reach llama.cpp as tokens: the engines decode each image span as one
embedding batch (``decode_span``).

Images are decoded with Pillow (JPEG, PNG, WebP, GIF, BMP), not with mtmd's helper, which would
start ffmpeg for formats stb_image does not read.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import llama_cpp
import numpy as np
import numpy.typing as npt

from modelrunner.engine.base import Generation, Sampling
from modelrunner.errors import InvalidRequest, ModelRunnerError, Unsupported

MARKER = "<__modelrunner_image__>"
IMAGE_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"})
MAX_PIXELS = 50_000_000  # decoded size limit (a 7000x7000 image), against decompression bombs
BAD_IMAGE = "Failed to load image or audio file"  # llama-server's words

_I32P = ctypes.POINTER(ctypes.c_int32)
_PLACEHOLDER_SPACE = 1 << 30


@dataclass(frozen=True)
class ImageSpan:
    """One image in a prompt: its placeholder tokens start at ``start``; ``embd`` holds one
    embedding row per placeholder."""

    start: int
    embd: npt.NDArray[np.float32]
    non_causal: bool = False

    @property
    def n_tokens(self) -> int:
        return int(self.embd.shape[0])

    @property
    def end(self) -> int:
        return self.start + self.n_tokens


@dataclass
class Media:
    """The images of a prompt, in prompt order."""

    spans: list[ImageSpan] = field(default_factory=list)

    def shifted(self, offset: int) -> Media:
        return Media([ImageSpan(s.start + offset, s.embd, s.non_causal) for s in self.spans])

    def span_at(self, pos: int) -> ImageSpan | None:
        """The image whose placeholders cover position ``pos``."""
        return next((s for s in self.spans if s.start <= pos < s.end), None)

    def text_end(self, pos: int, end: int) -> int:
        """Where the text run starting at ``pos`` stops: the next image (``pos`` itself inside
        one), or ``end``."""
        return min([max(s.start, pos) for s in self.spans if s.end > pos] + [end])

    def check_batch(self, n_ubatch: int) -> None:
        """An image with non-causal attention must be decoded in one micro-batch."""
        if any(s.non_causal and s.n_tokens > n_ubatch for s in self.spans):
            raise InvalidRequest(
                f"an image takes more tokens than the batch size (num_batch {n_ubatch})"
            )

    def align(self, keep: int) -> int:
        """A cached prefix length that does not cut an image in two."""
        for s in self.spans:
            if s.start < keep < s.end:
                return s.start
        return keep


@dataclass
class MediaPrompt:
    tokens: list[int]
    media: Media


@runtime_checkable
class VisionModel(Protocol):
    """An engine model that can take images (it was loaded with a projector)."""

    def media_prompt(
        self, text: str, images: Sequence[bytes], *, add_bos: bool, encode: bool = True
    ) -> MediaPrompt:
        """Tokenize ``text`` (images marked with ``MARKER``) and encode the images (unless only
        the count is wanted: ``encode=False`` leaves the embeddings zero); blocking."""
        ...

    def generate(
        self, prompt: list[int], sampling: Sampling, *, media: Media | None = None
    ) -> Generation: ...


def load_image(data: bytes) -> tuple[int, int, bytes]:
    """Decode an image to (width, height, RGB bytes); InvalidRequest when it is not one."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in IMAGE_FORMATS:
                raise InvalidRequest(BAD_IMAGE)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InvalidRequest(f"image too large ({width}x{height})")
            rgb = image.convert("RGB")
            return width, height, rgb.tobytes()
    except InvalidRequest:
        raise
    except Exception:  # Pillow raises many types for bad data (OSError, ValueError, ...)
        raise InvalidRequest(BAD_IMAGE) from None


def _placeholders(data: bytes, n: int) -> list[int]:
    base = int.from_bytes(hashlib.sha256(data).digest()[:4], "little")
    return [-1 - ((base + i) % _PLACEHOLDER_SPACE) for i in range(n)]


def _silence_logs() -> None:
    from llama_cpp._logger import llama_log_callback
    from llama_cpp.mtmd_cpp import mtmd_helper_log_set, mtmd_log_set

    mtmd_log_set(llama_log_callback, ctypes.c_void_p(0))
    mtmd_helper_log_set(llama_log_callback, ctypes.c_void_p(0))


class Projector:
    """An ``mtmd_context`` over a loaded text model (``llama_model *``)."""

    def __init__(self, path: Path, text_model: Any, *, n_threads: int, use_gpu: bool) -> None:
        from llama_cpp import mtmd_cpp

        self._m = mtmd_cpp
        _silence_logs()
        if not path.is_file():
            raise ModelRunnerError(f"unable to load model: projector {path} does not exist")
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.print_timings = False
        params.n_threads = max(1, n_threads)
        params.media_marker = MARKER.encode()
        params.warmup = False
        ctx = mtmd_cpp.mtmd_init_from_file(str(path).encode(), text_model, params)
        if not ctx:
            raise ModelRunnerError(
                f"unable to load model: llama.cpp could not load the projector {path.name}"
            )
        self.ctx: Any = ctx
        self._lock = threading.Lock()
        if not mtmd_cpp.mtmd_support_vision(ctx):
            self.close()
            raise ModelRunnerError("unable to load model: the projector has no vision encoder")
        self.mrope = bool(mtmd_cpp.mtmd_decode_use_mrope(ctx))
        self.n_embd = int(llama_cpp.llama_model_n_embd_inp(text_model))

    def prompt(
        self, text: str, images: Sequence[bytes], *, add_bos: bool, encode: bool = True
    ) -> MediaPrompt:
        if self.mrope:
            # M-RoPE models (Qwen2-VL...) place image tokens on a 2D grid of positions; the
            # engines lay every prompt out on consecutive positions.
            raise Unsupported("image input is not supported for this model's projector type")
        decoded = [load_image(data) for data in images]
        m = self._m
        with self._lock:
            if not self.ctx:
                raise ModelRunnerError("the model is being unloaded")
            bitmaps: list[Any] = []
            chunks = m.mtmd_input_chunks_init()
            try:
                for data, (width, height, rgb) in zip(images, decoded, strict=True):
                    buf = (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb)
                    bitmap = m.mtmd_bitmap_init(width, height, buf)
                    if not bitmap:
                        raise InvalidRequest(BAD_IMAGE)
                    bitmaps.append(bitmap)
                    m.mtmd_bitmap_set_id(bitmap, hashlib.sha256(data).hexdigest().encode())
                raw = text.encode()
                inp = m.mtmd_input_text(
                    text=raw, text_len=len(raw), add_special=add_bos, parse_special=True
                )
                array = (m.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
                rc = m.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp), array, len(bitmaps))
                if rc == 1:
                    raise InvalidRequest("the number of images does not match the prompt")
                if rc != 0:
                    raise InvalidRequest(BAD_IMAGE)
                return self._collect(chunks, images, encode)
            finally:
                m.mtmd_input_chunks_free(chunks)
                for bitmap in bitmaps:
                    m.mtmd_bitmap_free(bitmap)

    def _collect(self, chunks: Any, images: Sequence[bytes], encode: bool) -> MediaPrompt:
        m = self._m
        tokens: list[int] = []
        spans: list[ImageSpan] = []
        for i in range(int(m.mtmd_input_chunks_size(chunks))):
            chunk = m.mtmd_input_chunks_get(chunks, i)
            kind = int(m.mtmd_input_chunk_get_type(chunk))
            if kind == m.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t()
                ptr = m.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                tokens += [int(ptr[j]) for j in range(count.value)]
                continue
            if kind != m.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                raise InvalidRequest("only image input is supported")
            n = int(m.mtmd_input_chunk_get_n_tokens(chunk))
            embd = np.zeros((n, self.n_embd), dtype=np.float32)
            if encode:
                if m.mtmd_encode_chunk(self.ctx, chunk) != 0:
                    raise ModelRunnerError("the projector failed to encode the image")
                out = m.mtmd_get_output_embd(self.ctx)
                embd[:] = np.ctypeslib.as_array(out, shape=(n, self.n_embd))
            data = images[len(spans)]
            spans.append(
                ImageSpan(len(tokens), embd, bool(m.mtmd_decode_use_non_causal(self.ctx, chunk)))
            )
            tokens += _placeholders(data, n)
        return MediaPrompt(tokens, Media(spans))

    def close(self) -> None:
        with self._lock:
            if self.ctx:
                self._m.mtmd_free(self.ctx)
                self.ctx = None


class EmbdBatch:
    """A ``llama_batch`` of embeddings (no token ids) for one sequence, backed by numpy."""

    def __init__(self, capacity: int, n_embd: int) -> None:
        self.capacity = capacity
        self.embd = np.zeros((capacity, n_embd), dtype=np.float32)
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
        struct.token = None
        struct.embd = self.embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        struct.pos = self.pos.ctypes.data_as(_I32P)
        struct.n_seq_id = self.n_seq_id.ctypes.data_as(_I32P)
        struct.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(_I32P))
        struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.struct = struct


def decode_span(
    ctx: Any,
    batch: EmbdBatch,
    span: ImageSpan,
    seq: int,
    *,
    logits_last: bool,
    first: int = 0,
    count: int | None = None,
) -> tuple[int, int]:
    """Decode rows ``first...first+count`` of an image (all of it by default) into sequence
    ``seq`` at their prompt positions, in batches of the batch's capacity (an image with
    non-causal attention is decoded whole, in one: ``Media.check_batch``). Returns llama.cpp's
    status (0: ok) and, with ``logits_last``, the batch index of the last row's logits."""
    stop = span.n_tokens if count is None else first + count
    last = -1
    if span.non_causal:
        llama_cpp.llama_set_causal_attn(ctx, False)
    try:
        for a in range(first, stop, batch.capacity):
            n = min(batch.capacity, stop - a)
            batch.embd[:n] = span.embd[a : a + n]
            batch.pos[:n] = np.arange(span.start + a, span.start + a + n, dtype=np.int32)
            batch.seq[:n] = seq
            batch.logits[:n] = 0
            if logits_last and a + n == stop:
                batch.logits[n - 1] = 1
            batch.struct.n_tokens = n
            rc = int(llama_cpp.llama_decode(ctx, batch.struct))
            if rc != 0:
                return rc, -1
            last = n - 1
    finally:
        if span.non_causal:
            llama_cpp.llama_set_causal_attn(ctx, True)
    return 0, last if logits_last else -1
