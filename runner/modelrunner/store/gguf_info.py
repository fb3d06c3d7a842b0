"""GGUF metadata: what ``/api/show``, ``/api/tags`` and ``GET /models`` report about a model file.

The header is parsed here with the ``gguf`` package's type tables but a lean reader: the package's
``GGUFReader`` materialises every element of every array (a 262k-token vocabulary takes tens of
seconds), while listing a model must stay fast. Long arrays are skipped and only counted unless the
caller asks for them (``verbose``).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType, GGUFValueType, LlamaFileType

from modelrunner.errors import InvalidRequest

GGUF_MAGIC = b"GGUF"
SHORT_ARRAY = 5  # Ollama shows longer arrays as [] unless verbose

_SCALAR = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
    GGUFValueType.BOOL: "<?",
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    type: str
    shape: tuple[int, ...]

    @property
    def elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True, slots=True)
class ArrayInfo:
    """A long array the lean reader counted but did not load."""

    length: int


@dataclass(frozen=True)
class GGUFInfo:
    version: int
    kv: dict[str, Any]
    tensors: tuple[TensorInfo, ...] = field(default=())

    @property
    def architecture(self) -> str:
        return str(self.kv.get("general.architecture", ""))

    def arch_value(self, key: str) -> Any:
        return self.kv.get(f"{self.architecture}.{key}")

    @property
    def parameter_count(self) -> int:
        declared = self.kv.get("general.parameter_count")
        if isinstance(declared, int) and declared > 0:
            return declared
        return sum(t.elements for t in self.tensors)

    @property
    def file_type(self) -> str:
        value = self.kv.get("general.file_type")
        if isinstance(value, int):
            try:
                return LlamaFileType(value).name.removeprefix("MOSTLY_").removeprefix("ALL_")
            except ValueError:
                return f"unknown({value})"
        return "unknown"

    @property
    def context_length(self) -> int | None:
        value = self.arch_value("context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def embedding_length(self) -> int | None:
        value = self.arch_value("embedding_length")
        return int(value) if isinstance(value, int) else None

    @property
    def chat_template(self) -> str | None:
        value = self.kv.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def is_embedding_model(self) -> bool:
        return self.arch_value("pooling_type") is not None

    def model_info(self, verbose: bool = False) -> dict[str, Any]:
        """Ollama's ``model_info``: the key/value map minus the name and the chat template."""
        out: dict[str, Any] = {}
        for key, value in self.kv.items():
            if key in ("general.name", "tokenizer.chat_template"):
                continue
            if isinstance(value, ArrayInfo) or (
                isinstance(value, list) and len(value) > SHORT_ARRAY and not verbose
            ):
                value = []
            out[key] = value
        out.setdefault("general.parameter_count", self.parameter_count)
        return out


def human_number(count: int) -> str:
    """Parameter counts the way Ollama prints them: 268.10M, 3.2B, 8B."""
    for unit, scale, fmt in (("B", 1e9, "{:.1f}"), ("M", 1e6, "{:.2f}"), ("K", 1e3, "{:.2f}")):
        if count >= scale:
            value = count / scale
            text = f"{value:.0f}" if value == int(value) else fmt.format(value)
            return text + unit
    return str(count)


class _Cursor:
    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise InvalidRequest("invalid GGUF file: truncated header")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        if self.pos + length > len(self.data):
            raise InvalidRequest("invalid GGUF file: truncated string")
        raw = bytes(self.data[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.unpack("<Q")
        self.pos += length

    def value(self, vtype: int, load_arrays: bool) -> Any:
        kind = GGUFValueType(vtype)
        if kind is GGUFValueType.STRING:
            return self.string()
        if kind is GGUFValueType.ARRAY:
            item = GGUFValueType(self.unpack("<I"))
            length = self.unpack("<Q")
            if length <= SHORT_ARRAY or load_arrays:
                return [self.value(item, load_arrays) for _ in range(length)]
            if item is GGUFValueType.STRING:
                for _ in range(length):
                    self.skip_string()
            elif item is GGUFValueType.ARRAY:
                for _ in range(length):
                    self.value(item, False)
            else:
                self.pos += struct.calcsize(_SCALAR[item]) * length
            return ArrayInfo(length)
        return self.unpack(_SCALAR[kind])


def read_gguf(path: Path, load_arrays: bool = False) -> GGUFInfo:
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return _parse(_Cursor(m), load_arrays)
    except (ValueError, struct.error) as exc:
        raise InvalidRequest(f"invalid GGUF file: {exc}") from None


def is_gguf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == GGUF_MAGIC


def _parse(cur: _Cursor, load_arrays: bool) -> GGUFInfo:
    if bytes(cur.data[:4]) != GGUF_MAGIC:
        raise InvalidRequest("invalid GGUF file: bad magic")
    cur.pos = 4
    version = cur.unpack("<I")
    if version < 2:
        raise InvalidRequest(f"unsupported GGUF version {version}")
    n_tensors = cur.unpack("<Q")
    n_kv = cur.unpack("<Q")
    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        kv[key] = cur.value(cur.unpack("<I"), load_arrays)
    tensors = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = cur.unpack("<I")
        shape = tuple(cur.unpack("<Q") for _ in range(dims))
        ttype = cur.unpack("<I")
        cur.unpack("<Q")  # data offset
        try:
            type_name = GGMLQuantizationType(ttype).name
        except ValueError:
            type_name = str(ttype)
        tensors.append(TensorInfo(name, type_name, shape))
    return GGUFInfo(version=version, kv=kv, tensors=tuple(tensors))


@lru_cache(maxsize=64)
def cached_gguf(path: Path, size: int) -> GGUFInfo:
    """Blobs are immutable, so (path, size) identifies the parse."""
    del size
    return read_gguf(path)
