"""DMR's model archive: a tar of ``blobs/<alg>/<hex>`` files plus ``manifest.json`` (the raw
manifest), as ``docker model package`` streams to ``POST /models/load`` and as
``GET /models/{name}/export`` returns (``pkg/distribution/tarball``).

Reading is streaming (tar ``r|``): each blob is written to the store as it arrives and verified
against its name; the manifest is published only when every blob it names is stored, so a broken or
interrupted archive leaves no model behind (and its blobs are removed again).
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Callable, Iterator
from typing import IO

from modelrunner.errors import InvalidDigest, InvalidRequest
from modelrunner.store.digest import parse_digest
from modelrunner.store.manifests import Manifest
from modelrunner.store.models import ModelStore

CHUNK = 1 << 20
MAX_MANIFEST = 4 << 20
BLOCK = tarfile.BLOCKSIZE


def read_archive(store: ModelStore, stream: IO[bytes]) -> Manifest:
    """Store every sha256 blob of the archive, then its manifest (untagged unless the model is
    already stored under a name). Returns the manifest; its digest is DMR's model ID."""
    written: list[str] = []
    with store.pinned() as pin:
        try:
            try:
                raw = _unpack(store, stream, pin, written)
            except (tarfile.TarError, EOFError) as exc:
                raise InvalidRequest(f"model load interrupted: {exc}") from None
            if raw is None:
                raise InvalidRequest("read manifest: manifest not found")
            manifest = Manifest.parse(raw)
            store.write_untagged(manifest)
            return manifest
        except BaseException:
            store.discard(written)
            raise


def _unpack(
    store: ModelStore, stream: IO[bytes], pin: Callable[[str], None], written: list[str]
) -> bytes | None:
    """Store the blobs as they stream by; return ``manifest.json``'s bytes."""
    raw: bytes | None = None
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if not member.isreg():
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            if member.name == "manifest.json":
                if member.size > MAX_MANIFEST:
                    raise InvalidRequest("read manifest: manifest.json is too large")
                raw = handle.read()
                continue
            digest = _blob_digest(member.name)
            if digest is None:
                continue  # other files and other digest algorithms are not ours
            pin(digest)
            if not store.blobs.exists(digest):
                store.blobs.put_chunks(_chunks(handle), expected=digest)
                written.append(digest)
    return raw


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while data := handle.read(CHUNK):
        yield data


def _blob_digest(path: str) -> str | None:
    clean = posixpath.normpath(path)
    if ".." in clean:
        raise InvalidRequest(f"reading blob from stream: invalid path detected: {path}")
    parts = clean.split("/")
    if len(parts) != 3 or parts[0] not in ("blobs", "manifests") or parts[1] != "sha256":
        return None
    try:
        return parse_digest(f"sha256:{parts[2]}")
    except InvalidDigest:
        raise InvalidRequest(f"reading blob from stream: invalid digest {parts[2]!r}") from None


# -- writing -------------------------------------------------------------------------------------


def _header(name: str, size: int, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mode = 0o755 if directory else 0o666
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def archive_chunks(store: ModelStore, manifest: Manifest) -> Iterator[bytes]:
    """The archive of a stored model, in DMR's order: the ``blobs`` folders, each layer, the
    config, ``manifest.json``; then the tar end (two zero blocks)."""
    yield _header("blobs", 0, directory=True)
    yield _header("blobs/sha256", 0, directory=True)
    seen: set[str] = set()
    for descriptor in [*manifest.layers, manifest.config]:
        if descriptor.digest in seen:
            continue
        seen.add(descriptor.digest)
        path = store.blobs.path(descriptor.digest)
        size = path.stat().st_size
        yield _header(f"blobs/sha256/{descriptor.digest.removeprefix('sha256:')}", size)
        with path.open("rb") as handle:
            while data := handle.read(CHUNK):
                yield data
        yield _padding(size)
    yield _header("manifest.json", len(manifest.raw))
    yield manifest.raw + _padding(len(manifest.raw))
    yield b"\0" * (2 * BLOCK)
