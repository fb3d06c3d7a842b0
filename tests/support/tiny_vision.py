"""A tiny vision projector (``mmproj``) GGUF for the tiny text model, plus test images.

The projector is LLaVA-1.5 style, the simplest layout llama.cpp's ``clip``/``mtmd`` loader takes:
a small CLIP ViT (patch embedding, position embedding, pre-norm transformer blocks) and the
``mlp`` projector (``mm.0`` -> GELU -> ``mm.2``) onto the text model's embedding size. A 32x32
image becomes (32 / 8)^2 = 16 image tokens. Weights are random (seeded), so outputs mean
nothing, but they are deterministic and depend on the pixels.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from tests.support.tiny_model import N_EMBD as TEXT_EMBD

IMAGE_SIZE = 32
PATCH_SIZE = 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2
V_EMBD = 32
V_FF = 64
V_HEAD = 4
V_LAYER = 2


def write_tiny_projector(path: Path, seed: int = 1, text_embd: int = TEXT_EMBD) -> Path:
    """Write the projector GGUF (``general.architecture = clip``) and return its path."""
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), "clip")
    writer.add_name("tiny-test-mmproj")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    writer.add_uint32("clip.vision.embedding_length", V_EMBD)
    writer.add_uint32("clip.vision.feed_forward_length", V_FF)
    writer.add_uint32("clip.vision.block_count", V_LAYER)
    writer.add_uint32("clip.vision.projection_dim", text_embd)
    writer.add_uint32("clip.vision.attention.head_count", V_HEAD)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    def tensor(name: str, *shape: int, scale: float = 0.2) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def ones(name: str, n: int) -> None:
        writer.add_tensor(name, np.ones(n, dtype=np.float32))

    def zeros(name: str, n: int) -> None:
        writer.add_tensor(name, np.zeros(n, dtype=np.float32))

    # numpy shapes are ggml's ne reversed: a (out, in) matrix maps in -> out.
    tensor("v.patch_embd.weight", V_EMBD, 3, PATCH_SIZE, PATCH_SIZE)
    tensor("v.position_embd.weight", IMAGE_TOKENS, V_EMBD)
    ones("v.pre_ln.weight", V_EMBD)
    zeros("v.pre_ln.bias", V_EMBD)
    for i in range(V_LAYER):
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensor(f"v.blk.{i}.{part}.weight", V_EMBD, V_EMBD)
            zeros(f"v.blk.{i}.{part}.bias", V_EMBD)
        for norm in ("ln1", "ln2"):
            ones(f"v.blk.{i}.{norm}.weight", V_EMBD)
            zeros(f"v.blk.{i}.{norm}.bias", V_EMBD)
        tensor(f"v.blk.{i}.ffn_up.weight", V_FF, V_EMBD)
        zeros(f"v.blk.{i}.ffn_up.bias", V_FF)
        tensor(f"v.blk.{i}.ffn_down.weight", V_EMBD, V_FF)
        zeros(f"v.blk.{i}.ffn_down.bias", V_EMBD)
    # Large projector weights so that an image moves the text model's output visibly.
    tensor("mm.0.weight", text_embd, V_EMBD, scale=1.0)
    zeros("mm.0.bias", text_embd)
    tensor("mm.2.weight", text_embd, text_embd, scale=1.0)
    zeros("mm.2.bias", text_embd)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def png(width: int, height: int, rgb: tuple[int, int, int] | None = None, seed: int = 0) -> bytes:
    """A PNG image: one colour, or random pixels (``seed``) when ``rgb`` is None."""
    if rgb is None:
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        pixels = np.empty((height, width, 3), dtype=np.uint8)
        pixels[:] = rgb
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
