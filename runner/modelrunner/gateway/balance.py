"""Pure instance choice. ``prefix``: bounded-load consistent hashing on the conversation's leading
content, so one chat's turns land where its KV cache is, spilling to the least-loaded instance when
the hashed one carries more than ``factor`` times its share; ``least``: fewest outstanding
requests; ``round-robin``: what a Service does (the benchmark's baseline)."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

VNODES = 64  # points per instance on the ring: spreads keys evenly over a few instances
# A prompt grows by whole turns; its head stays put once it is this long.
_PROMPT_HEAD = 512
_rr = itertools.count()


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@lru_cache(maxsize=256)
def _ring(names: tuple[str, ...]) -> tuple[list[int], list[str]]:
    points = sorted((_hash(f"{name}#{v}"), name) for name in names for v in range(VNODES))
    return [p for p, _ in points], [n for _, n in points]


def ring_owner(key: str, names: Sequence[str]) -> str:
    hashes, owners = _ring(tuple(sorted(names)))
    index = bisect.bisect(hashes, _hash(key)) % len(hashes)
    return owners[index]


def _by_load(names: Sequence[str], load: Mapping[str, int]) -> list[str]:
    # Ties broken at random: sequential traffic must not all land on the first instance.
    return sorted(names, key=lambda n: (load.get(n, 0), random.random()))


def choose(
    names: Sequence[str],
    load: Mapping[str, int],
    policy: str,
    affinity: str | None = None,
    factor: float = 1.25,
) -> list[str]:
    """``names`` in the order to try them: the chosen instance first, then the others by load."""
    if not names:
        return []
    ordered = _by_load(names, load)
    if policy == "round-robin":
        start = next(_rr) % len(names)
        return [*names[start:], *names[:start]]
    if policy != "prefix" or affinity is None or len(names) == 1:
        return ordered
    owner = ring_owner(affinity, names)
    total = sum(load.get(n, 0) for n in names)
    # Bounded loads (Mirrokni et al.): each instance takes at most ceil(c * (m + 1) / n).
    capacity = math.ceil(factor * (total + 1) / len(names))
    if load.get(owner, 0) < capacity:
        return [owner, *(n for n in ordered if n != owner)]
    return ordered


def _content(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def affinity_key(model: str, body: Mapping[str, Any]) -> str | None:
    """The conversation's leading content: system prompt(s) and the first user turn of a chat
    (Ollama, OpenAI, Anthropic), the instructions and first input of a Response, or the head of a
    prompt. Later turns repeat it, so every turn of one chat hashes alike. None: no affinity
    (embeddings and the like: no cache to reuse)."""
    parts: list[str] = [model]
    for field in ("system", "instructions"):
        if field in body and body[field] is not None:
            parts.append(_content(body[field]))
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        for message in messages:
            parts.append(_content(message.get("content") if isinstance(message, dict) else message))
            if isinstance(message, dict) and message.get("role") == "user":
                break
    elif isinstance(body.get("input"), list) and body["input"]:
        parts.append(_content(body["input"][0]))
    elif isinstance(body.get("input"), str):
        parts.append(body["input"])
    elif isinstance(body.get("prompt"), str):
        parts.append(body["prompt"][:_PROMPT_HEAD])
    else:
        return None
    # Whole parts, not a fixed-length head: a long system prompt shared by many conversations
    # must not hide the first user turn that tells them apart.
    return "\x1f".join(parts)
