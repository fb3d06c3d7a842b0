"""Tunables of the registry client. Defaults follow Ollama's downloader; tests shorten them."""

from __future__ import annotations

from dataclasses import dataclass

MB = 1 << 20


@dataclass(frozen=True, slots=True)
class TransferConfig:
    """How blobs move between a registry and the store.

    A blob is split into ``total / max_streams`` byte ranges, clamped to ``[min_part_size,
    max_part_size]``, fetched in parallel. A part that fails is retried ``retries`` times with
    exponential backoff from ``backoff`` seconds (capped at ``max_backoff``); a part that made
    progress before failing does not use up a retry. A part that receives nothing for
    ``stall_timeout`` seconds is restarted.
    """

    max_streams: int = 16
    min_part_size: int = 100 * MB
    max_part_size: int = 1024 * MB
    retries: int = 6
    backoff: float = 1.0
    max_backoff: float = 30.0
    stall_timeout: float = 30.0
    connect_timeout: float = 30.0
    #: Blobs larger than this are pushed as a sequence of PATCH requests of this size.
    upload_chunk_size: int = 100 * MB
    #: How often progress snapshots are emitted while bytes move (Ollama: 60 ms).
    progress_interval: float = 0.06
    #: How often a download's resume state is saved (the data is fsynced first).
    state_interval: float = 1.0
    user_agent: str = "modelrunner"
