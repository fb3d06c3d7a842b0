"""Crash-safe file writes: temporary file in the target folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modelrunner.errors import StorageFull


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Turn a full disk into a typed error the API layers can render."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull("no space left on device while writing to the model store") from exc
        raise


@contextlib.contextmanager
def temp_file(folder: Path, prefix: str = ".tmp-") -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file in ``folder``, removed unless the caller renamed it away."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix, dir=folder)
    path = Path(name)
    try:
        with storage_errors(), os.fdopen(fd, "wb") as handle:
            yield handle, path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def publish(tmp: Path, target: Path) -> None:
    """Atomically move a fully written, fsynced temporary file into place."""
    with storage_errors():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        fsync_dir(target.parent)


def write_atomic(target: Path, data: bytes) -> None:
    with temp_file(target.parent) as (handle, tmp):
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        publish(tmp, target)
