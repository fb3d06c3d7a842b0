"""Images in prompts, as Ollama places them.

Every image of a request gets an id in request order; the message that carries it gets an
``[img-N]`` tag in front of its text (or in place of an ``[img]`` the text already has), the
prompt is rendered, and the tags left in the rendered text become the engine's image markers.
Dialects hand the core base64 strings (``InferenceRequest.images`` and each message's
``images``); ``decode_base64`` checks them with Go's rules and words.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from modelrunner.errors import InvalidRequest

_TAG = re.compile(r"\[img-(\d+)\]")
_ALPHABET = re.compile(rb"[^A-Za-z0-9+/=]")


class InvalidBase64(InvalidRequest):
    """Not standard padded base64; the message is Go's (``encoding/base64``), as Ollama's
    JSON decoding reports it."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"illegal base64 data at input byte {offset}")
        self.offset = offset


def decode_base64(text: str) -> bytes:
    """Standard base64 with padding, newlines ignored (as Go's decoder does)."""
    raw = text.encode("utf-8", errors="replace").replace(b"\r", b"").replace(b"\n", b"")
    bad = _ALPHABET.search(raw)
    if bad is not None:
        raise InvalidBase64(bad.start())
    pad = raw.find(b"=")
    if pad >= 0 and (raw[pad:].strip(b"=") or len(raw) % 4 or len(raw) - pad > 2):
        raise InvalidBase64(pad)
    if len(raw) % 4:
        raise InvalidBase64(len(raw) - len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64(0) from None


def tag_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``messages`` whose text carries an ``[img-N]`` tag per image (Ollama's
    ``imageTaggedMessages``); ids count up across messages."""
    out: list[dict[str, Any]] = []
    count = 0
    for message in messages:
        images = message.get("images") or []
        if not images:
            out.append(message)
            continue
        prefix = ""
        content = str(message.get("content") or "")
        for _ in images:
            tag = f"[img-{count}]"
            count += 1
            if "[img]" in content:
                content = content.replace("[img]", tag, 1)
            else:
                prefix += tag
        out.append({**message, "content": prefix + content})
    return out


def tag_prompt(prompt: str, count: int) -> str:
    """``/api/generate``: the prompt is one user message carrying every image."""
    return str(tag_messages([{"content": prompt, "images": [None] * count}])[0]["content"])


def place_markers(text: str, images: list[bytes], marker: str) -> tuple[str, list[bytes]]:
    """Replace each image's first ``[img-N]`` tag in the rendered ``text`` with ``marker``;
    return the text and the images in the order their markers appear. Tags of ids the request
    does not have stay text; an image whose tag the template did not render is left out."""
    used: set[int] = set()
    order: list[bytes] = []

    def swap(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if index >= len(images) or index in used:
            return match.group(0)
        used.add(index)
        order.append(images[index])
        return marker

    return _TAG.sub(swap, text), order
