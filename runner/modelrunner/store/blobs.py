"""Blobs: immutable files named by the sha256 of their content."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from modelrunner.errors import BlobNotFound, DigestMismatch
from modelrunner.store.atomic import publish, storage_errors, temp_file
from modelrunner.store.digest import blob_filename, parse_digest

CHUNK = 1 << 20


class BlobWriter:
    """Streams bytes into a temporary file; :meth:`commit` verifies the digest and publishes."""

    def __init__(self, store: BlobStore, handle: BinaryIO, tmp: Path, expected: str | None) -> None:
        self._store = store
        self._handle = handle
        self._tmp = tmp
        self._expected = expected
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        with storage_errors():
            self._handle.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self) -> str:
        digest = "sha256:" + self._hash.hexdigest()
        if self._expected is not None and digest != self._expected:
            raise DigestMismatch(f'digest mismatch, expected "{self._expected}", got "{digest}"')
        with storage_errors():
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
        publish(self._tmp, self._store.path(digest))
        return digest


_SMALL_BLOB = 64 << 10  # blobs up to this size are kept in memory once read
_SMALL_MAX = 8192  # entries (at most 512 MiB; in practice a few KB each)


_PATHS_MAX = 65536


class BlobStore:
    def __init__(self, root: Path) -> None:
        self._small: dict[str, tuple[tuple[int, int], bytes]] = {}
        self._paths: dict[str, Path] = {}
        self.root = root / "blobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        # Remembered: a listing of a thousand models asks for six paths per model, and parsing
        # the digest and building the Path was most of its time.
        path = self._paths.get(digest)
        if path is None:
            if len(self._paths) >= _PATHS_MAX:
                self._paths.clear()
            path = self._paths[digest] = self.root / blob_filename(digest)
        return path

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(parse_digest(digest)) from None

    def read(self, digest: str) -> bytes:
        """A blob's bytes (meant for small ones: configs, templates, parameters). Small blobs
        are kept in memory while their file is there unchanged: content-addressed, they never
        change, and every model listing reads each model's few."""
        path = self.path(digest)
        try:
            stat = path.stat()
            stamp = (stat.st_ino, stat.st_size)
            cached = self._small.get(digest)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(parse_digest(digest)) from None
        if len(data) <= _SMALL_BLOB:
            if len(self._small) >= _SMALL_MAX:
                self._small.clear()
            self._small[digest] = (stamp, data)
        return data

    @contextlib.contextmanager
    def writer(self, expected: str | None = None) -> Iterator[BlobWriter]:
        """Write a new blob; nothing is published unless ``commit`` succeeds."""
        want = parse_digest(expected) if expected is not None else None
        with temp_file(self.root, prefix=".upload-") as (handle, tmp):
            yield BlobWriter(self, handle, tmp, want)

    def put(self, data: bytes) -> str:
        with self.writer() as writer:
            writer.write(data)
            return writer.commit()

    def put_chunks(self, chunks: Iterable[bytes], expected: str | None = None) -> str:
        with self.writer(expected) as writer:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()

    def import_file(self, source: Path, expected: str | None = None) -> str:
        """Copy a file into the store (used to seed the default model and by the CLI)."""
        with source.open("rb") as handle:
            return self.put_chunks(iter(lambda: handle.read(CHUNK), b""), expected)

    def verify(self, digest: str) -> bool:
        h = hashlib.sha256()
        with self.path(digest).open("rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                h.update(chunk)
        return "sha256:" + h.hexdigest() == parse_digest(digest)

    def delete(self, digest: str) -> None:
        self._small.pop(digest, None)
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def digests(self) -> list[str]:
        out = []
        for entry in self.root.iterdir():
            name = entry.name
            if name.startswith("sha256-") and len(name) == 71 and entry.is_file():
                out.append("sha256:" + name[7:])
        return out
