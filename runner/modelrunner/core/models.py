"""Model management shared by every dialect: list, show, copy, tag, delete, create, blobs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio

from modelrunner.errors import Conflict, InvalidRequest
from modelrunner.names import Dialect, ModelName, parse
from modelrunner.store.create import CreateSpec, create_model
from modelrunner.store.digest import parse_digest
from modelrunner.store.gguf_info import GGUFInfo, read_gguf
from modelrunner.store.models import ModelStore
from modelrunner.store.records import ModelRecord

TemplateCheck = Callable[[str], None]


class ModelService:
    def __init__(self, store: ModelStore, check_template: TemplateCheck = lambda _: None) -> None:
        self.store = store
        self._check_template = check_template

    async def list_models(self) -> list[ModelRecord]:
        return await anyio.to_thread.run_sync(self.store.records)

    async def get(self, ref: str, dialect: Dialect = Dialect.OLLAMA) -> ModelRecord:
        return await anyio.to_thread.run_sync(self.store.get, ref, dialect)

    async def gguf_verbose(self, record: ModelRecord) -> GGUFInfo | None:
        if not record.model_files:
            return None
        return await anyio.to_thread.run_sync(read_gguf, record.model_files[0], True)

    async def copy(self, source: str, destination: str) -> ModelName:
        src = self.store.resolve(source, Dialect.OLLAMA)
        dst = parse(destination, Dialect.OLLAMA)
        await anyio.to_thread.run_sync(self.store.copy, src, dst)
        return dst

    async def tag(self, source: str, target: str, dialect: Dialect) -> ModelName:
        src = self.store.resolve(source, dialect)
        dst = parse(target, dialect)
        await anyio.to_thread.run_sync(self.store.copy, src, dst)
        return dst

    async def delete(self, ref: str, dialect: Dialect = Dialect.OLLAMA) -> ModelName:
        name = self.store.resolve(ref, dialect)
        await anyio.to_thread.run_sync(self.store.delete, name)
        return name

    def tags_of(self, record: ModelRecord) -> list[ModelName]:
        """Every name whose manifest is byte-identical to ``record``'s: DMR calls them tags."""
        digest = record.manifest.digest
        names = [n for n in self.store.manifests.names() if self._digest(n) == digest]
        return sorted(names, key=str)

    def _digest(self, name: ModelName) -> str | None:
        try:
            return self.store.manifest_digest(name)
        except (OSError, InvalidRequest):
            return None

    async def remove_dmr(self, ref: str, force: bool) -> tuple[list[ModelName], str | None]:
        """DMR's delete: a tag reference untags; deleting by ID with several tags needs force.
        Returns the removed names and the model ID when the model itself is gone."""
        record = await self.get(ref, Dialect.DMR)
        tags = self.tags_of(record)
        by_id = ref.lower().removeprefix("sha256:") == record.digest or (
            len(ref) >= 12 and record.digest.startswith(ref.lower())
        )
        if by_id and len(tags) > 1 and not force:
            raise Conflict(
                f"unable to delete {ref!r} (must be forced) due to multiple tag references: "
                + ", ".join(str(t) for t in tags)
            )
        targets = (tags or [record.name]) if by_id else [record.name]  # untagged: its own
        for name in targets:
            await anyio.to_thread.run_sync(self.store.delete, name)
        remaining = [n for n in tags if n not in targets]
        return targets, None if remaining else record.manifest.digest

    async def create(
        self, name: str, spec: CreateSpec, progress: Callable[[str], None]
    ) -> ModelRecord:
        target = parse(name, Dialect.OLLAMA)
        if spec.template is not None:
            self._check_template(spec.template)
        await anyio.to_thread.run_sync(create_model, self.store, target, spec, progress)
        return await anyio.to_thread.run_sync(self.store.load, target)

    def blob_exists(self, digest: str) -> bool:
        return self.store.blobs.exists(parse_digest(digest))

    async def upload_blob(self, digest: str, chunks: AsyncIterator[bytes]) -> bool:
        """Store an uploaded blob, verified against ``digest``. False if it already existed."""
        expected = parse_digest(digest)
        if self.store.blobs.exists(expected):
            return False
        with self.store.blobs.writer(expected) as writer:
            async for chunk in chunks:
                await anyio.to_thread.run_sync(writer.write, chunk)
            await anyio.to_thread.run_sync(writer.commit)
        return True

    def disk_usage(self) -> int:
        return self.store.disk_usage()
