"""Load settings a machine cannot hold are refused before llama.cpp allocates them: a context
above the runner's ceiling (wherever it came from: a request, DMR's ``_configure``, a runtime
policy, a Modelfile or an artifact), or a KV cache larger than the memory there is. Without this
a context of 2^31 tokens set through ``_configure`` got the runner OOM-killed at 22 GB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelrunner.errors import InvalidRequest

MAX_THREADS = 1024
_F16 = 2  # bytes per K or V element: llama.cpp's default cache type


def _int(value: Any) -> int | None:
    if isinstance(value, list):  # per-layer counts: the largest bounds the cache
        value = max((v for v in value if isinstance(v, int)), default=None)
    return value if isinstance(value, int) and value > 0 else None


def kv_cache_bytes(gguf: Any, num_ctx: int, slots: int) -> int | None:
    """K and V for every layer, token and slot (each slot has its own context), from the GGUF's
    metadata; None when the metadata does not say."""
    if gguf is None:
        return None
    layers = _int(gguf.arch_value("block_count"))
    embd = _int(gguf.arch_value("embedding_length"))
    heads = _int(gguf.arch_value("attention.head_count"))
    if not (layers and embd and heads):
        return None
    kv_heads = _int(gguf.arch_value("attention.head_count_kv")) or heads
    key = _int(gguf.arch_value("attention.key_length")) or embd // heads
    value = _int(gguf.arch_value("attention.value_length")) or key
    return layers * kv_heads * (key + value) * _F16 * num_ctx * max(slots, 1)


def available_memory() -> int | None:
    """MemAvailable, or less when a cgroup (a pod's memory limit) leaves less."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            found.append(max(int(limit) - int(used), 0))
    except OSError:
        pass
    return min(found) if found else None


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB"


def check_fits(name: str, gguf: Any, num_ctx: int, slots: int, max_ctx: int,
               num_thread: int) -> None:  # fmt: skip
    if max_ctx and num_ctx > max_ctx:
        raise InvalidRequest(
            f"context size {num_ctx} for {name} is larger than this runner allows ({max_ctx}); "
            "ask for a smaller num_ctx / context-size"
        )
    if num_thread > MAX_THREADS:
        raise InvalidRequest(f"num_thread {num_thread} is more than {MAX_THREADS}")
    needed = kv_cache_bytes(gguf, num_ctx, slots)
    free = available_memory()
    if needed is not None and free is not None and needed > free:
        raise InvalidRequest(
            f"a context of {num_ctx} tokens x {slots} slots for {name} needs about {_gib(needed)} "
            f"of KV cache, more than the {_gib(free)} of memory available; ask for a smaller "
            "num_ctx / context-size (or fewer parallel slots)"
        )
