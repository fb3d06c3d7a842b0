"""Credentials: the management token and inference API keys, from settings and files that are
re-read when they change (or on SIGHUP), compared in constant time, never logged."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from modelrunner.settings import Settings

log = logging.getLogger("modelrunner.security")
MANAGEMENT_ID = "management"


@dataclass(frozen=True)
class Identity:
    id: str  # shown in metrics and logs; never the key itself
    management: bool = False


def key_id(key: str) -> str:
    """An id for a key listed without one: a short hash, enough to tell keys apart."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def parse_keys(lines: list[str]) -> dict[bytes, str]:
    """``KEY`` or ``ID:KEY`` per entry; blanks and ``#`` comments skipped."""
    keys: dict[bytes, str] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        ident, sep, key = line.partition(":")
        if not sep or not ident.strip() or not key.strip():
            ident, key = key_id(line), line
        keys[key.strip().encode()] = ident.strip()
    return keys


class _WatchedFile:
    """A file's lines, re-read when its mtime or size changes; the last good read survives an
    unreadable file (a rotation in progress), with a warning."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.stamp: tuple[int, int] | None = None
        self.lines: list[str] = []

    def refresh(self, force: bool = False) -> bool:
        if self.path is None:
            return False
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self.stamp and not force:
                return False
            self.lines = self.path.read_text().splitlines()
            self.stamp = stamp
            return True
        except OSError as exc:
            if self.stamp is not None or force:
                log.warning("cannot read credentials file %s: %s", self.path, exc.strerror)
            self.stamp = None
            return False


class KeyRing:
    def __init__(self, settings: Settings) -> None:
        self._static_keys = parse_keys([k.get_secret_value() for k in settings.api_keys])
        token = settings.management_token
        self._static_token = token.get_secret_value().encode() if token else b""
        self._keys_file = _WatchedFile(settings.api_keys_file)
        self._token_file = _WatchedFile(settings.management_token_file)
        self.keys_required = bool(self._static_keys) or settings.api_keys_file is not None
        self.token_required = bool(self._static_token) or settings.management_token_file is not None
        self._lock = threading.Lock()
        self._keys = dict(self._static_keys)
        self._token = self._static_token
        self.reload(force=True)

    def reload(self, force: bool = False) -> None:
        """Pick up changed files (each request stats them: cheap) or everything (SIGHUP)."""
        with self._lock:
            if self._keys_file.refresh(force):
                self._keys = {**parse_keys(self._keys_file.lines), **self._static_keys}
                log.info("loaded %d API keys", len(self._keys))
            if self._token_file.refresh(force):
                lines = [line.strip() for line in self._token_file.lines if line.strip()]
                self._token = lines[0].encode() if lines else self._static_token

    def identify(self, secret: str | None) -> Identity | None:
        """The identity ``secret`` proves, or None. Every key is compared, match or not."""
        self.reload()
        if not secret:
            return None
        given = secret.encode()
        found: Identity | None = None
        if self._token and hmac.compare_digest(given, self._token):
            found = Identity(MANAGEMENT_ID, management=True)
        for key, ident in self._keys.items():
            if hmac.compare_digest(given, key) and found is None:
                found = Identity(ident)
        return found
