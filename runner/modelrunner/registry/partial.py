"""A blob being downloaded: ``blobs/sha256-<hex>-partial`` (sparse, pre-allocated) and its
resume state ``sha256-<hex>-partial-state``, the byte ranges (parts) and how far each got. The
data is fsynced before the state is saved, so the state never claims bytes that are not on disk."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from modelrunner.registry.config import TransferConfig
from modelrunner.store.atomic import publish, storage_errors, write_atomic
from modelrunner.store.blobs import BlobStore
from modelrunner.store.digest import blob_filename

PARTIAL_SUFFIX = "-partial"
STATE_SUFFIX = "-partial-state"


@dataclass(slots=True)
class Part:
    offset: int
    size: int
    completed: int = 0

    @property
    def done(self) -> bool:
        return self.completed >= self.size

    @property
    def first(self) -> int:
        return self.offset + self.completed

    @property
    def last(self) -> int:
        return self.offset + self.size - 1


def plan_parts(total: int, config: TransferConfig) -> list[Part]:
    size = math.ceil(total / max(config.max_streams, 1))
    size = max(config.min_part_size, min(config.max_part_size, size), 1)
    return [Part(offset, min(size, total - offset)) for offset in range(0, total, size)]


class PartialFile:
    """The partial data file and its resume state."""

    def __init__(self, blobs: BlobStore, digest: str, total: int) -> None:
        self.blobs = blobs
        self.digest = digest
        self.total = total
        base = blob_filename(digest)
        self.path = blobs.root / (base + PARTIAL_SUFFIX)
        self.state_path = blobs.root / (base + STATE_SUFFIX)
        self.fd: int | None = None
        self.hasher: Any = None  # sha256 fed in order while a single fresh part is written
        self.resumed = 0

    def open(self, config: TransferConfig) -> list[Part]:
        """Open (or create and pre-allocate) the partial file; the parts still to fetch."""
        parts = self._load_state()
        if parts is None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            parts = plan_parts(self.total, config)
        self.resumed = sum(p.completed for p in parts)
        with storage_errors():
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _allocate(self.fd, self.total)
            except BaseException:
                self.close()
                if self.resumed == 0:
                    self.discard()
                raise
        if len(parts) == 1 and parts[0].completed == 0:
            self.hasher = hashlib.sha256()
        return parts

    def _load_state(self) -> list[Part] | None:
        try:
            state = json.loads(self.state_path.read_text())
            if state.get("digest") != self.digest or state.get("size") != self.total:
                return None
            if self.path.stat().st_size != self.total:
                return None
            parts = [
                Part(int(p["offset"]), int(p["size"]), int(p["completed"])) for p in state["parts"]
            ]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        covered = sum(p.size for p in parts)
        valid = all(0 <= p.completed <= p.size for p in parts)
        return parts if covered == self.total and valid else None

    def write(self, offset: int, data: bytes) -> None:
        assert self.fd is not None
        with storage_errors():
            view = memoryview(data)
            while view:
                written = os.pwrite(self.fd, view, offset)
                view = view[written:]
                offset += written
        if self.hasher is not None:
            self.hasher.update(data)

    def save(self, parts: Iterable[Part]) -> None:
        """Persist progress: fsync the data first, so the state never claims unwritten bytes."""
        if self.fd is None:
            return
        with storage_errors():
            os.fsync(self.fd)
            body = {"digest": self.digest, "size": self.total, "parts": [asdict(p) for p in parts]}
            write_atomic(self.state_path, json.dumps(body).encode())

    def sha256(self) -> str:
        if self.hasher is not None:
            return "sha256:" + str(self.hasher.hexdigest())
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(4 << 20), b""):
                digest.update(chunk)
        return "sha256:" + digest.hexdigest()

    def publish(self) -> None:
        assert self.fd is not None
        with storage_errors():
            os.fsync(self.fd)
        self.close()
        publish(self.path, self.blobs.path(self.digest))
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def discard(self) -> None:
        self.close()
        for path in (self.path, self.state_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _allocate(fd: int, size: int) -> None:
    """Reserve the space up front: a full disk fails now, not in the middle of the download."""
    if size == 0:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(fd, size)
