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


@dataclass(frozen=True)
class Quota:
    """A key's own limits from its line in the keys file; None: the server-wide setting."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrency: int | None = None


_QUOTA_FIELDS = {
    "rpm": "requests_per_minute",
    "tpm": "tokens_per_minute",
    "concurrent": "concurrency",
}


def parse_line(line: str) -> tuple[str, str, Quota | None]:
    """``KEY`` or ``ID:KEY``, then optional ``rpm=N tpm=N concurrent=N`` (0: unlimited)."""
    head, *extra = line.split()
    ident, sep, key = head.partition(":")
    if not sep or not ident.strip() or not key.strip():
        ident, key = key_id(head), head
    if not extra:
        return ident, key, None
    values: dict[str, int] = {}
    for item in extra:
        name, eq, number = item.partition("=")
        if not eq or name not in _QUOTA_FIELDS or not number.isdigit():
            raise ValueError(f"key {ident}: {item!r} is not rpm=N, tpm=N or concurrent=N")
        values[_QUOTA_FIELDS[name]] = int(number)
    return ident, key, Quota(**values)


def parse_keys(lines: list[str]) -> dict[bytes, str]:
    """Key -> id for every valid entry; blanks and ``#`` comments skipped."""
    return {key.encode(): ident for ident, key, _ in _entries(lines)}


def parse_quotas(lines: list[str]) -> dict[str, Quota]:
    """Id -> its own limits, for the entries that set any."""
    return {ident: quota for ident, _, quota in _entries(lines) if quota is not None}


def _entries(lines: list[str]) -> list[tuple[str, str, Quota | None]]:
    entries = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entries.append(parse_line(line))
        except ValueError as exc:  # a bad line never disables the good ones (nor logs the key)
            log.warning("ignoring an API key entry: %s", exc)
    return entries


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
        static = [k.get_secret_value() for k in settings.api_keys]
        self._static_keys = parse_keys(static)
        self._static_quotas = parse_quotas(static)
        token = settings.management_token
        self._static_token = token.get_secret_value().encode() if token else b""
        self._keys_file = _WatchedFile(settings.api_keys_file)
        self._token_file = _WatchedFile(settings.management_token_file)
        self.keys_required = bool(self._static_keys) or settings.api_keys_file is not None
        self.token_required = bool(self._static_token) or settings.management_token_file is not None
        self._lock = threading.Lock()
        self._keys = dict(self._static_keys)
        self._quotas = dict(self._static_quotas)
        self._token = self._static_token
        self.reload(force=True)

    def reload(self, force: bool = False) -> None:
        """Pick up changed files (each request stats them: cheap) or everything (SIGHUP)."""
        with self._lock:
            if self._keys_file.refresh(force):
                self._keys = {**parse_keys(self._keys_file.lines), **self._static_keys}
                self._quotas = {**parse_quotas(self._keys_file.lines), **self._static_quotas}
                log.info("loaded %d API keys", len(self._keys))
            if self._token_file.refresh(force):
                lines = [line.strip() for line in self._token_file.lines if line.strip()]
                self._token = lines[0].encode() if lines else self._static_token

    def quota(self, ident: str) -> Quota | None:
        """The limits the keys file sets for ``ident``, if any."""
        return self._quotas.get(ident)

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
