"""The model store: resolve names, read models, and copy, create or delete them consistently.

Writes are atomic (blobs and manifests go through a temporary file, fsync and rename) and every
mutation runs under one lock, so concurrent requests never see a manifest whose blobs are missing,
and a delete never removes a blob another manifest, or a write in progress, still uses.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelrunner.errors import InvalidRequest, ModelNotFound, NotFound
from modelrunner.names import Dialect, ModelName, candidates, is_hex_id
from modelrunner.store import media
from modelrunner.store.blobs import BlobStore
from modelrunner.store.gguf_info import cached_gguf
from modelrunner.store.manifests import Manifest, ManifestStore, is_untagged, untagged_name
from modelrunner.store.records import ModelRecord

STALE_SECONDS = 3600  # unreferenced blobs younger than this may belong to a create in progress
_SHORT_ID = re.compile(r"(?:sha256:)?([0-9a-f]{12})")


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(root)
        self.manifests = ManifestStore(root)
        self._lock = threading.RLock()
        self._pins: Counter[str] = Counter()

    # -- reading -------------------------------------------------------------------------------

    def find(self, ref: str, dialect: Dialect = Dialect.OLLAMA) -> ModelName | None:
        """Resolve what a caller typed to a stored name: the dialect's reading, the other
        dialect's, a DMR model ID (64 hex digits, or the 12 of ``docker model ls -q``), then
        (like DMR) a bare model name with any host and namespace."""
        options = candidates(ref, dialect)
        for name in options:
            found = self.manifests.find(name)
            if found is not None:
                return found
        short = _SHORT_ID.fullmatch(ref.lower())
        if is_hex_id(ref) or short:
            want = short.group(1) if short else ref.lower().removeprefix("sha256:")
            # tagged names first: an untagged copy of the same model is only a fallback
            for name in sorted(self.manifests.names(hidden=True), key=is_untagged):
                if self.manifest_digest(name).removeprefix("sha256:").startswith(want):
                    return name
        names = self.manifests.names()
        if options and "/" not in ref:
            bare = options[0]
            for name in sorted(names, key=str):
                if (name.model.lower(), name.tag.lower()) == (bare.model.lower(), bare.tag.lower()):
                    return name
        return None

    def resolve(self, ref: str, dialect: Dialect = Dialect.OLLAMA) -> ModelName:
        found = self.find(ref, dialect)
        if found is None:
            raise ModelNotFound(ref)
        return found

    def manifest_digest(self, name: ModelName) -> str:
        return self.manifests.read(name)[0].digest

    def load(self, name: ModelName) -> ModelRecord:
        try:
            manifest, mtime = self.manifests.read(name)
        except FileNotFoundError:
            raise ModelNotFound(str(name)) from None
        config = self._json_blob(manifest.config.digest, {})
        record = ModelRecord(name=name, manifest=manifest, modified_at=mtime, config=config,
                             config_written_at=self._blob_mtime(manifest.config.digest))  # fmt: skip
        self._fill_layers(record, manifest)
        return record

    def _blob_mtime(self, digest: str) -> datetime | None:
        try:
            return datetime.fromtimestamp(self.blobs.path(digest).stat().st_mtime, UTC)
        except (OSError, ValueError):
            return None

    def get(self, ref: str, dialect: Dialect = Dialect.OLLAMA) -> ModelRecord:
        return self.load(self.resolve(ref, dialect))

    def records(self) -> list[ModelRecord]:
        records = []
        for name in self.manifests.names():
            with contextlib.suppress(Exception):  # a broken manifest must not hide the others
                records.append(self.load(name))
        records.sort(key=lambda r: r.modified_at, reverse=True)
        return records

    def _fill_layers(self, record: ModelRecord, manifest: Manifest) -> None:
        for layer in manifest.layers:
            kind = layer.media_type
            path = self.blobs.path(layer.digest)
            if kind in media.MODEL_LAYERS:
                record.model_files.append(path)
            elif kind in media.PROJECTOR_LAYERS:
                record.projectors.append(path)
            elif kind == media.OLLAMA_ADAPTER:
                record.adapters.append(path)
            elif kind in media.TEMPLATE_LAYERS:
                record.template = self._text_blob(layer.digest)
            elif kind == media.DOCKER_CHAT_TEMPLATE:
                record.jinja_template = self._text_blob(layer.digest)
            elif kind == media.OLLAMA_SYSTEM:
                record.system = self._text_blob(layer.digest)
            elif kind == media.OLLAMA_PARAMS:
                record.parameters = self._json_blob(layer.digest, {})
            elif kind == media.OLLAMA_MESSAGES:
                record.messages = self._json_blob(layer.digest, [])
            elif kind in media.LICENSE_LAYERS:
                record.license.append(self._text_blob(layer.digest))
        shards = manifest.layers_of(*media.MODEL_LAYERS)
        if shards and self.blobs.exists(shards[0].digest):
            with contextlib.suppress(InvalidRequest):
                record.gguf = cached_gguf(record.model_files[0], shards[0].size)
        record.requires = record.config.get("requires") or None

    def _text_blob(self, digest: str) -> str:
        return self.blobs.read(digest).decode("utf-8", errors="replace")

    def _json_blob(self, digest: str, default: Any) -> Any:
        try:
            value = json.loads(self.blobs.read(digest))
        except (ValueError, NotFound):
            return default
        return value if isinstance(value, type(default)) else default

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def pinned(self, digests: Iterable[str] = ()) -> Iterator[Callable[[str], None]]:
        """Keep blobs from being collected while a pull or create that needs them is running.
        Yields a function that pins one more blob for the rest of the block."""
        items: list[str] = []

        def pin(digest: str) -> None:
            with self._lock:
                self._pins[digest] += 1
                items.append(digest)

        for digest in digests:
            pin(digest)
        try:
            yield pin
        finally:
            with self._lock:
                self._pins.subtract(items)
                self._pins += Counter()

    def write_manifest(self, name: ModelName, manifest: Manifest) -> list[str]:
        """Publish ``manifest`` under ``name`` once all its blobs exist; return the blobs the
        replaced manifest (if any) used that nothing references any more, which are deleted."""
        with self._lock:
            missing = [d for d in manifest.blobs() if not self.blobs.exists(d)]
            if missing:
                raise InvalidRequest(f"manifest references missing blob {missing[0]}")
            existing = self.manifests.find(name)
            old = self.manifests.read(existing)[0].blobs() if existing is not None else []
            if existing is not None and existing != name:
                self.manifests.delete(existing)
            self.manifests.write(name, manifest)
            placeholder = untagged_name(manifest.digest)
            if not is_untagged(name) and self.manifests.path(placeholder).is_file():
                self.manifests.delete(placeholder)  # a model with a name is no longer untagged
            return self._collect(old)

    def write_untagged(self, manifest: Manifest) -> ModelName:
        """Keep a model that has no name yet (DMR's load); a model already stored under a name
        needs no hidden copy."""
        with self._lock:
            for name in self.manifests.names():
                if self.manifest_digest(name) == manifest.digest:
                    return name
            name = untagged_name(manifest.digest)
            self.write_manifest(name, manifest)
            return name

    def untagged(self) -> list[ModelRecord]:
        records = []
        for name in self.manifests.names(hidden=True):
            if is_untagged(name):
                with contextlib.suppress(Exception):  # as records(): one broken file hides alone
                    records.append(self.load(name))
        return records

    def discard(self, digests: Iterable[str]) -> list[str]:
        """Delete blobs that no manifest uses (what a failed import left behind)."""
        with self._lock:
            return self._collect(digests)

    def purge(self) -> int:
        """Remove every model and every blob no write in progress holds (DMR's purge)."""
        with self._lock:
            names = self.manifests.names(hidden=True)
            for name in names:
                self.manifests.delete(name)
            self._collect(self.blobs.digests())
            return len(names)

    def copy(self, source: ModelName, destination: ModelName) -> None:
        with self._lock:
            manifest, _ = self.manifests.read(source)
            self.write_manifest(destination, manifest)

    def delete(self, name: ModelName) -> list[str]:
        """Remove the manifest and every blob of it that no other manifest uses."""
        with self._lock:
            try:
                manifest, _ = self.manifests.read(name)
            except FileNotFoundError:
                raise ModelNotFound(str(name)) from None
            self.manifests.delete(name)
            return self._collect(manifest.blobs())

    def _referenced(self) -> set[str]:
        return self.manifests.referenced()

    def _collect(self, candidates_: Iterable[str]) -> list[str]:
        candidates = list(dict.fromkeys(candidates_))
        if not candidates:  # nothing to free (a copy or a new name): no need to read every manifest
            return []
        used = self._referenced()
        removed = []
        for digest in candidates:
            if digest not in used and self._pins[digest] <= 0:
                self.blobs.delete(digest)
                removed.append(digest)
        return removed

    def prune(self, min_age: float = STALE_SECONDS) -> list[str]:
        """Startup clean-up: unreferenced blobs and abandoned temporary files older than min_age."""
        cutoff = time.time() - min_age
        removed = []
        with self._lock:
            used = self._referenced()
            for entry in self.blobs.root.iterdir():
                if entry.name.endswith("-partial") or "-partial-" in entry.name:
                    continue  # resumable downloads are kept
                try:
                    old = entry.stat().st_mtime < cutoff
                except FileNotFoundError:
                    continue
                if not old:
                    continue
                if entry.name.startswith("."):
                    entry.unlink(missing_ok=True)
                    removed.append(entry.name)
                elif entry.name.startswith("sha256-"):
                    digest = "sha256:" + entry.name[7:]
                    if digest not in used and self._pins[digest] <= 0:
                        entry.unlink(missing_ok=True)
                        removed.append(digest)
        return removed

    def disk_usage(self) -> int:
        return sum(p.stat().st_size for p in self.blobs.root.iterdir() if p.is_file())
