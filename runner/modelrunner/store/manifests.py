"""Manifests: parsed views over the exact bytes a registry served, and their on-disk folder.

Layout (Ollama's): ``manifests/<host>/<namespace>/<model>/<tag>``. Pulled manifests are kept byte
for byte so that their digest (sha256 of the file) matches the registry's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelrunner.errors import InvalidRequest
from modelrunner.names import ModelName, parse
from modelrunner.store import media
from modelrunner.store.atomic import write_atomic
from modelrunner.store.digest import hex_of, parse_digest

# A model loaded without a name (DMR's POST /models/load, before the CLI tags it) is kept under a
# hidden name made from its ID; it is listed nowhere but can be named by its ID.
UNTAGGED_HOST = "untagged.invalid"


def untagged_name(manifest_digest: str) -> ModelName:
    return ModelName(UNTAGGED_HOST, "sha256", hex_of(manifest_digest), "latest")


def is_untagged(name: ModelName) -> bool:
    return name.host == UNTAGGED_HOST


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    from_: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.from_:
            out["from"] = self.from_
        return out

    @classmethod
    def from_json(cls, data: Any) -> Descriptor:
        if not isinstance(data, dict):
            raise InvalidRequest("invalid manifest: descriptor is not an object")
        size = data.get("size")
        media_type = data.get("mediaType")
        if not isinstance(size, int) or size < 0 or not isinstance(media_type, str):
            raise InvalidRequest("invalid manifest: descriptor needs mediaType and size")
        annotations = data.get("annotations") or {}
        from_ = data.get("from")
        return cls(
            media_type=media_type,
            digest=parse_digest(str(data.get("digest", ""))),
            size=size,
            annotations={str(k): str(v) for k, v in annotations.items()},
            from_=from_ if isinstance(from_, str) else None,
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    raw: bytes
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.raw).hexdigest()

    @property
    def size(self) -> int:
        """What Ollama reports as a model's size: every layer plus the config."""
        return self.config.size + sum(layer.size for layer in self.layers)

    def blobs(self) -> list[str]:
        return [self.config.digest, *(layer.digest for layer in self.layers)]

    def layers_of(self, *media_types: str) -> list[Descriptor]:
        return [layer for layer in self.layers if layer.media_type in media_types]

    @property
    def is_docker_model(self) -> bool:
        return self.config.media_type in media.DOCKER_CONFIGS

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"invalid manifest: {exc}") from None
        if not isinstance(data, dict) or data.get("schemaVersion") != 2:
            raise InvalidRequest("invalid manifest: schemaVersion 2 expected")
        layers = data.get("layers")
        if not isinstance(layers, list):
            raise InvalidRequest("invalid manifest: no layers")
        return cls(
            raw=raw,
            media_type=str(data.get("mediaType") or media.OCI_MANIFEST),
            config=Descriptor.from_json(data.get("config")),
            layers=tuple(Descriptor.from_json(layer) for layer in layers),
        )

    @classmethod
    def build(
        cls, config: Descriptor, layers: list[Descriptor], media_type: str = media.DOCKER_MANIFEST
    ) -> Manifest:
        body = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        return cls.parse(json.dumps(body, separators=(",", ":")).encode())


_PARSED_MAX = 16384  # manifests kept parsed (a few KB each)


class ManifestStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "manifests"
        self.root.mkdir(parents=True, exist_ok=True)
        self._parsed: dict[str, tuple[tuple[int, int, int], Manifest, datetime]] = {}
        self._paths: dict[ModelName, Path] = {}

    def path(self, name: ModelName) -> Path:
        # Every part of a ModelName is validated against a grammar without "/" or "..".
        path = self._paths.get(name)
        if path is None:
            if len(self._paths) >= _PARSED_MAX:
                self._paths.clear()
            path = self._paths[name] = (
                self.root / name.host / name.namespace / name.model / name.tag
            )
        return path

    def find(self, name: ModelName) -> ModelName | None:
        """The stored spelling of ``name``, matching each part case-insensitively."""
        if self.path(name).is_file():
            return name
        folder = self.root
        found: list[str] = []
        for part in (name.host, name.namespace, name.model, name.tag):
            match = _match_entry(folder, part)
            if match is None:
                return None
            found.append(match)
            folder = folder / match
        if not folder.is_file():
            return None
        return ModelName(*found)

    def read(self, name: ModelName) -> tuple[Manifest, datetime]:
        """The manifest and when it was written."""
        path = str(self.path(name))
        return self._read(path, os.stat(path))

    def _read(self, path: str, stat: os.stat_result) -> tuple[Manifest, datetime]:
        # Parsed manifests are kept while their file is unchanged (a write is a rename, so a new
        # inode): listing a store of a thousand models must not parse a thousand files each time.
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._parsed.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        with open(path, "rb") as handle:
            manifest = Manifest.parse(handle.read())
        mtime = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        if len(self._parsed) >= _PARSED_MAX:
            self._parsed.clear()
        self._parsed[path] = (stamp, manifest, mtime)
        return manifest, mtime

    def write(self, name: ModelName, manifest: Manifest) -> None:
        write_atomic(self.path(name), manifest.raw)

    def delete(self, name: ModelName) -> None:
        path = self.path(name)
        path.unlink()
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def referenced(self) -> set[str]:
        """Every blob a manifest file uses, hidden names and names that no longer parse
        included (a blob is kept when in doubt). Runs on every delete, so it works on plain
        strings: on a thousand models, building a ModelName and a Path per file cost four times
        the file system's own work."""
        used: set[str] = set()
        for _folder, entry in self._files():
            with contextlib.suppress(Exception):
                used.update(self._read(entry.path, entry.stat())[0].blobs())
        return used

    def names(self, hidden: bool = False) -> list[ModelName]:
        """Every stored name; ``hidden`` adds the untagged models' hidden names."""
        out: list[ModelName] = []
        for folder, entry in self._files():
            with contextlib.suppress(Exception):
                name = parse(f"{folder}:{entry.name}")
                exact = f"{name.host}/{name.namespace}/{name.model}" == folder
                if exact and name.tag == entry.name and (hidden or not is_untagged(name)):
                    out.append(name)
        return out

    def _files(self) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Each manifest file as ``host/namespace/model`` and its entry; temporary files (a
        write in progress) are not manifests yet."""
        root = str(self.root)
        for host in _folders(root):
            for namespace in _folders(host):
                for model in _folders(namespace):
                    files: list[os.DirEntry[str]] = []
                    with contextlib.suppress(OSError), os.scandir(model) as entries:
                        files = [e for e in entries if e.is_file(follow_symlinks=False)]
                    for entry in files:
                        if not entry.name.startswith("."):
                            yield model[len(root) + 1 :], entry


def _folders(parent: str) -> list[str]:
    try:
        with os.scandir(parent) as entries:
            return [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _match_entry(folder: Path, part: str) -> str | None:
    try:
        entries = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    lowered = part.lower()
    for entry in entries:
        if entry.lower() == lowered:
            return entry
    return None
