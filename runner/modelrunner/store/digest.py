"""sha256 digests as the registries and Ollama's store spell them."""

from __future__ import annotations

import re

from modelrunner.errors import InvalidDigest

_DIGEST_RE = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")


def parse_digest(value: str) -> str:
    """Return the canonical ``sha256:<hex>`` form of ``value`` (``sha256:`` or ``sha256-``)."""
    match = _DIGEST_RE.fullmatch(value or "")
    if match is None:
        raise InvalidDigest("invalid digest format")
    return "sha256:" + match.group(1).lower()


def hex_of(digest: str) -> str:
    return parse_digest(digest).split(":", 1)[1]


def blob_filename(digest: str) -> str:
    """Ollama names blob files ``sha256-<hex>``; the hex is validated, so it is a safe file name."""
    return "sha256-" + hex_of(digest)
